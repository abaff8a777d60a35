"""Three ways urllib3 users leak a connection. Each test errors under --leak-check."""

from __future__ import annotations

import urllib3


# --8<-- [start:preload_false]
def test_status_only(url: str) -> None:
    pool = urllib3.PoolManager()
    response = pool.request("GET", url + "/forbidden", preload_content=False)
    assert response.status == 403  # the body is never read, the connection never released
    # --8<-- [end:preload_false]


# --8<-- [start:close_not_release]
def test_close_is_not_release(url: str) -> None:
    pool = urllib3.PoolManager()
    response = pool.request("GET", url + "/big", preload_content=False)
    assert response.read(10) == b"x" * 10
    response.close()  # closes the socket, but the pool never gets its slot back
    # --8<-- [end:close_not_release]


# --8<-- [start:with_unread]
def test_with_unread_body(url: str) -> None:
    pool = urllib3.PoolManager()
    # `with` calls close(), not release_conn(): the same trap as above.
    with pool.request("GET", url + "/big", preload_content=False) as response:
        assert response.status == 200
    # --8<-- [end:with_unread]
