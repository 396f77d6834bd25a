"""A real HTTP server on 127.0.0.1 for download tests, with the failures the internet has.

Register routes, then point a client at `server.url(path)`:

    with VideoServer() as server:                 # or the `video_server` fixture
        url = server.serve("/a.mp4", Path("a.mp4"))
        server.fail("/a.mp4", 500, times=1)       # first request 500, then the file
        server.count("/a.mp4")                    # requests seen for that path

Routes match the URL path only; the query string is ignored (but kept in `requests`).
Fixtures: `video_server`, `loopback_only` (no connection or DNS lookup beyond loopback) and
`sample_videos`; import them into a test module or conftest.py:
`from tests.loopback import loopback_only, sample_videos, video_server  # noqa: F401`.
"""

from __future__ import annotations

import socket
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.client import responses
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest


@dataclass
class _Route:
    body: bytes = b""
    content_type: str = "application/octet-stream"
    status: int = 200
    location: str | None = None  # redirect target
    send: int | None = None  # bytes actually sent before closing (truncation / stall point)
    length: bool = True  # send Content-Length; without it the body ends when the connection closes
    stall_s: float = 0.0  # pause after `send` bytes, then send the rest
    drip: tuple[int, float] | None = None  # (bytes, seconds): send that many, pause that long, ...


class VideoServer:
    """ThreadingHTTPServer on 127.0.0.1 (port chosen by the OS) in a daemon thread."""

    def __init__(self) -> None:
        self._routes: dict[str, _Route] = {}
        self._failures: dict[str, tuple[int, int | None]] = {}  # path -> (status, times left)
        self._counts: Counter[str] = Counter()
        self.requests: list[tuple[str, str]] = []  # (method, path?query) in arrival order
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None

    # lifecycle

    def start(self) -> VideoServer:
        httpd = self._httpd = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        # A short poll keeps stop(), and so each test's teardown, fast.
        kwargs = {"poll_interval": 0.02}
        threading.Thread(target=httpd.serve_forever, kwargs=kwargs, name="video-server", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases stalled responses
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> VideoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    # routes: each returns the route's URL

    def serve(
        self, path: str, body: bytes | Path, content_type: str = "video/mp4", length: bool = True
    ) -> str:
        """200 with the bytes (or the file's bytes) and this Content-Type; `length=False`
        leaves out Content-Length, so only the bytes counted on arrival tell the size."""
        data = body.read_bytes() if isinstance(body, Path) else body
        return self._add(path, _Route(data, content_type, length=length))

    def fail(self, path: str, status: int, times: int | None = None) -> str:
        """Answer `status` the next `times` requests (None: always), then the served route."""
        with self._lock:
            self._failures[path] = (status, times)
        return self.url(path)

    def truncate(self, path: str, body: bytes, send: int, content_type: str = "video/mp4") -> str:
        """Announce Content-Length len(body), send only `send` bytes, close the connection."""
        return self._add(path, _Route(body, content_type, send=send))

    def stall(
        self, path: str, body: bytes, after: int, seconds: float, content_type: str = "video/mp4"
    ) -> str:
        """Send `after` bytes, go silent for `seconds` (or until stop()), then the rest."""
        return self._add(path, _Route(body, content_type, send=after, stall_s=seconds))

    def drip(
        self, path: str, body: bytes, size: int, every_s: float, content_type: str = "video/mp4"
    ) -> str:
        """Send the body `size` bytes at a time, one piece every `every_s` (until stop())."""
        return self._add(path, _Route(body, content_type, drip=(size, every_s)))

    def html(self, path: str, text: str = "<!doctype html><title>Not a video</title>") -> str:
        return self._add(path, _Route(text.encode(), "text/html; charset=utf-8"))

    def redirect(self, path: str, to: str, status: int = 302) -> str:
        return self._add(path, _Route(status=status, location=to))

    def redirect_loop(self, path: str) -> str:
        """A path that redirects to itself forever."""
        return self.redirect(path, path)

    def count(self, path: str) -> int:
        """Requests (any method) received for `path`, query ignored."""
        with self._lock:
            return self._counts[path]

    def _add(self, path: str, route: _Route) -> str:
        with self._lock:
            self._routes[path] = route
        return self.url(path)

    def _answer_for(self, method: str, target: str) -> _Route:
        """Record the request and pick its answer (a pending failure first)."""
        path = urlsplit(target).path
        with self._lock:
            self._counts[path] += 1
            self.requests.append((method, target))
            status, times = self._failures.get(path, (0, 0))
            if times is None or times > 0:
                if times is not None:
                    self._failures[path] = (status, times - 1)
                return _Route(f"{status} {responses.get(status, 'Error')}\n".encode(), "text/plain", status)
            return self._routes.get(path) or _Route(b"404 Not Found\n", "text/plain", 404)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients that time out or give up mid-body are the point of these tests.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _handler_for(server: VideoServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so Content-Length is what ends a body

        def do_GET(self) -> None:
            self._answer(head=False)

        def do_HEAD(self) -> None:
            self._answer(head=True)

        def _answer(self, head: bool) -> None:
            route = server._answer_for(self.command, self.path)
            self.send_response(route.status)
            self.send_header("Content-Type", route.content_type)
            if route.length:
                self.send_header("Content-Length", str(len(route.body)))
            else:
                self.close_connection = True
                self.send_header("Connection", "close")
            if route.location is not None:
                self.send_header("Location", route.location)
            self.end_headers()
            if head:
                return
            cut = len(route.body) if route.send is None else route.send
            try:
                if route.drip is not None:
                    self._drip(route.body, *route.drip)
                    return
                self.wfile.write(route.body[:cut])
                self.wfile.flush()
                if route.send is not None and not route.stall_s:
                    self.close_connection = True  # truncated: the client sees EOF mid-body
                    return
                if route.stall_s and server._stopping.wait(route.stall_s):
                    self.close_connection = True  # stopped while stalled: drop the client
                    return
                self.wfile.write(route.body[cut:])
            except OSError:
                self.close_connection = True  # the client gave up (timeout, size limit)

        def _drip(self, body: bytes, size: int, every_s: float) -> None:
            for start in range(0, len(body), size):
                self.wfile.write(body[start : start + size])
                self.wfile.flush()
                if server._stopping.wait(every_s):
                    self.close_connection = True  # stopped mid-body: drop the client
                    return

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep pytest output clean; `requests` records what happened

    return Handler


_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _is_loopback(address: object) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    return not isinstance(host, str) or host in _LOOPBACK or host.startswith("/")


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any connection or DNS lookup that would leave 127.0.0.1: a fake that misses a
    YouTube call shows up as an error instead of traffic to the internet."""
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(sock: socket.socket, address: object) -> None:
        if not _is_loopback(address):
            raise ConnectionRefusedError(f"test network guard: refused connection to {address!r}")
        real_connect(sock, address)

    def getaddrinfo(host: str | bytes | None, *args: object, **kwargs: object) -> list:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and name not in _LOOPBACK:
            raise socket.gaierror(socket.EAI_NONAME, f"test network guard: refused lookup of {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def video_server() -> Iterator[VideoServer]:
    with VideoServer() as server:
        yield server


# CI clones the repository with shared/ beside it.
SAMPLE_VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "videos"


@pytest.fixture
def sample_videos() -> Path:
    """The folder of real sample clips (bottle-detection.mp4, milk.mkv, book.mkv)."""
    if not (SAMPLE_VIDEOS / "bottle-detection.mp4").is_file():
        pytest.skip(f"sample videos not found at {SAMPLE_VIDEOS} (shared/ is cloned beside the repo)")
    return SAMPLE_VIDEOS
