"""Response shapes: every way of framing a body that has pinned a pooled connection.

Each shape is a handler for pytest-httpserver's ``respond_with_handler``; it builds a new
response for every request, because a werkzeug response that streams from a generator
can be served only once.
"""

from __future__ import annotations

import contextlib
import json
import socket
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
"""The ``truncated`` shape announces TRUNCATED_LENGTH bytes, sends TRUNCATED_SENT, and cuts."""

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


def _close(request: Request, status: int) -> Response:
    response = _response(b"this connection closes after the response\n", status, "text/plain")
    response.headers["Connection"] = "close"
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


@dataclass(frozen=True)
class ResponseShape:
    """One response shape: a handler for ``respond_with_handler`` with a name and status.

    Call it with a werkzeug ``Request`` to get a new ``Response``. ``with_status(code)``
    returns the same shape answering *code*, so a test can run "403 with every body
    framing" (``shape.with_status(403)``).
    """

    name: str
    status: int
    description: str
    build: Callable[[Request, int], Response] = field(repr=False, compare=False)

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
    name: str, build: Callable[[Request, int], Response], doc: str, status: int = 200
) -> tuple[str, ResponseShape]:
    return name, ResponseShape(name, status, doc, build)


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
            _shape("close", _close, "a short body and Connection: close"),
            _shape(
                "truncated",
                _truncated,
                f"Content-Length {TRUNCATED_LENGTH}, {TRUNCATED_SENT} bytes sent, "
                "then the connection is cut",
            ),
        ]
    )
)
"""Response shapes by name, each a :class:`ResponseShape` for ``respond_with_handler``.

``empty``, ``html``, ``json``, ``large``, ``chunked``, ``slow``, ``close`` and
``truncated``. Every shape answers 200 except ``html``, which answers 403 with nginx's
page, because a load balancer page comes with an error status; ``with_status()`` changes
that.
"""
