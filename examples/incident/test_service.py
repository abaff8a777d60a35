"""Tests of the auth check as it shipped. They pass, unless you run them with --leak-check."""

from __future__ import annotations

import requests
from service import is_session_active


def test_valid_session_is_accepted(
    http: requests.Session, auth_url: str, valid_cookie: str
) -> None:
    assert is_session_active(http, auth_url, valid_cookie)


def test_expired_session_is_rejected(http: requests.Session, auth_url: str) -> None:
    assert not is_session_active(http, auth_url, "expired")
