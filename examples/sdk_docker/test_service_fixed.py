"""The fixed helper: every test passes with --leak-check."""

from __future__ import annotations

import docker
from service_fixed import pull_started


def test_pull_started(api: docker.APIClient) -> None:
    assert pull_started(api, "alpine") == "Pulling fs layer"
