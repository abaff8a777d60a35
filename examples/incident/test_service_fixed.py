"""The same tests against the fixed auth check: they pass with --leak-check too."""

from __future__ import annotations

import requests
from service_fixed import is_session_active


def test_valid_session_is_accepted(
    http: requests.Session, auth_url: str, valid_cookie: str
) -> None:
    assert is_session_active(http, auth_url, valid_cookie)


def test_expired_session_is_rejected(http: requests.Session, auth_url: str) -> None:
    assert not is_session_active(http, auth_url, "expired")


def test_many_checks_fit_in_a_small_pool(http: requests.Session, auth_url: str) -> None:
    # Two connections, pool_block=True: with the leaking version the third call would
    # wait forever for a connection that never comes back.
    for _ in range(10):
        assert not is_session_active(http, auth_url, "expired")
