"""The README's table of tested versions is what the version matrix (noxfile.py) ran.

The matrix itself runs under ``nox`` (and in ``.ci/run``); these tests check the parts
that turn its records into the README's table and that refuse a README that disagrees.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def noxfile() -> ModuleType:
    path = os.environ.get("PATH", "")
    spec = importlib.util.spec_from_file_location("connleak_noxfile", ROOT / "noxfile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    finally:
        os.environ["PATH"] = path  # it puts pyenv's interpreters on PATH for nox
    return module


def records(noxfile: ModuleType, **newer: str) -> list[dict[str, Any]]:
    """One record per cell; the lowest cells at ``1.0.0``, the newest at ``2.3.4``.

    As a cell records them: only what installs on its Python (httpx2 from 3.11 on).
    """
    out = []
    for python in noxfile.PYTHONS:
        for resolution in noxfile.RESOLUTIONS:
            low = resolution == "lowest"
            versions = {
                d: "1.0.0" if low else newer.get(d, "2.3.4") for d in noxfile.tracked_dists(python)
            }
            out.append(
                {"cell": f"{python}-{resolution}", "python": f"{python}.1", "versions": versions}
            )
    return out


def test_every_cell_runs_every_clients_verdict_tests(noxfile: ModuleType) -> None:
    tests = noxfile.cell_tests(full_suite=False)
    for client in noxfile.CLIENTS.values():
        assert set(client.tests) <= set(tests)
        assert client.dists
    for path in tests:
        assert (ROOT / path).is_file(), path
    assert len(tests) == len(set(tests))  # httpx and httpx2 share tests/test_httpx.py


def test_the_newest_cell_runs_the_whole_suite(noxfile: ModuleType) -> None:
    assert noxfile.NEWEST_CELL == (noxfile.PYTHONS[-1], "newest") == ("3.13", "newest")
    assert noxfile.cell_tests(full_suite=True) == ["tests"]
    assert noxfile.cell_tests(full_suite=False, python="3.13") != ["tests"]


def test_a_client_since_a_python_is_left_out_of_the_cells_below(noxfile: ModuleType) -> None:
    assert noxfile.CLIENTS["httpx2"].since == "3.11"
    assert noxfile.since("httpcore2") == "3.11"
    assert noxfile.since("httpx") is None
    assert "httpx2" not in noxfile.tracked_dists("3.10")
    assert {"httpx2", "httpcore2"} <= set(noxfile.tracked_dists("3.11"))
    assert noxfile.tracked_dists() == noxfile.tracked_dists("3.13")
    # Another client, since 3.12 with tests of its own: run from 3.12 on only.
    clients = dict(noxfile.CLIENTS)
    noxfile.CLIENTS["later"] = noxfile.Client(("tests/test_later.py",), ("later",), "3.12")
    try:
        assert "tests/test_later.py" not in noxfile.cell_tests(False, "3.11")
        assert "tests/test_later.py" in noxfile.cell_tests(False, "3.12")
        assert "tests/test_later.py" in noxfile.cell_tests(False, "3.13")
    finally:
        noxfile.CLIENTS.clear()
        noxfile.CLIENTS.update(clients)


def test_every_client_and_tool_has_a_floor_in_pyproject(noxfile: ModuleType) -> None:
    """The lowest cells resolve to pyproject's floors (what a client's library needs in turn,
    such as httpx's httpcore, follows it), so each client and tool must declare one."""
    try:
        import tomllib
    except ImportError:  # Python 3.10; pytest itself needs tomli there
        import tomli as tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["dev"]
    for dist in [*noxfile.CLIENTS, *noxfile.TOOL_DISTS]:
        floors = [r for r in requirements if r.lower().startswith(f"{dist}>=")]
        assert floors, f"{dist} has no >= floor in pyproject.toml"


def test_table_from_the_records(noxfile: ModuleType) -> None:
    table = noxfile.render_table(records(noxfile, httpx="0.28.1"))
    lines = table.splitlines()
    assert lines[0] == noxfile.TABLE_START
    assert lines[-1] == noxfile.TABLE_END
    assert lines[1:4] == [
        "| package | oldest tested | newest tested |",
        "| --- | --- | --- |",
        "| Python | 3.10.1 | 3.13.1 |",
    ]
    assert "| urllib3 | 1.0.0 | 2.x |" in lines
    assert "| httpx | 1.0.0 | 0.28 |" in lines  # before 1.0, a minor release is a series
    assert "| httpx2 | 1.0.0 (Python 3.11+) | 2.x |" in lines
    assert len(lines) == 5 + len(noxfile.tracked_dists())


def test_a_floor_that_differs_by_python_is_shown(noxfile: ModuleType) -> None:
    cells = records(noxfile)
    for cell in cells:
        if cell["cell"] in ("3.12-lowest", "3.13-lowest"):
            cell["versions"]["aiohttp"] = "1.2.0" if "3.12" in cell["cell"] else "1.3.0"
    table = noxfile.render_table(cells)
    assert "| aiohttp | 1.0.0 (Python 3.12: 1.2.0, Python 3.13: 1.3.0) | 2.x |" in table


def test_a_cell_that_has_not_passed_is_an_error(noxfile: ModuleType, tmp_path: Path) -> None:
    for record in records(noxfile):
        if record["cell"] != "3.12-lowest":
            (tmp_path / f"{record['cell']}.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"^no passing run recorded for the cells 3\.12-lowest$"):
        noxfile.load_results(tmp_path)
    (tmp_path / "3.12-lowest.json").write_text(json.dumps(records(noxfile)[4]))
    assert [r["cell"] for r in noxfile.load_results(tmp_path)][4] == "3.12-lowest"


def test_a_dist_missing_from_a_cell_is_an_error(noxfile: ModuleType) -> None:
    cells = records(noxfile)
    cells[0]["versions"]["aiohttp"] = None
    with pytest.raises(ValueError, match="^aiohttp was not installed in every cell$"):
        noxfile.render_table(cells)


def test_a_dist_since_a_python_is_required_from_there_on(noxfile: ModuleType) -> None:
    cells = records(noxfile)
    assert "httpx2" not in cells[0]["versions"]  # 3.10: not installed, not required
    cells[3]["versions"]["httpx2"] = None  # 3.11-newest
    with pytest.raises(
        ValueError, match=r"^httpx2 was not installed in every cell from Python 3\.11 on$"
    ):
        noxfile.render_table(cells)


def test_readme_has_the_table_of_every_tracked_distribution(noxfile: ModuleType) -> None:
    table = noxfile.readme_table((ROOT / "README.md").read_text(encoding="utf-8"))
    rows = [line.split(" | ")[0].removeprefix("| ") for line in table.splitlines()[3:-1]]
    assert rows == ["Python", *noxfile.tracked_dists()]


def test_floor_claims_in_the_clients_table(noxfile: ModuleType) -> None:
    cells = records(noxfile)
    for cell in cells:
        if cell["cell"].endswith("-lowest"):
            cell["versions"].update(urllib3="1.26.5", aiohttp="3.8.0")
    text = "| urllib3 1.26 and 2.x | tracked |\n| aiohttp 3.8+ | tracked |\n| requests | x |\n"
    assert noxfile.floor_claims(text, cells) == [
        "README.md claims urllib3 1.26; the oldest tested: 1.26.5"
    ]
    assert noxfile.floor_claims(text.replace("1.26 ", "1.26.5 "), cells) == []
