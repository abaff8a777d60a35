"""The auth check, fixed: the response is closed, so its connection goes back to the pool."""

from __future__ import annotations

import requests


def is_session_active(http: requests.Session, auth_url: str, cookie: str) -> bool:
    """True when the auth service accepts *cookie* (200), False when it refuses it."""
    with http.get(auth_url, cookies={"session": cookie}, stream=True, timeout=5) as response:
        return response.status_code == 200
