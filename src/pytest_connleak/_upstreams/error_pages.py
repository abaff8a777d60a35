"""The error pages load balancers put in front of a 4xx/5xx, byte for byte where we know them.

The leak this plugin was written for hid because the mocked upstream answered 403 with no
body while the deployed load balancer answered it with a page: a client that only looks at
the status code leaves that body unread, and its connection leased. These pages are what
the real proxies send, so a test sees the same bytes production does.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wrappers import Response

__all__ = ["STYLES", "error_page"]

_CRLF = "\r\n"

# nginx's own wording where it differs from the RFC phrase (ngx_http_special_response.c);
# the AWS ALB uses the same wording for the statuses it generates.
_NGINX_TITLES = {
    405: "Not Allowed",
    408: "Request Time-out",
    413: "Request Entity Too Large",
    414: "Request-URI Too Large",
    416: "Requested Range Not Satisfiable",
    494: "Request Header Or Cookie Too Large",
    495: "SSL Certificate Error",
    496: "No Required SSL Certificate",
    497: "HTTP Request Sent to HTTPS Port",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}
_ALB_TITLES = {**_NGINX_TITLES, 405: "Method Not Allowed"}

# nginx appends this to 4xx/5xx pages for MSIE and Chrome user agents (msie_padding on,
# the default), so that browsers show the page instead of their own "friendly" one.
_NGINX_PADDING = "<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n" * 6

# HAProxy's built-in messages (http_err_msgs); other statuses get the same template.
_HAPROXY_TEXT = {
    400: ("400 Bad request", "Your browser sent an invalid request."),
    401: ("401 Unauthorized", "You need a valid user and password to access this content."),
    403: ("403 Forbidden", "Request forbidden by administrative rules."),
    404: ("404 Not Found", "The resource could not be found."),
    405: (
        "405 Method Not Allowed",
        "A request was made of a resource using a request method not supported by that resource",
    ),
    408: ("408 Request Time-out", "Your browser didn't send a complete request in time."),
    410: (
        "410 Gone",
        "The resource is no longer available and will not be available again.",
    ),
    413: ("413 Payload Too Large", "The request entity exceeds the maximum allowed."),
    425: ("425 Too Early", "Your browser sent early data."),
    429: ("429 Too Many Requests", "You have sent too many requests in a given amount of time."),
    500: ("500 Internal Server Error", "An internal server error occurred."),
    501: (
        "501 Not Implemented",
        ".The server does not support the functionality required to fulfill the request.",
    ),
    502: ("502 Bad Gateway", "The server returned an invalid or incomplete response."),
    503: ("503 Service Unavailable", "No server is available to handle this request."),
    504: ("504 Gateway Time-out", "The server didn't respond in time."),
}

# Envoy's local replies are short plain-text details, not HTML; a 404 for a missing route
# has no body at all.
_ENVOY_TEXT = {
    401: "Jwt is missing",
    403: "RBAC: access denied",
    404: "",
    408: "request timeout",
    413: "Payload Too Large",
    429: "local_rate_limited",
    502: "upstream connect error or disconnect/reset before headers. reset reason: protocol error",
    503: "no healthy upstream",
    504: "upstream request timeout",
}


def _phrase(status: int, overrides: dict[int, str] | None = None) -> str:
    if overrides and status in overrides:
        return overrides[status]
    return HTTP_STATUS_CODES.get(status, "Unknown Error")


def _nginx(status: int) -> tuple[str, dict[str, str]]:
    title = f"{status} {_phrase(status, _NGINX_TITLES)}"
    body = (
        f"<html>{_CRLF}<head><title>{title}</title></head>{_CRLF}<body>{_CRLF}"
        f"<center><h1>{title}</h1></center>{_CRLF}"
        f"<hr><center>nginx</center>{_CRLF}</body>{_CRLF}</html>{_CRLF}" + _NGINX_PADDING
    )
    return body, {"Server": "nginx", "Content-Type": "text/html"}


def _aws_alb(status: int) -> tuple[str, dict[str, str]]:
    # nginx's layout without the signature line: 122 bytes for a 502, 162 for a 503.
    title = f"{status} {_phrase(status, _ALB_TITLES)}"
    body = (
        f"<html>{_CRLF}<head><title>{title}</title></head>{_CRLF}<body>{_CRLF}"
        f"<center><h1>{title}</h1></center>{_CRLF}</body>{_CRLF}</html>{_CRLF}"
    )
    return body, {"Server": "awselb/2.0", "Content-Type": "text/html"}


def _haproxy(status: int) -> tuple[str, dict[str, str]]:
    heading, text = _HAPROXY_TEXT.get(
        status, (f"{status} {_phrase(status)}", f"{_phrase(status)}.")
    )
    body = f"<html><body><h1>{heading}</h1>\n{text}\n</body></html>\n"
    # HAProxy sends no Server header of its own: what the client sees is only these.
    return body, {"Cache-Control": "no-cache", "Content-Type": "text/html"}


def _envoy(status: int) -> tuple[str, dict[str, str]]:
    body = _ENVOY_TEXT.get(status, _phrase(status))
    headers = {"Server": "envoy"}
    if body:
        headers["Content-Type"] = "text/plain"
    return body, headers


_CLOUDFLARE_PAGE = """<!DOCTYPE html>
<!--[if lt IE 7]> <html class="no-js ie6 oldie" lang="en-US"> <![endif]-->
<!--[if IE 7]>    <html class="no-js ie7 oldie" lang="en-US"> <![endif]-->
<!--[if IE 8]>    <html class="no-js ie8 oldie" lang="en-US"> <![endif]-->
<!--[if gt IE 8]><!--> <html class="no-js" lang="en-US"> <!--<![endif]-->
<head>
<title>{host} | {status}: {phrase}</title>
<meta charset="UTF-8" />
<meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
<meta http-equiv="X-UA-Compatible" content="IE=Edge" />
<meta name="robots" content="noindex, nofollow" />
<meta name="viewport" content="width=device-width,initial-scale=1" />
<link rel="stylesheet" id="cf_styles-css" href="/cdn-cgi/styles/main.css" />
<style>
body{{margin:0;padding:0}}#cf-wrapper{{font-family:-apple-system,system-ui,sans-serif}}
#cf-error-details header{{padding:2.5rem 0 1.5rem}}.code-label{{color:#999;font-size:1rem}}
.cf-status-item{{width:33%;float:left;text-align:center;padding:3.75rem 0}}
.cf-status-ok{{color:#9bca3e}}.cf-status-error{{color:#bd2426}}
.cf-columns{{display:flex;gap:2rem}}.cf-column{{flex:1}}
#cf-footer{{border-top:1px solid #dedede;padding:1rem 0;font-size:.8125rem;color:#404040}}
.cf-footer-separator{{padding:0 .25rem}}.hidden{{display:none}}
</style>
</head>
<body>
<div id="cf-wrapper">
  <div id="cf-error-details" class="p-0">
    <header class="mx-auto pt-10 lg:pt-6 lg:px-8 w-240 lg:w-full mb-8">
      <h1 class="inline-block sm:block sm:mb-2 font-light text-60 lg:text-4xl leading-tight">
        <span class="inline-block">{phrase}</span>
        <span class="code-label">Error code {status}</span>
      </h1>
      <div>
        Visit <a href="https://www.cloudflare.com/5xx-error-landing?utm_source=errorcode_{status}"
        target="_blank" rel="noopener noreferrer">cloudflare.com</a> for more information.
      </div>
      <div class="mt-3">2024-01-01 00:00:00 UTC</div>
    </header>
    <div class="my-8 bg-gradient-gray">
      <div class="w-240 lg:w-full mx-auto">
        <div class="clearfix md:px-8">
          <div id="cf-browser-status" class="cf-status-item">
            <span class="cf-icon-browser block md:hidden h-20 bg-center bg-no-repeat"></span>
            <span class="md:block w-full truncate">You</span>
            <h3 class="md:inline-block mt-3 md:mt-0 text-2xl text-gray-600 font-light">
              Browser</h3>
            <span class="leading-1.3 text-2xl cf-status-ok">Working</span>
          </div>
          <div id="cf-cloudflare-status" class="cf-status-item">
            <span class="cf-icon-cloud block md:hidden h-20 bg-center bg-no-repeat"></span>
            <span class="md:block w-full truncate">Amsterdam</span>
            <h3 class="md:inline-block mt-3 md:mt-0 text-2xl text-gray-600 font-light">
              Cloudflare</h3>
            <span class="leading-1.3 text-2xl cf-status-ok">Working</span>
          </div>
          <div id="cf-host-status" class="cf-status-item cf-error-source">
            <span class="cf-icon-server block md:hidden h-20 bg-center bg-no-repeat"></span>
            <span class="md:block w-full truncate">{host}</span>
            <h3 class="md:inline-block mt-3 md:mt-0 text-2xl text-gray-600 font-light">
              Host</h3>
            <span class="leading-1.3 text-2xl cf-status-error">Error</span>
          </div>
        </div>
      </div>
    </div>
    <div class="w-240 lg:w-full mx-auto mb-8 lg:px-8">
      <div class="clearfix cf-columns">
        <div class="cf-column">
          <h2 class="text-3xl font-normal leading-1.3 mb-4">What happened?</h2>
          <p>The web server reported an error ({status} {phrase}) while Cloudflare was
          handling your request, so the page cannot be displayed right now.</p>
        </div>
        <div class="cf-column">
          <h2 class="text-3xl font-normal leading-1.3 mb-4">What can I do?</h2>
          <h3 class="text-15 font-semibold mb-2">If you are a visitor of this website:</h3>
          <p class="mb-6">Please try again in a few minutes.</p>
          <h3 class="text-15 font-semibold mb-2">If you are the owner of this website:</h3>
          <p><span>Contact your hosting provider letting them know your web server is not
          completing requests. An Error {status} means the origin answered with an error
          status. Additional troubleshooting information is available in the Cloudflare
          documentation.</span></p>
        </div>
      </div>
    </div>
    <div class="cf-error-footer cf-wrapper w-240 lg:w-full py-10 sm:py-4 sm:px-8 mx-auto
      text-center sm:text-left border-solid border-0 border-t border-gray-300" id="cf-footer">
      <p class="text-13">
        <span class="cf-footer-item sm:block sm:mb-1">Cloudflare Ray ID:
          <strong class="font-semibold">{ray}</strong></span>
        <span class="cf-footer-separator sm:hidden">&bull;</span>
        <span id="cf-footer-item-ip" class="cf-footer-item hidden sm:block sm:mb-1">
          Your IP:
          <button type="button" id="cf-footer-ip-reveal" class="cf-footer-ip-reveal-btn">
            Click to reveal</button>
          <span class="hidden" id="cf-footer-ip">127.0.0.1</span>
          <span class="cf-footer-separator sm:hidden">&bull;</span>
        </span>
        <span class="cf-footer-item sm:block sm:mb-1"><span>Performance &amp; security by</span>
          <a rel="noopener noreferrer" href="https://www.cloudflare.com/5xx-error-landing"
          id="brand_link" target="_blank">Cloudflare</a></span>
      </p>
      <script>(function(){{function d(){{var b=document.getElementById("cf-footer-item-ip"),
      c=document.getElementById("cf-footer-ip-reveal");b&&"classList"in b&&(b.classList.
      remove("hidden"),c.addEventListener("click",function(){{c.classList.add("hidden");
      document.getElementById("cf-footer-ip").classList.remove("hidden")}}))}}
      document.addEventListener&&document.addEventListener("DOMContentLoaded",d)}})();
      </script>
    </div>
  </div>
</div>
</body>
</html>
"""


def _cloudflare(status: int) -> tuple[str, dict[str, str]]:
    # A fixed Ray ID per status keeps the page, and so its size, the same on every run.
    ray = f"{zlib.crc32(str(status).encode()):08x}{status:04d}{status * 7:04x}"[:16] + "-AMS"
    body = _CLOUDFLARE_PAGE.format(host="127.0.0.1", status=status, phrase=_phrase(status), ray=ray)
    headers = {
        "Server": "cloudflare",
        "Content-Type": "text/html; charset=UTF-8",
        "CF-RAY": ray,
        "Cache-Control": "private, max-age=0, no-store, no-cache, must-revalidate, "
        "post-check=0, pre-check=0",
        "Expires": "Thu, 01 Jan 1970 00:00:01 GMT",
        "Referrer-Policy": "same-origin",
        "X-Frame-Options": "SAMEORIGIN",
    }
    return body, headers


_BUILDERS: dict[str, Callable[[int], tuple[str, dict[str, str]]]] = {
    "nginx": _nginx,
    "haproxy": _haproxy,
    "envoy": _envoy,
    "aws-alb": _aws_alb,
    "cloudflare": _cloudflare,
}

STYLES: tuple[str, ...] = tuple(_BUILDERS)
"""The load balancer styles :func:`error_page` knows."""


def check_style(style: str) -> None:
    """Raise :class:`ValueError` unless *style* is one of :data:`STYLES`."""
    if style not in _BUILDERS:
        raise ValueError(f"unknown error page style {style!r}; valid styles: {', '.join(STYLES)}")


def error_page(status: int, *, style: str = "nginx") -> Response:
    """The response a load balancer sends for the HTTP error *status*.

    Returns a new :class:`werkzeug.Response` with the status, the body and the headers
    (``Content-Length``, ``Content-Type``, ``Server``) that the proxy named by *style*
    sends when it generates or replaces an error response:

    ``"nginx"``
        nginx's built-in page with ``server_tokens off`` and the six comment lines it adds
        for browsers (``msie_padding``, on by default): 548 bytes for a 403.
    ``"haproxy"``
        HAProxy's built-in ``errorfile`` messages (93 bytes for a 403), with
        ``Cache-Control: no-cache`` and, as HAProxy does, no ``Server`` header.
    ``"envoy"``
        Envoy's plain-text local replies (``text/plain``, ``server: envoy``), such as
        ``no healthy upstream`` for a 503; a 404 (no route) has an empty body and no
        ``Content-Type``.
    ``"aws-alb"``
        An AWS Application Load Balancer page, ``Server: awselb/2.0`` (118 bytes for a 403).
    ``"cloudflare"``
        A Cloudflare error page of several kilobytes, ``Server: cloudflare`` and a
        ``CF-RAY`` header.

    Statuses a proxy has no page of its own for get the same layout with the standard
    reason phrase. The response is built anew on each call, so it can be returned from a
    handler. Raises :class:`ValueError` for an unknown *style* or a status outside
    400-599.
    """
    check_style(style)
    if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
        raise ValueError(
            f"status must be an HTTP error status (an int from 400 to 599), got {status!r}"
        )
    body, headers = _BUILDERS[style](status)
    response = Response(body.encode("utf-8"))
    # The proxies send the RFC's capitalisation ("403 Forbidden"), werkzeug upper-cases it.
    response.status = f"{status} {HTTP_STATUS_CODES.get(status, 'Unknown Error')}"
    # Response() adds its own text/plain default; the proxy's headers replace it.
    del response.headers["Content-Type"]
    for name, value in headers.items():
        response.headers[name] = value
    return response
