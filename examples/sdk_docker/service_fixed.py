"""The fix: consume the progress stream to its end, as docker's documentation asks."""

from __future__ import annotations

import docker


def pull_started(api: docker.APIClient, image: str) -> str:
    statuses = [str(event["status"]) for event in api.pull(image, stream=True, decode=True)]
    return statuses[0]
