"""The auth check as it shipped: it leaks a connection on every call.

The service asks the auth service whether a session cookie is still valid. It only needs
the status code, so someone passed ``stream=True`` to skip downloading the body. That
hands the caller a connection it must give back, and this code never does.
"""

from __future__ import annotations

import requests


def is_session_active(http: requests.Session, auth_url: str, cookie: str) -> bool:
    """True when the auth service accepts *cookie* (200), False when it refuses it."""
    response = http.get(auth_url, cookies={"session": cookie}, stream=True, timeout=5)
    return response.status_code == 200
