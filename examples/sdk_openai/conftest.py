"""The OpenAI SDK (which pools through httpx2) against a local chat-completions server."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from fake_openai import serve


@pytest.fixture(scope="session")
def base_url() -> Iterator[str]:
    with serve() as url:
        yield url


# --8<-- [start:client]
@pytest.fixture(scope="session")
def client(base_url: str) -> Iterator[openai.OpenAI]:
    """One client for the run, as a service keeps one."""
    with openai.OpenAI(base_url=base_url, api_key="test", max_retries=0) as client:
        yield client
        # --8<-- [end:client]
