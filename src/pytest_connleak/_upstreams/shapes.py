"""Response shapes: every way of framing a body that has pinned a pooled connection, and
the faults of a real upstream (in the spirit of WireMock's faults and Toxiproxy's toxics).

Each shape is a handler for pytest-httpserver's ``respond_with_handler``; it builds a new
response for every request, because a werkzeug response that streams from a generator
can be served only once.

The faults, and ``close``, write to the connection's socket themselves: werkzeug can
neither reset a connection nor send bytes that are not HTTP, and it adds a
``Connection: close`` of its own to every answer. They then shut the connection (or hand
werkzeug a dead socket), so that werkzeug's own attempt to answer fails with a broken
pipe, which it takes for a client that went away and ignores quietly.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wrappers import Request, Response

from .error_pages import error_page

__all__ = ["RESPONSE_SHAPES", "ResponseShape"]

LARGE_SIZE = 1 << 20
"""Body size of the ``large`` shape: 1 MiB, past the size aiohttp releases by itself."""

SLOW_PIECES = 5
SLOW_INTERVAL = 0.05
"""The ``slow`` body arrives in SLOW_PIECES pieces, SLOW_INTERVAL seconds apart."""

TRUNCATED_LENGTH = 4096
TRUNCATED_SENT = 1024
"""``truncated``, ``reset`` and ``stall`` announce TRUNCATED_LENGTH bytes and send
TRUNCATED_SENT; then ``truncated`` closes, ``reset`` resets and ``stall`` waits."""

STALL_SECONDS = 5.0
"""How long ``stall`` keeps the connection open and silent (it ends sooner if the client
closes it): longer than any read timeout a test sets, short enough not to hold a run."""

GARBAGE = b"SSH-2.0-OpenSSH_9.6\r\n" + bytes(range(0x80, 0x100)) + b"\r\n\r\n"
"""What ``garbage`` sends instead of an answer: what an HTTP client reads when the port
belongs to something else (an SSH banner), then binary noise."""

CLOSE_BODY = b"this connection closes after the response\n"

CHUNKS = (b"first chunk\n", b"second chunk\n", b"third and last chunk\n")


def _status_line(status: int) -> str:
    return f"{status} {HTTP_STATUS_CODES.get(status, 'Unknown Error')}"


def _response(body: bytes, status: int, content_type: str) -> Response:
    response = Response(body, content_type=content_type)
    response.status = _status_line(status)
    return response


def _empty(request: Request, status: int) -> Response:
    response = _response(b"", status, "text/plain")
    del response.headers["Content-Type"]  # an empty body has no type
    response.headers["Content-Length"] = "0"
    return response


def _html(request: Request, status: int) -> Response:
    if status >= 400:
        return error_page(status, style="nginx")
    body = b"<html><head><title>OK</title></head><body><p>OK</p></body></html>\n"
    return _response(body, status, "text/html")


def _json(request: Request, status: int) -> Response:
    reason = HTTP_STATUS_CODES.get(status, "Unknown Error")
    body = json.dumps({"status": status, "message": reason}).encode()
    return _response(body, status, "application/json")


def _large(request: Request, status: int) -> Response:
    return _response(b"x" * LARGE_SIZE, status, "application/octet-stream")


def _chunked(request: Request, status: int) -> Response:
    # No Content-Length on an HTTP/1.1 response: the server frames it with chunks.
    response = Response(iter(CHUNKS), content_type="text/plain")
    response.status = _status_line(status)
    return response


def _slow(request: Request, status: int) -> Response:
    def trickle() -> Iterator[bytes]:
        # An empty first piece makes werkzeug send and flush the headers right away.
        yield b""
        for _ in range(SLOW_PIECES):
            time.sleep(SLOW_INTERVAL)
            yield b"slow\n"

    response = Response(trickle(), content_type="text/plain")
    response.status = _status_line(status)
    response.headers["Content-Length"] = str(SLOW_PIECES * len(b"slow\n"))
    return response


def _truncated(request: Request, status: int) -> Response:
    def cut() -> Iterator[bytes]:
        yield b"t" * TRUNCATED_SENT
        # Half-close both ways: the client sees EOF after the partial body, and the
        # server's next read ends its keep-alive loop. The server still closes the socket.
        sock = request.environ.get("werkzeug.socket")
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):  # the client went first
                sock.shutdown(socket.SHUT_RDWR)

    response = Response(cut(), content_type="application/octet-stream")
    response.status = _status_line(status)
    response.headers["Content-Length"] = str(TRUNCATED_LENGTH)
    return response


def _socket(request: Request) -> socket.socket:
    sock = request.environ.get("werkzeug.socket")
    if not isinstance(sock, socket.socket):  # pragma: no cover - werkzeug always sets it
        raise RuntimeError("this response shape needs werkzeug's development server")
    return sock


def _head(status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {_status_line(status)}", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _send(sock: socket.socket, data: bytes) -> bool:
    """Send *data*; False if the client has already gone."""
    try:
        sock.sendall(data)
    except OSError:
        return False
    return True


def _close_connection(sock: socket.socket) -> None:
    # A FIN both ways; werkzeug's own writes after this fail with EPIPE.
    with contextlib.suppress(OSError):  # the client went first
        sock.shutdown(socket.SHUT_RDWR)


def _reset_connection(sock: socket.socket) -> None:
    # A zero linger time makes the last close of the connection send a reset (RST)
    # instead of a FIN. The close is done by dup2() putting a dead socket (its peer
    # closed, so writes fail with EPIPE) on werkzeug's descriptor: atomic, so no other
    # thread can be handed the descriptor number in between, and werkzeug's later
    # writes, shutdown and close land on the dead socket.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    dead, peer = socket.socketpair()
    peer.close()
    try:
        os.dup2(dead.fileno(), sock.fileno())
    except OSError:  # pragma: no cover - no dup2 on sockets (Windows): a FIN will do
        _close_connection(sock)
    finally:
        dead.close()


def _placeholder(status: int) -> Response:
    # What the handler returns after answering by hand: werkzeug's attempt to send it
    # fails on the closed connection, and pytest-httpserver logs it.
    return _response(b"", status, "text/plain")


def _close(request: Request, status: int) -> Response:
    # By hand, because werkzeug adds "Connection: close" to every answer it sends: a
    # shape that set it too would send the header twice.
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(CLOSE_BODY))),
        ("Connection", "close"),
    ]
    sock = _socket(request)
    _send(sock, _head(status, headers) + CLOSE_BODY)
    _close_connection(sock)
    response = _response(CLOSE_BODY, status, "text/plain")
    response.headers["Connection"] = "close"
    return response


def _partial_head(status: int) -> bytes:
    headers = [
        ("Content-Type", "application/octet-stream"),
        ("Content-Length", str(TRUNCATED_LENGTH)),
    ]
    return _head(status, headers) + b"t" * TRUNCATED_SENT


def _reset(request: Request, status: int) -> Response:
    sock = _socket(request)
    _send(sock, _partial_head(status))
    _reset_connection(sock)
    return _placeholder(status)


def _stall(request: Request, status: int) -> Response:
    sock = _socket(request)
    if _send(sock, _partial_head(status)):
        deadline = time.monotonic() + STALL_SECONDS
        # Silent until the client gives up (EOF or a reset on its side) or time is up.
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([sock], [], [], left)
            if readable:
                try:
                    if not sock.recv(65536):
                        break
                except OSError:
                    break
    _close_connection(sock)
    return _placeholder(status)


def _garbage(request: Request, status: int) -> Response:
    sock = _socket(request)
    _send(sock, GARBAGE)
    _close_connection(sock)
    return _placeholder(status)


def _no_response(request: Request, status: int) -> Response:
    _close_connection(_socket(request))
    return _placeholder(status)


@dataclass(frozen=True)
class ResponseShape:
    """One response shape: a handler for ``respond_with_handler`` with a name and status.

    Call it with a werkzeug ``Request`` to get a new ``Response``. ``with_status(code)``
    returns the same shape answering *code*, so a test can run "403 with every body
    framing" (``shape.with_status(403)``). ``fault`` is true for the shapes that never
    deliver a whole answer (``truncated``, ``reset``, ``stall``, ``garbage``,
    ``no_response``): the client gets an exception, at the request or while reading.
    """

    name: str
    status: int
    description: str
    build: Callable[[Request, int], Response] = field(repr=False, compare=False)
    fault: bool = False

    def __call__(self, request: Request) -> Response:
        """Build this shape's response for *request*."""
        return self.build(request, self.status)

    @property
    def handler(self) -> Callable[[Request], Response]:
        """This shape as a plain handler for ``respond_with_handler`` (the shape itself)."""
        return self

    def with_status(self, status: int) -> ResponseShape:
        """The same shape answering with *status*."""
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError(f"status must be an int from 100 to 599, got {status!r}")
        return replace(self, status=status)


def _shape(
    name: str,
    build: Callable[[Request, int], Response],
    doc: str,
    status: int = 200,
    *,
    fault: bool = False,
) -> tuple[str, ResponseShape]:
    return name, ResponseShape(name, status, doc, build, fault)


RESPONSE_SHAPES: Mapping[str, ResponseShape] = MappingProxyType(
    dict(
        [
            _shape("empty", _empty, "no body, Content-Length: 0"),
            _shape("html", _html, "nginx's HTML error page (403 by default)", 403),
            _shape("json", _json, "a small JSON document"),
            _shape("large", _large, f"{LARGE_SIZE} bytes with a Content-Length"),
            _shape("chunked", _chunked, "Transfer-Encoding: chunked, several chunks"),
            _shape(
                "slow",
                _slow,
                f"headers at once, then the body in {SLOW_PIECES} pieces {SLOW_INTERVAL}s apart",
            ),
            _shape("close", _close, "a short body, Connection: close, then the server closes"),
            _shape(
                "truncated",
                _truncated,
                f"Content-Length {TRUNCATED_LENGTH}, {TRUNCATED_SENT} bytes sent, "
                "then the connection is closed",
                fault=True,
            ),
            _shape(
                "reset",
                _reset,
                f"Content-Length {TRUNCATED_LENGTH}, {TRUNCATED_SENT} bytes sent, "
                "then the connection is reset (RST)",
                fault=True,
            ),
            _shape(
                "stall",
                _stall,
                f"Content-Length {TRUNCATED_LENGTH}, {TRUNCATED_SENT} bytes sent, then "
                f"silence until the client closes or {STALL_SECONDS}s pass",
                fault=True,
            ),
            _shape(
                "garbage",
                _garbage,
                "bytes that are not HTTP (an SSH banner, binary noise), then a close",
                fault=True,
            ),
            _shape(
                "no_response",
                _no_response,
                "the connection is closed before anything is sent",
                fault=True,
            ),
        ]
    )
)
"""Response shapes by name, each a :class:`ResponseShape` for ``respond_with_handler``.

Framings: ``empty``, ``html``, ``json``, ``large``, ``chunked``, ``slow``, ``close``.
Faults (``fault`` is true): ``truncated``, ``reset``, ``stall``, ``garbage`` and
``no_response``. Every shape answers 200 except ``html``, which answers 403 with nginx's
page, because a load balancer page comes with an error status; ``with_status()`` changes
that (``garbage`` and ``no_response`` send no status).
"""
