from __future__ import annotations

import pytest


def test_leak_is_reported(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        """
        import requests

        def test_leaky(url):
            r = requests.get(url + "/403", stream=True)
            assert r.status_code == 403
        """
    )
    result = base_conftest.runpytest("--leak-check")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "E   ConnectionLeakError: 1 connection leaked by test_leaky (still leased at teardown)",
            "E     http://127.0.0.1:* — leased at test_leak_is_reported.py:4 in test_leaky",
        ]
    )
