from __future__ import annotations

import pytest
import service_fixed as service


def test_count_rows(engine):
    assert service.count_rows(engine) > 0


def test_settings(pg_pool):
    settings = service.Settings(pg_pool)
    assert settings.get("server_encoding") == "UTF8"


def test_first_message(r):
    message = service.first_message(r, "news")
    assert message["type"] == "subscribe"


@pytest.mark.asyncio
async def test_server_version(apg_pool):
    assert (await service.server_version(apg_pool))[0].isdigit()
