"""Run published test suites with and without pytest-connleak and list what changes.

The plugin promises to change nothing but the verdict on tests that really leak. This
script checks that promise on real suites: the test suites of httpx and urllib3, at pinned
versions, taken from their source distributions on PyPI (never copied into this
repository). Each suite runs twice in a virtual environment of its own, once with
``-p no:connleak`` and once with ``--leak-check``; every test whose outcome differs for
any reason other than a ``ConnectionLeakError`` at teardown is listed, re-run alone in
both modes to tell a real difference from a flaky test, and written to a Markdown report.

It is slow (minutes) and needs PyPI, so it is not part of the test suite or CI::

    python scripts/real_suites.py                        # both suites
    python scripts/real_suites.py --suite httpx --report /tmp/report.md

Exit status: 0 when no difference reproduces, 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Suite:
    """A published test suite: the package, its pinned version, how to run its tests."""

    name: str
    version: str
    tests: tuple[str, ...]
    deps: tuple[str, ...]

    @property
    def folder(self) -> str:
        return f"{self.name}-{self.version}"


SUITES = {
    "httpx": Suite(
        "httpx",
        "0.28.1",
        ("tests",),
        # httpx's requirements.txt is not in its sdist: its test dependencies, by hand.
        (
            "httpx[brotli,zstd,http2,socks,cli]==0.28.1",
            "httpcore==1.0.9",
            "trustme",
            "uvicorn",
            "trio",
            "chardet",
            "anyio[trio]",
        ),
    ),
    "urllib3": Suite(
        "urllib3",
        "2.8.0",
        # Emscripten tests need a browser or node with pyodide.
        ("test", "--ignore=test/contrib/emscripten"),
        # urllib3's [dependency-groups] test group, and its dev group's TLS packages.
        (
            "urllib3==2.8.0",
            "anyio[trio]",
            "h2",
            "hypercorn",
            "pysocks",
            "pytest-socket",
            "quart",
            "quart-trio",
            "trio",
            "cryptography",
            "idna",
            "pyopenssl",
            "trustme",
        ),
    ),
}

#: The same in both runs: a hang fails its test (and shows as a difference) instead of
#: stopping the run; nothing is cached between runs.
COMMON_ARGS = (
    "-p",
    "no:cacheprovider",
    "--timeout=120",
    "-q",
    "-o",
    "console_output_style=classic",
)
MODES = {"off": ("-p", "no:connleak"), "on": ("--leak-check",)}
#: pytest, ended with os._exit() once it has returned: urllib3's suite leaves a
#: non-daemon thread behind (with or without the plugin), and the interpreter would wait
#: for it forever.
PYTEST = (
    "-c",
    "import os, sys, pytest; code = pytest.main(); sys.stdout.flush(); sys.stderr.flush(); "
    "os._exit(int(code))",
)
LEAK = "ConnectionLeakError"


# -- environment ---------------------------------------------------------------------------


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, text=True, check=True, **kwargs)  # type: ignore[call-overload]


def venv_python(work: Path, suites: list[Suite]) -> Path:
    """A virtual environment with this plugin (editable), the suites' pins and test deps."""
    venv = work / "venv"
    python = venv / "bin" / "python"
    deps = sorted({"pytest", "pytest-timeout", *(d for s in suites for d in s.deps)})
    stamp = hashlib.sha256("\n".join(deps).encode()).hexdigest()[:16]
    marker = venv / f".installed-{stamp}"
    if not python.exists():
        run([sys.executable, "-m", "venv", str(venv)])
    if not marker.exists():
        run([str(python), "-m", "pip", "install", "-q", "-e", str(REPO), *deps])
        marker.touch()
    return python


def source(work: Path, python: Path, suite: Suite) -> Path:
    """The suite's sdist from PyPI, unpacked (once) under *work*."""
    folder = work / "src" / suite.folder
    if folder.exists():
        return folder
    sdists = work / "sdists"
    run(
        [str(python), "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:"]
        + [f"{suite.name}=={suite.version}", "-d", str(sdists)]
    )
    archive = sdists / f"{suite.folder}.tar.gz"
    with tarfile.open(archive) as tar:
        tar.extractall(work / "src", filter="data")
    return folder


# -- outcomes ------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What happened to one test: the call's outcome and any error at teardown."""

    call: str = "passed"  # passed, failed, skipped, xfailed, error (at setup)
    message: str = ""
    teardown: str = ""  # the first line of a teardown error's message

    @property
    def leaked(self) -> bool:
        return LEAK in self.teardown


def parse_junit(path: Path) -> dict[str, Outcome]:
    outcomes: dict[str, Outcome] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        key = f"{case.get('classname', '')}::{case.get('name', '')}"
        # A test that fails and then errors at teardown is written as two testcases.
        outcome = outcomes.get(key) or Outcome()
        for child in case:
            message = (child.get("message") or "").strip().splitlines()
            first = message[0] if message else ""
            if child.tag == "error" and first.startswith("failed on teardown"):
                outcome.teardown = first
            elif child.tag == "error":
                outcome.call, outcome.message = "error", first
            elif child.tag == "failure":
                outcome.call, outcome.message = "failed", first
            elif child.tag == "skipped":
                xfail = child.get("type") == "pytest.xfail"
                outcome.call, outcome.message = ("xfailed" if xfail else "skipped"), first
        outcomes[key] = outcome
    return outcomes


@dataclass
class Run:
    mode: str
    outcomes: dict[str, Outcome]
    seconds: float
    summary: str


def run_suite(python: Path, folder: Path, suite: Suite, mode: str, out: Path) -> Run:
    junit = out / f"{suite.name}-{mode}.xml"
    log = out / f"{suite.name}-{mode}.log"
    cmd = [str(python), *PYTEST, *COMMON_ARGS, *MODES[mode], f"--junitxml={junit}"]
    cmd += suite.tests
    print("+", " ".join(cmd), f"> {log}", flush=True)
    start = time.monotonic()
    with log.open("w") as stream:
        subprocess.run(cmd, cwd=folder, stdout=stream, stderr=subprocess.STDOUT, timeout=3600)
    seconds = time.monotonic() - start
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    return Run(mode, parse_junit(junit), seconds, lines[-1].strip("= ") if lines else "")


@dataclass
class Difference:
    test: str
    off: Outcome
    on: Outcome
    confirmed: list[str] = field(default_factory=list)  # re-run results, "off -> on"
    reproduced: bool = False
    verdict: str = ""

    def describe(self, outcome: Outcome) -> str:
        text = outcome.call
        if outcome.message:
            text += f" ({outcome.message[:160]})"
        if outcome.teardown:
            text += f" + teardown error ({outcome.teardown[:160]})"
        return text


def differences(off: Run, on: Run) -> tuple[list[Difference], list[str]]:
    """Tests whose outcome differs, and the tests that only leaked (the plugin's job)."""
    diffs: list[Difference] = []
    leaks: list[str] = []
    for test in sorted(off.outcomes.keys() | on.outcomes.keys()):
        a, b = off.outcomes.get(test), on.outcomes.get(test)
        if a is None or b is None:
            diffs.append(Difference(test, a or Outcome("missing"), b or Outcome("missing")))
            continue
        if not differs(a, b):
            if b.leaked and not a.teardown:
                leaks.append(test)
            continue
        diffs.append(Difference(test, a, b))
    return diffs, leaks


def node_id(suite: Suite, test: str) -> str:
    """``tests.client.test_auth::test_x[p]`` (junit) -> ``tests/client/test_auth.py::test_x[p]``."""
    classname, name = test.split("::", 1)
    parts = classname.split(".")
    # The module is the longest prefix of the class name that is a file in the suite.
    for i in range(len(parts), 0, -1):
        path = "/".join(parts[:i]) + ".py"
        if (REPO_SRC[suite.name] / path).exists():
            return "::".join([path, *parts[i:], name])
    return test


REPO_SRC: dict[str, Path] = {}


def differs(off: Outcome, on: Outcome) -> bool:
    """True when *on* differs from *off* for another reason than a leak at teardown."""
    if off.call == on.call and off.teardown == on.teardown:
        return False
    return not (off.call == on.call and not off.teardown and on.leaked)


def _short(outcome: Outcome) -> str:
    if not outcome.teardown:
        return outcome.call
    return outcome.call + (" + leak" if outcome.leaked else " + teardown error")


def _rerun(python: Path, folder: Path, target: str, test: str) -> dict[str, Outcome]:
    """Run *target* (a test, or its whole file) in both modes; *test*'s outcomes."""
    outcomes = {}
    for mode in MODES:
        junit = folder / f".confirm-{mode}.xml"
        cmd = [str(python), *PYTEST, *COMMON_ARGS, *MODES[mode], f"--junitxml={junit}", target]
        subprocess.run(
            cmd, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900
        )
        got = parse_junit(junit) if junit.exists() else {}
        outcomes[mode] = got.get(test, Outcome("missing"))
        junit.unlink(missing_ok=True)
    return outcomes


def confirm(python: Path, folder: Path, suite: Suite, diff: Difference, times: int) -> None:
    """Re-run a differing test alone, *times* in each mode, then with its whole file.

    A test whose outcome varies between its runs alone in the same mode is flaky, not
    changed by the plugin. A difference that does not come back alone may depend on an earlier test
    (something it left behind, collected later): running the file shows that.
    """
    test = node_id(suite, diff.test)
    offs: list[str] = []
    ons: list[str] = []
    for _ in range(times):
        seen = _rerun(python, folder, test, diff.test)
        diff.confirmed.append(f"alone: {_short(seen['off'])} -> {_short(seen['on'])}")
        offs.append(_short(seen["off"]))
        ons.append(_short(seen["on"]))
    calls_off = {o.replace(" + leak", "") for o in offs}
    calls_on = {o.replace(" + leak", "") for o in ons}
    if len(calls_off) > 1 or len(calls_on) > 1:
        diff.verdict = "flaky: its outcome varies from run to run in the same mode"
        return
    if calls_off != calls_on:
        diff.verdict = "reproduces"
        diff.reproduced = True
        return
    seen = _rerun(python, folder, test.split("::", 1)[0], diff.test)
    diff.confirmed.append(f"with its file: {_short(seen['off'])} -> {_short(seen['on'])}")
    diff.reproduced = differs(seen["off"], seen["on"])
    diff.verdict = (
        "reproduces with its file (an earlier test's leftovers)"
        if diff.reproduced
        else "does not reproduce"
    )


def reproduces(diff: Difference) -> bool:
    return diff.reproduced


# -- report --------------------------------------------------------------------------------


def report(results: list[tuple[Suite, Run, Run, list[Difference], list[str]]]) -> str:
    out = ["# Real suites with and without pytest-connleak", ""]
    out.append(
        f"Python {sys.version.split()[0]}; plugin from {REPO.name} at "
        + subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    )
    out.append("")
    out.append("| suite | tests | off: outcome | on: outcome | leaks | differences | reproduce |")
    out.append("| --- | --- | --- | --- | --- | --- | --- |")
    for suite, off, on, diffs, leaks in results:
        repro = sum(reproduces(d) for d in diffs)
        out.append(
            f"| {suite.folder} | {len(off.outcomes)} | {off.summary} ({off.seconds:.0f} s) "
            f"| {on.summary} ({on.seconds:.0f} s) | {len(leaks)} | {len(diffs)} | {repro} |"
        )
    for suite, _off, _on, diffs, leaks in results:
        out += ["", f"## {suite.folder}", ""]
        out.append(f"Leaks reported at teardown (outcome otherwise unchanged): {len(leaks)}")
        out += [f"- `{test}`" for test in leaks]
        out += ["", f"Differences: {len(diffs)}"]
        for diff in diffs:
            out.append(f"- `{diff.test}`")
            out.append(f"  - off: {diff.describe(diff.off)}")
            out.append(f"  - on: {diff.describe(diff.on)}")
            if diff.confirmed:
                out.append(f"  - re-run (off -> on): {'; '.join(diff.confirmed)}: {diff.verdict}")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", choices=sorted(SUITES), action="append")
    parser.add_argument("--work", type=Path, default=Path("/tmp/connleak-real-suites"))
    parser.add_argument("--report", type=Path, help="write the Markdown report here too")
    parser.add_argument("--confirm", type=int, default=2, help="re-runs of each difference")
    args = parser.parse_args(argv)
    suites = [SUITES[name] for name in (args.suite or sorted(SUITES))]
    args.work.mkdir(parents=True, exist_ok=True)
    python = venv_python(args.work, suites)
    results = []
    for suite in suites:
        folder = source(args.work, python, suite)
        REPO_SRC[suite.name] = folder
        runs = {mode: run_suite(python, folder, suite, mode, args.work) for mode in MODES}
        diffs, leaks = differences(runs["off"], runs["on"])
        for diff in diffs:
            confirm(python, folder, suite, diff, args.confirm)
        results.append((suite, runs["off"], runs["on"], diffs, leaks))
    text = report(results)
    print(text)
    if args.report:
        args.report.write_text(text)
    return 1 if any(reproduces(d) for r in results for d in r[3]) else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
