"""An image helper as first written: it reads the first progress line and stops."""

from __future__ import annotations

from typing import Any

import docker


def pull_started(api: docker.APIClient, image: str) -> str:
    progress = api.pull(image, stream=True, decode=True)
    first: dict[str, Any] = next(progress)
    return str(first["status"])  # the rest of the stream is never read


def pull(api: docker.APIClient, image: str) -> list[str]:
    return [str(event["status"]) for event in api.pull(image, stream=True, decode=True)]
