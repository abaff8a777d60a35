"""A profile service as it shipped: it leaks a connection whenever the profile API refuses.

A small WSGI app. ``/profile/NAME`` asks the profile API (behind a load balancer) for a
user's profile; ``/metrics`` is the Prometheus endpoint. At start-up it calls
``pytest_connleak.track(leak_threshold=...)``, so a connection leased longer than the
threshold is logged with the line that leased it, and registers the pool collector.

Run it with ``PROFILE_API=http://HOST:PORT python service.py`` (``PORT``, default 8000,
and ``LEAK_THRESHOLD`` in seconds, default 30, are read from the environment too).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
from prometheus_client import REGISTRY, make_wsgi_app

import pytest_connleak
from pytest_connleak.prometheus import PoolCollector

log = logging.getLogger("service")

# A small pool, so that the 75% warning comes early: at 3 of 4 connections.
client = httpx.Client(
    base_url=os.environ.get("PROFILE_API", "http://127.0.0.1:8080"),
    limits=httpx.Limits(max_connections=4),
    timeout=5,
)


# --8<-- [start:fetch]
def fetch_profile(user: str) -> dict[str, Any] | None:
    """The user's profile, or None when the profile API refuses (403)."""
    response = client.send(client.build_request("GET", f"/profiles/{user}"), stream=True)
    if response.status_code == 403:
        return None  # the leak: the load balancer's 403 page is never read nor closed
    try:
        response.read()
        return dict(response.json())
    finally:
        response.close()
    # --8<-- [end:fetch]


metrics = make_wsgi_app(REGISTRY)


def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """The WSGI application: ``/profile/NAME`` and ``/metrics``."""
    path = environ.get("PATH_INFO", "")
    if path == "/metrics":
        return metrics(environ, start_response)  # type: ignore[no-any-return]
    if path.startswith("/profile/"):
        profile = fetch_profile(path.removeprefix("/profile/"))
        if profile is None:
            start_response("403 Forbidden", [("Content-Type", "application/json")])
            return [b'{"error": "forbidden"}']
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(profile).encode()]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found"]


class Server(WSGIServer):
    """Requests served by a pool of worker threads, as gunicorn's gthread or waitress do."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.workers = ThreadPoolExecutor(max_workers=8, thread_name_prefix="worker")

    def process_request(self, request: Any, client_address: Any) -> None:
        self.workers.submit(self.serve_one, request, client_address)

    def serve_one(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        self.workers.shutdown(wait=False)


class Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # the access log would drown the lines this example is about


def main() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # --8<-- [start:track]
    tracking = pytest_connleak.track(leak_threshold=float(os.environ.get("LEAK_THRESHOLD", 30)))
    REGISTRY.register(PoolCollector())
    # --8<-- [end:track]
    port = int(os.environ.get("PORT", 8000))
    server = make_server("127.0.0.1", port, app, server_class=Server, handler_class=Handler)
    log.info("listening on http://127.0.0.1:%d", server.server_port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        tracking.stop()
        client.close()


if __name__ == "__main__":
    main()
