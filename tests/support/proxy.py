"""A tiny TCP forwarder that a test can cut and restore, to take a service away.

``TcpProxy(target_host, target_port)`` listens on a loopback port of its own and
forwards every connection to the target. ``cut()`` closes the listener and every open
connection (both sides), so a client sees its connections drop and new ones refused, as
when the service goes down; ``restore()`` listens on the same port again. One thread
runs the whole proxy (a selector loop); ``cut``/``restore`` are carried out by that
thread and return once done, so nothing races the forwarding::

    with TcpProxy("127.0.0.1", 5432) as proxy:
        url = f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/test"
        ...
        proxy.cut()
        proxy.restore()
"""

from __future__ import annotations

import contextlib
import queue
import selectors
import socket
import threading
from types import TracebackType

HOST = "127.0.0.1"
#: How long the loop waits for traffic before it looks at pending commands.
TICK_SECONDS = 0.02
CHUNK = 65536


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.port = port
        self._selector = selectors.DefaultSelector()
        self._listener: socket.socket | None = None
        self._peers: dict[socket.socket, socket.socket] = {}
        self._commands: queue.Queue[tuple[str, threading.Event]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._running = False
        self._frozen = False

    # -- life, from the test's thread ---------------------------------------------------
    def start(self) -> TcpProxy:
        self._listen()
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="tcp-proxy", daemon=True)
        self._thread.start()
        return self

    def cut(self) -> None:
        """Refuse new connections and drop every open one, like a service going away."""
        self._run("cut")

    def freeze(self) -> None:
        """Keep every connection open but forward nothing, and accept nothing new (the
        kernel still completes connects into the backlog): a network partition, where
        nothing fails, everything just stops answering."""
        self._run("freeze")

    def restore(self) -> None:
        """Accept and forward connections on the same port again (after ``cut``), or
        resume forwarding (after ``freeze``)."""
        self._run("restore")

    def close(self) -> None:
        if self._thread is None:
            return
        self._run("stop")
        self._thread.join(timeout=5)
        self._thread = None
        self._selector.close()

    @property
    def connections(self) -> int:
        """Open client connections (each paired with one to the target)."""
        return len(self._peers) // 2

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _run(self, command: str) -> None:
        done = threading.Event()
        self._commands.put((command, done))
        if not done.wait(timeout=5):
            raise RuntimeError(f"the proxy did not carry out {command!r}")

    # -- the loop, in the proxy's thread ------------------------------------------------
    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, self.port))
        listener.listen(64)
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._selector.register(listener, selectors.EVENT_READ)

    def _loop(self) -> None:
        while self._running:
            self._do_commands()
            # With nothing registered (after a cut), epoll just waits out the tick.
            for key, _ in self._selector.select(timeout=TICK_SECONDS):
                sock = key.fileobj
                if sock is self._listener:
                    self._accept()
                elif sock in self._peers:
                    self._forward(sock)  # type: ignore[arg-type]

    def _do_commands(self) -> None:
        while True:
            try:
                command, done = self._commands.get_nowait()
            except queue.Empty:
                return
            if command in ("cut", "stop"):
                self._drop_all()
                self._frozen = False
            if command == "freeze" and not self._frozen:
                self._frozen = True
                for sock in [self._listener, *self._peers]:
                    if sock is not None:
                        self._selector.unregister(sock)
            if command == "restore":
                if self._frozen:
                    self._frozen = False
                    for sock in [self._listener, *self._peers]:
                        if sock is not None:
                            self._selector.register(sock, selectors.EVENT_READ)
                if self._listener is None:
                    self._listen()
            if command == "stop":
                self._running = False
            done.set()

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            client, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        try:
            upstream = socket.create_connection(self.target, timeout=2)
        except OSError:
            client.close()
            return
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(5)  # sends block at most this long; reads follow the selector
        self._peers[client], self._peers[upstream] = upstream, client
        self._selector.register(client, selectors.EVENT_READ)
        self._selector.register(upstream, selectors.EVENT_READ)

    def _forward(self, sock: socket.socket) -> None:
        peer = self._peers[sock]
        try:
            data = sock.recv(CHUNK)
            if data:
                peer.sendall(data)
                return
        except OSError:
            pass
        self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        peer = self._peers.pop(sock, None)
        for one in (sock, peer):
            if one is None:
                continue
            self._peers.pop(one, None)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(one)
            with contextlib.suppress(OSError):
                one.shutdown(socket.SHUT_RDWR)
            one.close()

    def _drop_all(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(self._listener)
            self._listener.close()
            self._listener = None
        for sock in list(self._peers):
            self._drop(sock)
