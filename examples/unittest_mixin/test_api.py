"""A unittest suite checked for leaked connections, with no pytest: python -m unittest."""

from __future__ import annotations

import logging
import unittest

import requests
from pytest_httpserver import HTTPServer

from pytest_connleak import LeakCheckMixin, no_leaks

server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request


def setUpModule() -> None:
    server.expect_request("/items").respond_with_json([1, 2, 3])
    server.start()


def tearDownModule() -> None:
    server.clear()
    server.stop()


# --8<-- [start:mixin]
class TestItems(LeakCheckMixin, unittest.TestCase):
    def setUp(self) -> None:
        super().setUp()  # first: starts the check, which runs after every cleanup
        self.session = requests.Session()
        self.addCleanup(self.session.close)

    def test_streamed_and_closed(self) -> None:
        with self.session.get(server.url_for("/items"), stream=True) as response:
            self.assertEqual(response.json(), [1, 2, 3])

    def test_streamed_and_dropped(self) -> None:
        response = self.session.get(server.url_for("/items"), stream=True)
        self.assertEqual(response.status_code, 200)  # fails: the connection is still leased

    # --8<-- [end:mixin]


# --8<-- [start:no_leaks]
class TestOneBlock(unittest.TestCase):
    def test_only_this_block_is_checked(self) -> None:
        session = requests.Session()
        self.addCleanup(session.close)
        with no_leaks("the items download"):
            response = session.get(server.url_for("/items"), stream=True)
            self.assertEqual(response.json(), [1, 2, 3])  # the body read: released

    # --8<-- [end:no_leaks]


if __name__ == "__main__":
    unittest.main()
