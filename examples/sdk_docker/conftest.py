"""The Docker SDK (requests and urllib3 under it) against a local Engine API server."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest
from fake_docker import API_VERSION, serve


@pytest.fixture(scope="session")
def api() -> Iterator[docker.APIClient]:
    """One low-level client for the run, pinned to the server's API version."""
    with serve() as base_url:
        client = docker.APIClient(base_url=base_url, version=API_VERSION)
        yield client
        client.close()
