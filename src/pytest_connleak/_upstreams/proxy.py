"""A real reverse proxy on 127.0.0.1 that answers errors the way a load balancer does.

It is built on :mod:`http.server` and :mod:`http.client` on purpose: urllib3, requests,
httpx and aiohttp are the pools this plugin measures, and the proxy's own connections
must never show up as the test's leases.

Like nginx with ``proxy_intercept_errors on`` (and like the cloud load balancers), it keeps
client connections alive whatever the upstream does, reuses idle upstream connections,
streams 2xx/3xx bodies as they arrive, and replaces every 4xx/5xx response with its own
error page. An upstream body cut short is cut short for the client too.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import sys
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from .error_pages import check_style, error_page

__all__ = ["ReverseProxy"]

# RFC 9110 section 7.6.1: these describe one hop and are never forwarded.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
UPSTREAM_TIMEOUT = 30.0
CLIENT_IDLE_TIMEOUT = 75.0  # nginx's keepalive_timeout default
_PIECE = 64 * 1024


class _CutShort(Exception):
    """The upstream body ended early: the client connection must be cut as well."""


class _Server(ThreadingHTTPServer):
    # Non-daemon handler threads, so server_close() joins every one of them.
    daemon_threads = False
    block_on_close = True
    proxy: ReverseProxy

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        self.proxy._count_handler(+1)
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.proxy._count_handler(-1)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-response is normal traffic, not a proxy failure.
        exc = sys.exc_info()[1]
        if exc is not None and not isinstance(exc, OSError):
            self.proxy.errors.append(exc)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = CLIENT_IDLE_TIMEOUT
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Per proxy: how long a kept-alive client may stay silent before it is closed.
        self.connection.settimeout(self.server.proxy.idle_timeout)
        self.server.proxy._track_client(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.proxy._track_client(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: pytest captures stderr, and a log line per request is noise

    def _forward(self) -> None:
        self.server.proxy._forward(self)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _forward

    # -- helpers the proxy uses to talk to the client ----------------------------------

    def start(self, status: int, reason: str, headers: list[tuple[str, str]]) -> None:
        # send_response() would add "Server: BaseHTTP/..." of its own; a proxy's
        # Server header is the upstream's, or the one on its error page.
        self.send_response_only(status, reason)
        if not any(name.lower() == "date" for name, _ in headers):
            self.send_header("Date", formatdate(usegmt=True))
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        elif self.request_version == "HTTP/1.0":
            self.send_header("Connection", "keep-alive")
        self.end_headers()

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline()


class ReverseProxy:
    """A running reverse proxy in front of *upstream_url*; :meth:`stop` ends it."""

    def __init__(
        self, upstream_url: str, *, style: str = "nginx", idle_timeout: float = CLIENT_IDLE_TIMEOUT
    ) -> None:
        check_style(style)
        if not idle_timeout > 0:
            raise ValueError(
                f"idle_timeout must be a positive number of seconds, got {idle_timeout!r}"
            )
        self.idle_timeout = idle_timeout
        parts = urlsplit(upstream_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream_url must be an http:// URL, got {upstream_url!r}")
        self.style = style
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self.upstream_prefix = parts.path.rstrip("/")
        self.errors: list[BaseException] = []
        """Unexpected exceptions of handler threads (a bug in the proxy, not traffic)."""
        self.connections_accepted = 0
        """Client TCP connections accepted so far."""
        self.upstream_connections_opened = 0
        """TCP connections opened to the upstream so far."""
        self._lock = threading.Lock()
        self._stopping = False
        self._live_handlers = 0
        self._clients: set[socket.socket] = set()
        self._idle: list[http.client.HTTPConnection] = []
        self._busy: set[http.client.HTTPConnection] = set()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"connleak-proxy-{self.port}",
            daemon=True,
        )
        self._thread.start()

    # -- lifecycle ---------------------------------------------------------------------

    def stop(self) -> None:
        """Stop serving, cut every connection, and join every thread the proxy started."""
        self._server.shutdown()
        deadline = time.monotonic() + 10.0
        while True:
            with self._lock:
                self._stopping = True
                # Handler threads wait for a keep-alive client's next request, or for a
                # slow upstream; shutting the sockets down wakes them so they can end.
                for sock in self._clients:
                    _shutdown(sock)
                for conn in self._busy:
                    if conn.sock is not None:
                        _shutdown(conn.sock)
                live = self._live_handlers
            if live == 0 or time.monotonic() > deadline:
                break
            # A thread may be between taking an upstream connection and connecting it.
            time.sleep(0.01)
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        self._server.server_close()  # closes the listening socket, joins the handlers
        self._thread.join()

    def _count_handler(self, delta: int) -> None:
        with self._lock:
            self._live_handlers += delta

    def _track_client(self, sock: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._clients.add(sock)
                self.connections_accepted += 1
                if self._stopping:
                    _shutdown(sock)
            else:
                self._clients.discard(sock)

    # -- upstream pool -----------------------------------------------------------------

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            if self._stopping:
                raise ConnectionAbortedError("the proxy is stopping")
            if self._idle:
                conn = self._idle.pop()
                self._busy.add(conn)
                return conn, True
            conn = http.client.HTTPConnection(
                self.upstream_host, self.upstream_port, timeout=UPSTREAM_TIMEOUT
            )
            self.upstream_connections_opened += 1
            self._busy.add(conn)
            return conn, False

    def _give_back(self, conn: http.client.HTTPConnection, *, reusable: bool) -> None:
        with self._lock:
            self._busy.discard(conn)
            if reusable and conn.sock is not None:
                self._idle.append(conn)
                return
        conn.close()

    def _send(
        self, method: str, target: str, body: bytes, headers: dict[str, str]
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        conn, reused = self._take()
        try:
            conn.request(method, target, body=body or None, headers=headers)
            return conn, conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionError):
            self._give_back(conn, reusable=False)
            if not reused:
                raise
            # The upstream closed an idle keep-alive connection: one retry on a new one.
            conn, _ = self._take()
            try:
                conn.request(method, target, body=body or None, headers=headers)
                return conn, conn.getresponse()
            except BaseException:
                self._give_back(conn, reusable=False)
                raise
        except BaseException:
            self._give_back(conn, reusable=False)
            raise

    # -- one request -------------------------------------------------------------------

    def _forward(self, handler: _Handler) -> None:
        method = handler.command
        body = handler.read_body()
        headers = _forwarded_headers(handler)
        target = self.upstream_prefix + handler.path
        try:
            conn, response = self._send(method, target, body, headers)
        except TimeoutError:
            self._error(handler, 504)
            return
        except (OSError, http.client.HTTPException):
            self._error(handler, 502)
            return
        try:
            if response.status >= 400:
                reusable = not response.will_close
                try:
                    response.read()  # drain, so the upstream connection can be reused
                except (http.client.HTTPException, OSError):
                    reusable = False  # a cut error body is replaced all the same
                self._give_back(conn, reusable=reusable)
                self._error(handler, response.status)
                return
            self._pass_through(handler, response)
        except _CutShort:
            self._give_back(conn, reusable=False)
            handler.close_connection = True
            return
        except BaseException:
            self._give_back(conn, reusable=False)
            raise
        self._give_back(conn, reusable=not response.will_close)

    def _error(self, handler: _Handler, status: int) -> None:
        page = error_page(status, style=self.style)
        data = page.get_data()
        headers = [(k, v) for k, v in page.headers.items()]
        handler.start(status, page.status.split(" ", 1)[1], headers)
        if handler.command != "HEAD":
            handler.wfile.write(data)
        handler.wfile.flush()

    def _pass_through(self, handler: _Handler, response: http.client.HTTPResponse) -> None:
        headers = _response_headers(response)
        no_body = (
            handler.command == "HEAD"
            or response.status in (204, 304)
            or 100 <= response.status < 200
        )
        length = response.getheader("Content-Length")
        chunked = False
        if not no_body and length is None:
            # Chunked or close-delimited upstream body: re-frame it for this client, as
            # nginx does, so the client connection can stay open.
            if handler.request_version == "HTTP/1.1":
                headers.append(("Transfer-Encoding", "chunked"))
                chunked = True
            else:
                handler.close_connection = True
        handler.start(response.status, response.reason, headers)
        if no_body:
            handler.wfile.flush()
            return
        while True:
            try:
                piece = response.read1(_PIECE)
            except http.client.IncompleteRead as exc:
                if exc.partial:
                    handler.wfile.write(exc.partial)
                handler.wfile.flush()
                raise _CutShort from exc
            except OSError as exc:
                raise _CutShort from exc
            if not piece:
                break
            if chunked:
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            else:
                handler.wfile.write(piece)
            handler.wfile.flush()
        if length is not None and response.length not in (None, 0):
            raise _CutShort  # EOF before Content-Length bytes
        # read1() leaves a fully read Content-Length body "open"; read() marks it done, so
        # http.client lets the connection send its next request.
        response.read()
        if chunked:
            handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()


def _connection_tokens(headers: Any) -> set[str]:
    tokens: set[str] = set()
    for value in headers.get_all("Connection") or ():
        tokens.update(t.strip().lower() for t in value.split(","))
    return tokens


def _forwarded_headers(handler: _Handler) -> dict[str, str]:
    skip = HOP_BY_HOP | _connection_tokens(handler.headers) | {"content-length"}
    headers: dict[str, str] = {}
    for name, value in handler.headers.items():
        if name.lower() in skip:
            continue
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    client = handler.client_address[0]
    previous = headers.pop("X-Forwarded-For", None)
    headers["X-Forwarded-For"] = f"{previous}, {client}" if previous else client
    headers.setdefault("X-Forwarded-Proto", "http")
    return headers


def _response_headers(response: http.client.HTTPResponse) -> list[tuple[str, str]]:
    skip = HOP_BY_HOP | _connection_tokens(response.headers)
    return [(k, v) for k, v in response.getheaders() if k.lower() not in skip]


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by its thread
        sock.shutdown(socket.SHUT_RDWR)
