"""Three ways requests users leak a connection. Each test errors under --leak-check."""

from __future__ import annotations

import pytest
import requests


# --8<-- [start:status_only]
def test_status_only(url: str) -> None:
    with requests.Session() as session:
        response = session.get(url + "/forbidden", stream=True)
        assert response.status_code == 403  # the body is never read, the response never closed
    # --8<-- [end:status_only]


# --8<-- [start:raise_for_status]
def test_raise_for_status(url: str) -> None:
    with requests.Session() as session, pytest.raises(requests.HTTPError):
        # The response rides on the exception, still holding its connection.
        session.get(url + "/forbidden", stream=True).raise_for_status()
    # --8<-- [end:raise_for_status]


# --8<-- [start:partial_read]
def test_first_line_only(url: str) -> None:
    with requests.Session() as session:
        response = session.get(url + "/report.csv", stream=True)
        header = next(response.iter_lines())  # the rest of the body is never read
        assert header == b"id,value"
    # --8<-- [end:partial_read]
