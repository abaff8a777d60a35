"""The same requests, with the connection given back. These pass under --leak-check."""

from __future__ import annotations

import urllib3


# --8<-- [start:preload_false]
def test_status_only(url: str) -> None:
    pool = urllib3.PoolManager()
    response = pool.request("GET", url + "/forbidden", preload_content=False)
    try:
        assert response.status == 403
    finally:
        response.release_conn()  # the connection goes back to the pool
    # --8<-- [end:preload_false]


# --8<-- [start:close_not_release]
def test_close_and_release(url: str) -> None:
    pool = urllib3.PoolManager()
    response = pool.request("GET", url + "/big", preload_content=False)
    try:
        assert response.read(10) == b"x" * 10
    finally:
        response.close()  # drop the unread rest of the body with the socket...
        response.release_conn()  # ...and give the slot back
    # --8<-- [end:close_not_release]


# --8<-- [start:read_to_end]
def test_body_read_to_the_end(url: str) -> None:
    pool = urllib3.PoolManager()
    with pool.request("GET", url + "/big", preload_content=False) as response:
        assert len(response.read()) == 1 << 20  # reaching the end releases the connection
    # --8<-- [end:read_to_end]


def test_default_preload(url: str) -> None:
    # preload_content=True (the default) reads the body and releases the connection.
    assert urllib3.PoolManager().request("GET", url + "/forbidden").status == 403
