import pytest
import requests


@pytest.fixture(scope="module")
def report(make_httpserver):
    make_httpserver.expect_request("/report").respond_with_json({"rows": 3})
    return requests.get(make_httpserver.url_for("/report"), stream=True)  # never closed


def test_checked(report, leak_check):
    assert report.status_code == 200


def test_unchecked():
    pass
