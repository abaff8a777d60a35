"""The reference pages name everything the plugin offers, read from pytest itself.

When a feature adds an option, an ini value, a fixture, a marker or a public name, this
test fails until docs/reference/ documents it. The README's leak report is checked against
a real run, so it cannot drift either.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import pytest_connleak

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference"


# A placeholder for a feature still on its way names it without documenting it.
PLACEHOLDER = re.compile(r'^!!! \w+ "Coming with[^\n]*\n(?:(?: {4}.*)?\n)*', re.M)


def reference_text() -> str:
    text = "\n".join(p.read_text() for p in sorted(REFERENCE.glob("*.md")))
    return PLACEHOLDER.sub("", text)


def test_placeholders_do_not_count() -> None:
    page = (
        "## `--leak-check`\n\nText.\n\n"
        '!!! note "Coming with issue 9 (to be filled in by the lead when it lands)"\n'
        "    `--leak-check-future` is being built.\n\n"
        "    More.\n\nAfter.\n"
    )
    assert PLACEHOLDER.sub("", page) == "## `--leak-check`\n\nText.\n\nAfter.\n"
    assert '!!! note "Coming with' not in reference_text()


def undocumented(names: set[str]) -> list[str]:
    text = reference_text()
    return sorted(
        name for name in names if not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text)
    )


def surface(pytester: pytest.Pytester, *args: str) -> dict[str, set[str]]:
    """Options, ini names and markers registered in a run with *args*."""
    config = pytester.parseconfigure(*args)
    parser = config._parser
    groups = [parser._anonymous, *parser._groups]
    return {
        "options": {
            name for group in groups for option in group.options for name in option.names()
        },
        "ini": set(parser._inidict),
        "markers": {
            re.split(r"[(:]", line, maxsplit=1)[0].strip() for line in config.getini("markers")
        },
    }


def plugin_surface(pytester: pytest.Pytester) -> dict[str, set[str]]:
    """What the plugin adds: a run with it, minus a run without it."""
    with_plugin = surface(pytester)
    without = surface(pytester, "-p", "no:connleak")
    return {kind: with_plugin[kind] - without[kind] for kind in with_plugin}


def test_the_plugin_surface_is_seen(pytester: pytest.Pytester) -> None:
    # Guards the test below against reading nothing.
    found = plugin_surface(pytester)
    assert {"--leak-check", "--no-leak-check"} <= found["options"]
    assert "leak_check" in found["ini"]
    assert "allow_leaks" in found["markers"]


@pytest.mark.parametrize("kind", ["options", "ini", "markers"])
def test_reference_documents_every_option_ini_and_marker(
    pytester: pytest.Pytester, kind: str
) -> None:
    missing = undocumented(plugin_surface(pytester)[kind])
    assert not missing, f"document these {kind} in docs/reference/: {missing}"


def test_reference_documents_every_fixture(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--fixtures")
    fixtures = {
        m.group(1)
        for m in re.finditer(r"^(\w+)(?: \[[\w ]+\])? -- (\S+)", result.stdout.str(), re.M)
        if "pytest_connleak" in m.group(2)
    }
    assert "leak_check" in fixtures
    missing = undocumented(fixtures)
    assert not missing, f"document these fixtures in docs/reference/fixtures.md: {missing}"


def test_reference_documents_every_public_name() -> None:
    missing = undocumented(set(pytest_connleak.__all__))
    assert not missing, f"document these public names in docs/reference/api.md: {missing}"


def test_readme_shows_the_report_a_user_sees() -> None:
    """The README's leak report is the one pytest prints for the incident example."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "--color=no",
            "--leak-check",
            "test_service.py::test_expired_session_is_rejected",
        ],
        cwd=ROOT / "examples" / "incident",
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    report = [
        line
        for line in result.stdout.splitlines()
        if line.startswith("E ") or line.endswith(": ConnectionLeakError")
    ]
    assert len(report) == 4, result.stdout

    def normalise(line: str) -> str:
        return re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", line)

    readme = {normalise(line) for line in (ROOT / "README.md").read_text().splitlines()}
    for line in report:
        assert normalise(line) in readme, f"README.md lacks the line pytest prints:\n{line}"
