"""Every folder in examples/ runs, with the outcomes its README promises; so does the demo.

Each example is a project of its own (its own pytest.ini and conftest.py), so it is run
the way a reader runs it: ``python -m pytest`` in a copy of its folder, in a subprocess.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@dataclass(frozen=True)
class Expected:
    """How one example must end: which tests error with a leak, and where they leased it."""

    args: tuple[str, ...]
    leaking: dict[str, str]  # test node id -> "file.py:function" that leased the connection
    passing: int  # tests that pass with no leak


EXPECTED = {
    "incident": [
        # As the team ran it: green, the leak hidden.
        Expected((), {}, 6),
        Expected(
            ("--leak-check",),
            {
                "test_service.py::test_valid_session_is_accepted": "service.py:is_session_active",
                "test_service.py::test_expired_session_is_rejected": (
                    "service.py:is_session_active"
                ),
            },
            4,
        ),
    ],
    "requests_session": [
        # leak_check = true in its pytest.ini: no flag needed.
        Expected(
            (),
            {
                f"test_leaks.py::{name}": f"test_leaks.py:{name}"
                for name in ("test_status_only", "test_raise_for_status", "test_first_line_only")
            },
            16,
        ),
    ],
    "urllib3_pool": [
        Expected((), {}, 7),
        Expected(
            ("--leak-check",),
            {
                f"test_leaks.py::{name}": f"test_leaks.py:{name}"
                for name in (
                    "test_status_only",
                    "test_close_is_not_release",
                    "test_with_unread_body",
                )
            },
            4,
        ),
    ],
    "httpx_client": [
        Expected((), {}, 8),
        Expected(
            ("--leak-check",),
            {
                "test_service.py::test_sync": "service.py:fetch_status",
                "test_service.py::test_asyncio": "service.py:afetch_status",
                "test_service.py::test_trio": "service.py:afetch_status",
            },
            5,
        ),
    ],
    "aiohttp_client": [
        Expected((), {}, 6),
        # aiohttp released the empty 403 by itself; the 1 MiB error body stays leased.
        Expected(
            ("--leak-check",),
            {"test_service.py::test_refused_with_a_large_body": "service.py:fetch_profile"},
            5,
        ),
    ],
    # A service run as its own process with track(): its test checks the alarm in the log,
    # /metrics and `connleak watch` (nothing there runs under --leak-check).
    "production_service": [Expected((), {}, 1)],
    # SDKs: each report names the user's line, not the SDK's.
    "sdk_boto3": [
        # Body.close() and `with` pass: a known SDK behaviour, listed in the summary.
        Expected(
            ("--leak-check",), {"test_service.py::test_report_size": "service.py:report_size"}, 5
        ),
    ],
    "sdk_openai": [
        # The stream dropped after its first chunk is freed by CPython and closed by the SDK.
        Expected(("--leak-check",), {"test_service.py::test_ask": "service.py:ask"}, 5),
    ],
    "sdk_docker": [
        Expected(
            ("--leak-check",),
            {"test_service.py::test_pull_started": "service.py:pull_started"},
            3,
        ),
    ],
    "conftest_autouse": [
        # The autouse fixture checks without a flag; allow_leaks exempts test_known_leak.
        Expected((), {"test_checked.py::test_leaky": "test_checked.py:test_leaky"}, 3),
    ],
}


# Examples whose SDK is not installable everywhere: skipped where it is missing.
NEEDS = {"sdk_openai": "openai"}

# Run with ``python -m unittest`` (LeakCheckMixin and no_leaks() need no pytest); checked by
# test_unittest_example below.
UNITTEST_EXAMPLES = ("unittest_mixin",)

# Pools of PostgreSQL and Redis (their own servers); checked by test_databases_example.
DB_EXAMPLES = ("databases",)


def example_dirs() -> list[str]:
    return sorted(
        p.name for p in EXAMPLES.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))
    )


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def request_line(path: Path, function: str) -> int:
    """The line of *function* in *path* that sends the request (the lease site)."""
    lines = path.read_text().splitlines()
    start = next(
        i for i, line in enumerate(lines) if re.match(rf"\s*(async )?def {function}\(", line)
    )
    for i in range(start + 1, len(lines)):
        if re.search(r"\.(get|request|urlopen|send|stream|get_object|create|pull)\(", lines[i]):
            return i + 1
    raise AssertionError(f"no request in {path.name}:{function}")


def test_every_example_is_run() -> None:
    assert example_dirs() == sorted([*EXPECTED, *UNITTEST_EXAMPLES, *DB_EXAMPLES]), (
        "each folder in examples/ needs an entry in EXPECTED saying how its tests end"
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [(name, exp) for name, runs in EXPECTED.items() for exp in runs],
    ids=[
        f"{name}{''.join(exp.args) or '-plain'}" for name, runs in EXPECTED.items() for exp in runs
    ],
)
def test_example(tmp_path: Path, name: str, expected: Expected) -> None:
    needed = NEEDS.get(name)
    if needed is not None and importlib.util.find_spec(needed) is None:
        pytest.skip(f"{needed} is not installed (the openai SDK needs Python 3.11+)")
    project = tmp_path / name
    shutil.copytree(
        EXAMPLES / name, project, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache")
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-rA",
            "--color=no",
            *expected.args,
        ],
        cwd=project,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = result.stdout
    errors = set(re.findall(r"^ERROR (\S+) - ConnectionLeakError", out, re.M))
    failed = set(re.findall(r"^(?:FAILED|ERROR) (\S+)", out, re.M)) - errors
    passed = set(re.findall(r"^PASSED (\S+)", out, re.M)) - errors

    assert not failed, out
    assert errors == set(expected.leaking), out
    assert len(passed) == expected.passing, out
    assert result.returncode == (1 if expected.leaking else 0), out + result.stderr
    for nodeid, where in expected.leaking.items():
        test = nodeid.split("::")[1]
        filename, function = where.split(":")
        lineno = request_line(project / filename, function)
        headline = (
            f"E   ConnectionLeakError: 1 connection leaked by {test} (still leased at teardown)"
        )
        site = f" — leased at {filename}:{lineno} in {function}"
        assert re.search(
            rf"^{re.escape(headline)}\nE     http://127\.0\.0\.1:\d+{re.escape(site)}$",
            out,
            re.M,
        ), out


def test_unittest_example(tmp_path: Path) -> None:
    project = tmp_path / "unittest_mixin"
    shutil.copytree(
        EXAMPLES / "unittest_mixin",
        project,
        ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"),
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-m", "unittest", "-v"],
        cwd=project,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = result.stderr  # unittest reports on stderr
    assert result.returncode == 1, out
    # Python 3.10 names the class alone: "(test_api.TestItems)"; 3.11 adds the method.
    assert re.findall(r"^(\w+) \(test_api\.\w+(?:\.\w+)?\) \.\.\. (\w+)$", out, re.M) == [
        ("test_streamed_and_closed", "ok"),
        ("test_streamed_and_dropped", "FAIL"),
        ("test_only_this_block_is_checked", "ok"),
    ], out
    lineno = request_line(project / "test_api.py", "test_streamed_and_dropped")
    assert (
        "pytest_connleak.ConnectionLeakError: 1 connection leaked by test_streamed_and_dropped "
        "(still leased at its end)\n"
        f"  http://127.0.0.1:{{port}} — leased at test_api.py:{lineno} in test_streamed_and_dropped"
    ) in re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:{port}", out), out
    assert out.rstrip().endswith("FAILED (failures=1)"), out


def test_demo_exits_0_and_tells_the_story() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py")],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Both tests pass: nothing in plain pytest notices the leak." in out
    assert "E   ConnectionLeakError: 1 connection leaked by test_expired_session_is_rejected" in out
    lineno = request_line(EXAMPLES / "incident" / "service.py", "is_session_active")
    assert f"— leased at service.py:{lineno} in is_session_active" in out
    assert "4 passed" in out
    assert out.rstrip().endswith("the fix passed.")


DB_LEAKS = {
    # test -> (function, the text of the line that takes the connection, the pool)
    "test_count_rows": ("count_rows", "engine.connect()", "postgresql"),
    "test_settings": ("__init__", "pool.getconn()", "postgresql"),
    "test_first_message": ("first_message", "pubsub.subscribe(", "redis"),
    "test_server_version": ("server_version", "pool.acquire()", "postgresql"),
}


@pytest.mark.parametrize("args", [(), ("--leak-check",)], ids=["plain", "leak-check"])
def test_databases_example(tmp_path: Path, args: tuple[str, ...]) -> None:
    """One leak per pool library against real servers; passwords never shown."""
    project = tmp_path / "databases"
    shutil.copytree(
        EXAMPLES / "databases",
        project,
        ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"),
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "--color=no", *args],
        cwd=project,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = result.stdout
    errors = set(re.findall(r"^ERROR test_service.py::(\S+) - ConnectionLeakError", out, re.M))
    passed = set(re.findall(r"^PASSED (\S+)", out, re.M))
    assert errors == (set(DB_LEAKS) if args else set()), out
    assert len(passed) == 8, out
    assert result.returncode == (1 if args else 0), out + result.stderr
    assert "s3cret" not in out + result.stderr
    lines = (project / "service.py").read_text().splitlines()
    for test, (function, call, scheme) in DB_LEAKS.items() if args else ():
        lineno = next(i + 1 for i, line in enumerate(lines) if call in line)
        origin = (
            r"postgresql://postgres@127\.0\.0\.1:\d+/postgres"
            if scheme == "postgresql"
            else r"redis://127\.0\.0\.1:\d+/0"
        )
        headline = (
            f"E   ConnectionLeakError: 1 connection leaked by {test} (still leased at teardown)"
        )
        site = f" — leased at service.py:{lineno} in {function}"
        assert re.search(rf"^{re.escape(headline)}\nE     {origin}{re.escape(site)}$", out, re.M), (
            out
        )
