"""The suite's real PostgreSQL and Redis: session fixtures over ``examples/databases/servers.py``.

One implementation for the examples and the suite, loaded by path (examples/ is not a
package). Each server takes about a second to start, on first use only.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parent.parent / "examples" / "databases" / "servers.py"
_spec = importlib.util.spec_from_file_location("connleak_example_servers", _PATH)
assert _spec is not None and _spec.loader is not None
servers = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = servers
_spec.loader.exec_module(servers)

PG_PASSWORD: str = servers.PG_PASSWORD
REDIS_PASSWORD: str = servers.REDIS_PASSWORD


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """``postgresql://postgres:PASSWORD@127.0.0.1:PORT/postgres`` of a real PostgreSQL."""
    server = servers.PostgresServer()
    try:
        server.start()
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """``redis://:PASSWORD@127.0.0.1:PORT/0`` of a real Redis."""
    server = servers.RedisServer()
    try:
        server.start()
        yield server.url
    finally:
        server.stop()
