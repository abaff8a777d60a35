"""error_page(): the bytes and headers each load balancer sends, checked on the wire.

The pages are served by the load_balancer proxy, which writes only the page's own headers
(werkzeug's test server would add a ``Server: Werkzeug`` header of its own).
"""

from __future__ import annotations

import http.client
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pytest_httpserver import HTTPServer

from conftest import LB_403_PAGE
from pytest_connleak import error_page
from pytest_connleak._upstreams.error_pages import STYLES


def fetch(url: str, method: str = "GET") -> tuple[int, str, http.client.HTTPMessage, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request(method, parts.path or "/")
        response = conn.getresponse()
        return response.status, response.reason, response.headers, response.read()
    finally:
        conn.close()


@pytest.fixture
def page_via_proxy(
    lb_httpserver: HTTPServer, load_balancer: Callable[..., str]
) -> Callable[[int, str], tuple[int, str, http.client.HTTPMessage, bytes]]:
    """GET through a proxy of *style* whose upstream answers *status* with no body."""

    def get(status: int, style: str) -> tuple[int, str, http.client.HTTPMessage, bytes]:
        lb_httpserver.expect_request(f"/{status}").respond_with_data(b"", status=status)
        return fetch(load_balancer(lb_httpserver.url_for("/"), style=style) + f"/{status}")

    return get


# (style, status) -> (body size, Server header, Content-Type), from the real proxies.
EXPECTED = {
    ("nginx", 403): (548, "nginx", "text/html"),
    ("nginx", 502): (552, "nginx", "text/html"),
    ("haproxy", 403): (93, None, "text/html"),
    ("haproxy", 503): (107, None, "text/html"),
    ("envoy", 503): (19, "envoy", "text/plain"),
    ("envoy", 403): (19, "envoy", "text/plain"),
    ("aws-alb", 403): (118, "awselb/2.0", "text/html"),
    ("aws-alb", 502): (122, "awselb/2.0", "text/html"),
    ("aws-alb", 503): (162, "awselb/2.0", "text/html"),
}


@pytest.mark.parametrize(("style", "status"), sorted(EXPECTED), ids=lambda v: str(v))
def test_page_on_the_wire(
    page_via_proxy: Callable[[int, str], tuple[int, str, http.client.HTTPMessage, bytes]],
    style: str,
    status: int,
) -> None:
    size, server, content_type = EXPECTED[style, status]
    got_status, _, headers, body = page_via_proxy(status, style)
    assert got_status == status
    assert len(body) == size
    assert headers["Content-Length"] == str(size)
    assert headers["Content-Type"] == content_type
    assert headers.get_all("Server") == ([server] if server else None)
    assert body == error_page(status, style=style).get_data()


def test_nginx_403_is_the_page_of_the_incident(
    page_via_proxy: Callable[[int, str], tuple[int, str, http.client.HTTPMessage, bytes]],
) -> None:
    status, reason, _, body = page_via_proxy(403, "nginx")
    assert (status, reason) == (403, "Forbidden")
    assert body.decode() == LB_403_PAGE


def test_cloudflare_pages_are_several_kilobytes(
    page_via_proxy: Callable[[int, str], tuple[int, str, http.client.HTTPMessage, bytes]],
) -> None:
    status, _, headers, body = page_via_proxy(502, "cloudflare")
    assert status == 502
    assert len(body) >= 4096
    assert headers["Server"] == "cloudflare"
    assert headers["Content-Type"] == "text/html; charset=UTF-8"
    assert headers["CF-RAY"].endswith("-AMS")
    assert b"Error code 502" in body


def test_envoy_404_has_no_body(
    page_via_proxy: Callable[[int, str], tuple[int, str, http.client.HTTPMessage, bytes]],
) -> None:
    status, _, headers, body = page_via_proxy(404, "envoy")
    assert (status, body, headers["Content-Length"]) == (404, b"", "0")
    assert "Content-Type" not in headers


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("status", [400, 401, 404, 418, 429, 500, 504, 599])
def test_every_error_status_has_a_page(style: str, status: int) -> None:
    page = error_page(status, style=style)
    assert page.status_code == status
    assert page.headers["Content-Length"] == str(len(page.get_data()))
    if page.get_data():
        assert page.headers["Content-Type"].startswith(("text/html", "text/plain"))


def test_each_call_builds_a_new_response() -> None:
    assert error_page(403) is not error_page(403)


def test_unknown_style_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown error page style 'apache'; valid styles: ") as e:
        error_page(403, style="apache")
    for style in STYLES:
        assert style in str(e.value)


@pytest.mark.parametrize("status", [200, 302, 399, 600, 99, "403", True, 403.0])
def test_a_status_that_is_not_an_error_is_rejected(status: object) -> None:
    with pytest.raises(ValueError, match=r"an HTTP error status \(an int from 400 to 599\)"):
        error_page(status, style="nginx")  # type: ignore[arg-type]


PROXY_NAMES = {
    "nginx": "nginx",
    "haproxy": "haproxy",
    "envoy": "envoy",
    "aws-alb": "aws-alb",
    "application load balancer": "aws-alb",
}


def test_the_docs_quote_the_sizes_error_page_sends() -> None:
    """Each "548-byte 403" or "93 bytes for a 403" in the pages is the size of that page.

    The proxy is the one named last before the figure (within its sentence or table row).
    """
    root = Path(__file__).resolve().parent.parent
    pages = [root / "README.md", *root.glob("docs/**/*.md"), *root.glob("examples/*/README.md")]
    figure = re.compile(r"\b(\d+)(?:-byte| bytes for a| for a) (\d{3})\b")
    checked = []
    for page in pages:
        for chunk in re.split(r"\n\s*\n|\n(?=\|)", page.read_text()):  # paragraphs, rows
            text = " ".join(chunk.split()).lower()
            for match in figure.finditer(text):
                before = text[: match.start()]
                at, style = max((before.rfind(name), style) for name, style in PROXY_NAMES.items())
                if at < 0:
                    continue
                size, status = int(match[1]), int(match[2])
                sent = len(error_page(status, style=style).get_data())
                assert sent == size, (
                    f"{page.relative_to(root)}: {match[0]!r} ({style} sends {sent})"
                )
                checked.append((style, size, status))
    # Guards the test against reading nothing: the figures the pages quote today.
    assert {("nginx", 548, 403), ("nginx", 592, 503), ("haproxy", 93, 403)} <= set(checked)
