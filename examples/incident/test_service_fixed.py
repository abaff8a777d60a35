"""The same tests against the fixed auth check: they pass with --leak-check too."""

from __future__ import annotations

import threading

import requests
from service_fixed import is_session_active


def test_valid_session_is_accepted(
    http: requests.Session, auth_url: str, valid_cookie: str
) -> None:
    assert is_session_active(http, auth_url, valid_cookie)


def test_expired_session_is_rejected(http: requests.Session, auth_url: str) -> None:
    assert not is_session_active(http, auth_url, "expired")


def test_many_checks_fit_in_a_small_pool(http: requests.Session, auth_url: str) -> None:
    # The pool holds two connections and blocks when both are out (pool_block=True), and
    # requests then waits for one forever. Ten checks in a row finish only if every check
    # gives its connection back. They run in a thread so that a regression fails this test
    # after 10 seconds instead of hanging the suite.
    results: list[bool] = []

    def check_ten_times() -> None:
        results.extend(is_session_active(http, auth_url, "expired") for _ in range(10))

    worker = threading.Thread(target=check_ten_times, daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert results == [False] * 10, "the pool ran dry: a check kept its connection"


# --8<-- [start:page]
def test_the_load_balancer_adds_a_page(http: requests.Session, auth_url: str) -> None:
    # The auth service sent no body; what reaches the client is nginx's page.
    with http.get(auth_url, cookies={"session": "expired"}) as response:
        assert response.status_code == 403
        assert "<center>nginx</center>" in response.text
    # --8<-- [end:page]
