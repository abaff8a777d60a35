"""Tests under the autouse conftest: checked without --leak-check."""

from __future__ import annotations

import pytest
import requests

from pytest_connleak import ConnectionLeakError, LeakCheck


def test_clean(url: str) -> None:
    with requests.get(url + "/items", stream=True) as response:
        assert response.json() == [1, 2, 3]


def test_leaky(url: str) -> None:
    response = requests.get(url + "/items", stream=True)
    assert response.status_code == 200  # errors at teardown: the connection is still leased


# --8<-- [start:allow_leaks]
@pytest.mark.allow_leaks(reason="vendored SDK keeps its stream open; ticket OPS-1234")
def test_known_leak(url: str) -> None:
    response = requests.get(url + "/items", stream=True)
    assert response.status_code == 200
    # --8<-- [end:allow_leaks]


# --8<-- [start:mid_test]
def test_check_in_the_middle(url: str, leak_check: LeakCheck) -> None:
    response = requests.get(url + "/items", stream=True)
    (lease,) = leak_check.leased()  # what this test holds right now
    assert lease.origin == url
    with pytest.raises(ConnectionLeakError):
        leak_check.assert_no_leaks()
    response.close()
    leak_check.assert_no_leaks()  # nothing held any more
    # --8<-- [end:mid_test]
