"""The same three requests, with the connection given back. These pass under --leak-check."""

from __future__ import annotations

import pytest
import requests


# --8<-- [start:status_only]
def test_status_only(url: str) -> None:
    with requests.Session() as session, session.get(url + "/forbidden", stream=True) as response:
        assert response.status_code == 403
    # --8<-- [end:status_only]


# --8<-- [start:raise_for_status]
def test_raise_for_status(url: str) -> None:
    with requests.Session() as session:
        response = session.get(url + "/forbidden", stream=True)
        try:
            with pytest.raises(requests.HTTPError):
                response.raise_for_status()
        finally:
            response.close()  # whether raise_for_status() raised or not
    # --8<-- [end:raise_for_status]


# --8<-- [start:partial_read]
def test_first_line_only(url: str) -> None:
    with requests.Session() as session:
        response = session.get(url + "/report.csv", stream=True)
        try:
            header = next(response.iter_lines())
        finally:
            response.close()  # gives the connection back without reading the rest
        assert header == b"id,value"
    # --8<-- [end:partial_read]


def test_no_stream(url: str) -> None:
    # Without stream=True requests reads the whole body and releases the connection itself.
    with requests.Session() as session:
        assert session.get(url + "/forbidden").status_code == 403
