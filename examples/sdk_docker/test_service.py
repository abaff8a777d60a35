"""The image helper as first written; with --leak-check, pull_started is caught."""

from __future__ import annotations

import docker
from service import pull, pull_started


def test_pull_started(api: docker.APIClient) -> None:
    assert pull_started(api, "alpine") == "Pulling fs layer"


def test_pull(api: docker.APIClient) -> None:
    assert pull(api, "alpine")[-1] == "Status: Downloaded newer image"


def test_pull_not_streamed(api: docker.APIClient) -> None:
    assert "Downloaded newer image" in api.pull("alpine")
