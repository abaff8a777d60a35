"""Make werkzeug's development server send every response header once.

werkzeug's request handler adds ``Server`` and ``Date`` of its own to every answer, and
``Connection: close``; a response that sets one of them (an error page's
``Server: nginx``, a shape's ``Connection: close``) then goes out with the header twice,
which no real server does. :func:`one_header_each` gives the response's own value the
last word: werkzeug's defaults are sent only for the names the response did not set,
and a header repeated with the same value is sent once.
"""

from __future__ import annotations

from typing import Any

__all__ = ["one_header_each"]


class _OneHeaderEach:
    """Mixin for a ``http.server.BaseHTTPRequestHandler`` subclass (werkzeug's)."""

    _connleak_sent: set[tuple[str, str]] | None = None
    _connleak_defaults: list[tuple[str, str]] = []

    def send_response(self, code: int, message: str | None = None) -> None:
        # BaseHTTPRequestHandler.send_response, with Server and Date held back until the
        # response's own headers are known (end_headers).
        self.log_request(code)  # type: ignore[attr-defined]
        self.send_response_only(code, message)  # type: ignore[attr-defined]
        self._connleak_sent = set()
        self._connleak_defaults = [
            ("Server", self.version_string()),  # type: ignore[attr-defined]
            ("Date", self.date_time_string()),  # type: ignore[attr-defined]
        ]

    def send_header(self, keyword: str, value: str) -> None:
        sent = self._connleak_sent
        if sent is not None:
            key = (keyword.lower(), str(value).strip().lower())
            if key in sent:
                return
            sent.add(key)
        super().send_header(keyword, value)  # type: ignore[misc]

    def end_headers(self) -> None:
        sent = self._connleak_sent
        if sent is not None:
            names = {name for name, _ in sent}
            for name, value in self._connleak_defaults:
                if name.lower() not in names:
                    super().send_header(name, value)  # type: ignore[misc]
            self._connleak_sent = None
        super().end_headers()  # type: ignore[misc]


def one_header_each(server: Any) -> None:
    """Make the running werkzeug *server* (``make_server``'s) send each header once.

    The handler class is looked up for every new connection, so this applies to every
    connection accepted from now on.
    """
    handler = server.RequestHandlerClass
    if not issubclass(handler, _OneHeaderEach):
        server.RequestHandlerClass = type(handler.__name__, (_OneHeaderEach, handler), {})
