"""The one load driver for ``bench/`` and ``tests/``: concurrent bursts and ``wrk``.

``burst(send, concurrency, total)`` runs ``concurrency`` threads, each with its own
keep-alive ``httpx.Client``; they share the numbers ``0 … total-1`` and call
``send(client, n)`` for each, so every request is sent exactly once whatever the
scheduling. It records every response (or transport error), its latency and the wall
time. Tests assert on the responses; benchmarks print the rates. Speed is never asserted.

``wrk(url, headers, connections, seconds)`` runs the ``wrk`` binary (Debian package
``wrk``) for a closed-loop rate far above what Python clients can generate, and refuses
a run that saw any non-2xx/3xx answer or socket error, so an error page is never
mistaken for throughput. ``wrk_post(url, body, ...)`` drives writes the same way: each
request's JSON body is ``body`` with ``{n}`` replaced by a value no other request of the
run has, and the result counts every status (an error is data here, not a failure).
A Python client costs a few milliseconds of CPU a request under 64 threads, as much as
the write it measures on a 2-core machine; wrk costs microseconds.

Bench scripts import it as ``support.load`` after putting the repository's ``tests``
directory on ``sys.path``; tests get that from pytest's rootdir conftest.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import httpx

#: ``send(client, n)``: one request numbered ``n`` on this thread's client.
Send = Callable[[httpx.Client, int], httpx.Response]
#: The status recorded for a request that got no response (connection error, timeout).
NO_RESPONSE = 0


@dataclass(frozen=True)
class LoadResult:
    """What a burst saw. ``responses[n]`` is request ``n``'s response (``None`` when a
    transport error, recorded in ``errors``, meant there was none); latencies in seconds."""

    responses: list[httpx.Response | None]
    latencies: list[float]
    wall_seconds: float
    errors: list[str] = field(default_factory=list)

    @property
    def statuses(self) -> Counter[int]:
        """How many requests got each status; ``NO_RESPONSE`` (0) for transport errors."""
        return Counter(r.status_code if r is not None else NO_RESPONSE for r in self.responses)

    @property
    def status_list(self) -> list[int]:
        return [r.status_code if r is not None else NO_RESPONSE for r in self.responses]

    @property
    def completed(self) -> int:
        """Requests that were sent (a deadline may stop a burst early)."""
        return len(self.latencies)

    def count(self, predicate: Callable[[int], bool]) -> int:
        return sum(n for status, n in self.statuses.items() if predicate(status))

    @property
    def server_errors(self) -> int:
        return self.count(lambda status: status >= 500)

    def rate(self, status: int | None = None) -> float:
        """Requests (or only those answered ``status``) per second of wall time."""
        done = self.completed if status is None else self.statuses[status]
        return done / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def percentile(self, fraction: float) -> float:
        """Nearest-rank latency percentile in seconds (``fraction`` in [0, 1])."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered)) - 1))
        return ordered[rank]

    @property
    def p50(self) -> float:
        return self.percentile(0.50)

    @property
    def p99(self) -> float:
        return self.percentile(0.99)

    @property
    def max_latency(self) -> float:
        return max(self.latencies, default=0.0)


def burst(
    send: Send,
    concurrency: int,
    total: int,
    *,
    base_url: str = "",
    headers: Mapping[str, str] | None = None,
    cookies: httpx.Cookies | None = None,
    timeout: float = 60.0,
    seconds: float | None = None,
) -> LoadResult:
    """Send ``total`` requests from ``concurrency`` threads, all released at once.

    Each thread owns one keep-alive client (``base_url``, ``headers``, ``cookies``,
    ``timeout``). With ``seconds``, threads take no new request after that long (the
    result then has fewer than ``total``). Transport errors are recorded, not raised.
    """
    if concurrency < 1 or total < 0:
        raise ValueError("concurrency must be >= 1 and total >= 0")
    responses: list[httpx.Response | None] = [None] * total
    latencies: list[float] = []
    errors: list[str] = []
    crashed: list[BaseException] = []
    lock = threading.Lock()
    next_number = iter(range(total))
    start_gate = threading.Barrier(concurrency + 1)
    stop_at = [float("inf")]

    def take() -> int | None:
        with lock:
            if time.monotonic() >= stop_at[0]:
                return None
            return next(next_number, None)

    def worker() -> None:
        with httpx.Client(
            base_url=base_url, headers=dict(headers or {}), cookies=cookies, timeout=timeout,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        ) as client:
            start_gate.wait()
            while (n := take()) is not None:
                began = time.perf_counter()
                try:
                    response: httpx.Response | None = send(client, n)
                    error = None
                except httpx.TransportError as exc:
                    response, error = None, f"{type(exc).__name__}: {exc}"
                except BaseException as exc:  # a bug in send: stop this thread, raise below
                    with lock:
                        crashed.append(exc)
                        stop_at[0] = 0.0
                    return
                elapsed = time.perf_counter() - began
                with lock:
                    responses[n] = response
                    latencies.append(elapsed)
                    if error is not None:
                        errors.append(error)

    threads = [threading.Thread(target=worker, name=f"load-{i}", daemon=True)
               for i in range(concurrency)]
    for thread in threads:
        thread.start()
    if seconds is not None:
        stop_at[0] = time.monotonic() + seconds
    start_gate.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    if crashed:
        raise crashed[0]
    # Numbers are handed out in order, so the requests sent are exactly 0 … sent-1.
    sent = len(latencies)
    return LoadResult(responses=responses[:sent], latencies=latencies, wall_seconds=wall,
                      errors=errors)


class WrkError(RuntimeError):
    """wrk is missing, failed, or saw errors the rate must not hide."""


_RATE = re.compile(r"^Requests/sec:\s+([0-9.]+)", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
)


def wrk(
    url: str,
    headers: Mapping[str, str] | None,
    connections: int,
    seconds: float,
    *,
    threads: int = 1,
    timeout_seconds: int = 10,
) -> float:
    """Requests per second ``wrk`` reaches on ``url`` (GET) over ``connections``
    keep-alive connections for ``seconds``; raises ``WrkError`` on any error answer."""
    done = _run_wrk([f"-t{max(1, min(threads, connections))}"], url, headers, connections,
                    seconds, timeout_seconds)
    return parse_wrk(done.stdout, done.stderr, done.returncode)


def _run_wrk(options: list[str], url: str, headers: Mapping[str, str] | None,
             connections: int, seconds: float, timeout_seconds: int,
             script_arguments: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("wrk")
    if binary is None:
        raise WrkError("wrk is not installed: apt-get install -y wrk (Debian package 'wrk')")
    command = [binary, *options, f"-c{connections}", f"-d{max(1, round(seconds))}s",
               f"--timeout={timeout_seconds}s"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    command.append(url)
    if script_arguments is not None:
        command += ["--", *script_arguments]
    return subprocess.run(command, capture_output=True, text=True,  # noqa: S603 - fixed argv
                          timeout=seconds + timeout_seconds + 30, check=False)


def parse_wrk(stdout: str, stderr: str = "", returncode: int = 0) -> float:
    """The ``Requests/sec`` figure of a wrk report, or ``WrkError`` naming what went wrong."""
    if returncode != 0:
        raise WrkError(f"wrk exited {returncode}: {(stderr or stdout).strip()[:500]}")
    non_2xx = _NON_2XX.search(stdout)
    if non_2xx:
        raise WrkError(f"wrk saw {non_2xx.group(1)} non-2xx/3xx responses")
    socket_errors = _SOCKET_ERRORS.search(stdout)
    if socket_errors and any(int(n) for n in socket_errors.groups()):
        raise WrkError(f"wrk saw socket errors: {socket_errors.group(0)}")
    rate = _RATE.search(stdout)
    if rate is None:
        raise WrkError(f"no Requests/sec in wrk's output: {stdout.strip()[:500]}")
    return float(rate.group(1))


#: A wrk script (Lua): ``POST``s ``args[1]`` with ``{n}`` replaced by ``<thread>-<count>``,
#: counts statuses per thread and prints them, summed, with the latencies on one line.
_POST_SCRIPT = r"""
wrk.method = "POST"
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end
function init(args)
  template = args[1]
  counter = 0
  statuses = {}
end
function request()
  counter = counter + 1
  local body = string.gsub(template, "{n}", id .. "-" .. counter)
  return wrk.format(nil, nil, nil, body)
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      total[status] = (total[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(total) do
    table.insert(parts, status .. "=" .. n)
  end
  local e = summary.errors
  io.write(string.format("SCOPEGATE_WRK statuses=%s seconds=%f p50=%f p99=%f max=%f " ..
    "connect=%d read=%d write=%d timeout=%d\n", table.concat(parts, ","),
    summary.duration / 1e6, latency:percentile(50) / 1e6, latency:percentile(99) / 1e6,
    latency.max / 1e6, e.connect, e.read, e.write, e.timeout))
end
"""
_POST_LINE = re.compile(
    r"^SCOPEGATE_WRK statuses=(\S*) seconds=(\S+) p50=(\S+) p99=(\S+) max=(\S+) "
    r"connect=(\d+) read=(\d+) write=(\d+) timeout=(\d+)$", re.MULTILINE)


@dataclass(frozen=True)
class WrkResult:
    """What a ``wrk_post`` run saw: answers by status, latencies in seconds, and the
    socket errors (``connect``, ``read``, ``write``, ``timeout``) that got no answer."""

    statuses: Counter[int]
    wall_seconds: float
    p50: float
    p99: float
    max_latency: float
    socket_errors: dict[str, int]

    @property
    def completed(self) -> int:
        """Requests answered (wrk counts a request when its response is complete)."""
        return sum(self.statuses.values())

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    @property
    def errors(self) -> list[str]:
        return [f"{kind} errors: {n}" for kind, n in self.socket_errors.items() if n]

    def rate(self, status: int | None = None) -> float:
        """Answers (or only those with ``status``) per second of the run."""
        done = self.completed if status is None else self.statuses[status]
        return done / self.wall_seconds if self.wall_seconds > 0 else 0.0


def wrk_post(
    url: str,
    body: str,
    headers: Mapping[str, str] | None,
    connections: int,
    seconds: float,
    *,
    timeout_seconds: int = 30,
) -> WrkResult:
    """``POST`` ``body`` (``{n}`` made unique per request, see module docstring) to
    ``url`` over ``connections`` keep-alive connections for ``seconds``, from one wrk
    thread (the machine's other cores are the server's)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="scopegate-wrk-") as script:
        script.write(_POST_SCRIPT)
        script.flush()
        done = _run_wrk(["-t1", "-s", script.name],
                        url, {"Content-Type": "application/json", **(headers or {})},
                        connections, seconds, timeout_seconds, [body])
    return parse_wrk_post(done.stdout, done.stderr, done.returncode)


def parse_wrk_post(stdout: str, stderr: str = "", returncode: int = 0) -> WrkResult:
    """The ``WrkResult`` in a ``wrk_post`` report, or ``WrkError`` when there is none."""
    if returncode != 0:
        raise WrkError(f"wrk exited {returncode}: {(stderr or stdout).strip()[:500]}")
    line = _POST_LINE.search(stdout)
    if line is None:
        raise WrkError(f"no statuses in wrk's output: {(stdout + stderr).strip()[:500]}")
    statuses: Counter[int] = Counter()
    for part in filter(None, line.group(1).split(",")):
        status, n = part.split("=")
        statuses[int(status)] += int(n)
    seconds, p50, p99, longest = (float(line.group(i)) for i in range(2, 6))
    errors = dict(zip(("connect", "read", "write", "timeout"),
                      (int(line.group(i)) for i in range(6, 10)), strict=True))
    return WrkResult(statuses, seconds, p50, p99, longest, errors)
