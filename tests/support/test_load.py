"""The shared load driver sends every request once, records what came back, and never
passes an error answer off as throughput."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from support.load import NO_RESPONSE, WrkError, burst, parse_wrk, parse_wrk_post, wrk, wrk_post

WRK_OK = """Running 1s test @ http://127.0.0.1:8000/items
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.10ms    1.02ms  15.00ms   90.00%
  7388 requests in 1.00s, 12.3MB read
Requests/sec:   7388.42
Transfer/sec:     12.30MB
"""


class _Handler(BaseHTTPRequestHandler):
    """``GET /<n>`` answers status ``200 + n % 3`` with body ``n`` (keep-alive);
    ``/drop`` closes the connection without an answer; ``/teapot`` answers 418."""

    protocol_version = "HTTP/1.1"
    seen: list[str]

    def do_GET(self) -> None:
        self.seen.append(self.path)
        if self.path == "/drop":
            self.close_connection = True
            return
        if self.path == "/teapot":
            status, body = 418, b"no"
        else:
            number = int(self.path.strip("/"))
            status, body = 200 + number % 3, str(number).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        """Keeps ``<Content-Type> <body>``; answers 503 to every third POST, else 201."""
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        with self.lock:
            self.seen.append(f"{self.headers['Content-Type']} {body}")
            status = 503 if len(self.seen) % 3 == 0 else 201
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    handler = type("Handler", (_Handler,), {"seen": seen, "lock": threading.Lock()})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def test_burst_sends_each_number_once_and_records_its_response(
    server: tuple[str, list[str]],
) -> None:
    base_url, seen = server

    def send(client: httpx.Client, n: int) -> httpx.Response:
        return client.get(f"/{n}")

    result = burst(send, concurrency=8, total=60, base_url=base_url)
    assert sorted(seen) == sorted(f"/{n}" for n in range(60))
    assert [r.text for r in result.responses if r is not None] == [str(n) for n in range(60)]
    assert result.statuses == {200: 20, 201: 20, 202: 20}
    assert result.completed == len(result.latencies) == 60
    assert result.server_errors == 0 and not result.errors
    assert 0 < result.p50 <= result.p99 <= result.max_latency
    assert result.rate() > 0 and result.rate(201) == pytest.approx(result.rate() / 3)


def test_burst_records_a_request_without_a_response_instead_of_raising(
    server: tuple[str, list[str]],
) -> None:
    base_url, _seen = server

    def send(client: httpx.Client, n: int) -> httpx.Response:
        return client.get("/drop" if n == 3 else f"/{n}")

    result = burst(send, concurrency=2, total=6, base_url=base_url)
    assert result.responses[3] is None
    assert result.status_list[3] == NO_RESPONSE
    assert len(result.errors) == 1
    assert result.statuses[NO_RESPONSE] == 1 and result.completed == 6


def test_burst_raises_what_a_broken_send_raised(server: tuple[str, list[str]]) -> None:
    base_url, _seen = server

    def send(client: httpx.Client, n: int) -> httpx.Response:
        raise KeyError(n)

    with pytest.raises(KeyError):
        burst(send, concurrency=3, total=5, base_url=base_url)


def test_wrk_output_is_parsed_and_error_answers_are_refused() -> None:
    assert parse_wrk(WRK_OK) == 7388.42
    with pytest.raises(WrkError, match="17 non-2xx"):
        parse_wrk(WRK_OK.replace("Requests/sec", "  Non-2xx or 3xx responses: 17\nRequests/sec"))
    with pytest.raises(WrkError, match="socket errors"):
        parse_wrk(WRK_OK + "  Socket errors: connect 0, read 2, write 0, timeout 0\n")
    with pytest.raises(WrkError, match="exited 1"):
        parse_wrk("", "unable to connect", 1)


def test_wrk_runs_against_a_live_server_and_refuses_error_answers(
    server: tuple[str, list[str]],
) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install -y wrk)")
    base_url, seen = server
    assert wrk(f"{base_url}/3", {"X-Bench": "1"}, connections=2, seconds=1) > 0
    assert "/3" in seen
    with pytest.raises(WrkError, match="non-2xx"):
        wrk(f"{base_url}/teapot", None, connections=2, seconds=1)


WRK_POST_OK = (WRK_OK + "SCOPEGATE_WRK statuses=201=90,503=10 seconds=1.000500 p50=0.004000 "
               "p99=0.015000 max=0.020000 connect=0 read=1 write=0 timeout=2\n")


def test_wrk_post_output_is_parsed_with_every_status_counted() -> None:
    result = parse_wrk_post(WRK_POST_OK)
    assert result.statuses == {201: 90, 503: 10}
    assert result.completed == 100 and result.server_errors == 10
    assert result.rate(201) == pytest.approx(90 / 1.0005)
    assert (result.p50, result.p99, result.max_latency) == (0.004, 0.015, 0.02)
    assert result.errors == ["read errors: 1", "timeout errors: 2"]
    with pytest.raises(WrkError, match="no statuses"):
        parse_wrk_post(WRK_OK)
    with pytest.raises(WrkError, match="exited 1"):
        parse_wrk_post("", "unable to connect", 1)


def test_wrk_post_sends_distinct_json_bodies_and_counts_every_answer(
    server: tuple[str, list[str]],
) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install -y wrk)")
    base_url, seen = server
    result = wrk_post(f"{base_url}/mint", '{"sessionId": "m{n}"}', {"X-Bench": "1"},
                      connections=2, seconds=1)
    assert result.completed > 0
    assert len(seen) >= result.completed  # wrk may stop with requests in flight
    assert len(set(seen)) == len(seen), "every request's body is its own"
    assert all(entry.startswith('application/json {"sessionId": "m') for entry in seen)
    assert "{n}" not in "".join(seen)
    assert result.statuses[201] > 0 and result.statuses[503] == result.server_errors > 0
    assert set(result.statuses) == {201, 503}
