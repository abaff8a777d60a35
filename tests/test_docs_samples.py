"""Every code block and output sample in the docs is checked, so that none can drift.

The test walks every Markdown page (README.md, docs/, examples/*/README.md): a page added
later is covered without being listed. Each fenced block is parsed by Sybil with the
parser below and must be one of:

- **included** from a file the suite runs (``--8<-- "examples/..."``, pymdownx.snippets);
- **run**: a block after ``<!-- docs: run DIR -->`` is a console session: each ``$``
  command runs in a copy of DIR (pytest, python, unittest, ``connleak``), the lines under
  it must appear in its output, and a trailing ``# 6 passed, 2 errors`` comment must be
  its outcome;
- **excerpt**: a block after ``<!-- docs: excerpt FILE -->`` quotes FILE (pages read on
  GitHub cannot include): its lines must be lines of FILE, in order;
- **output**: a block after ``<!-- docs: output DIR ARGS -->`` must appear in the output
  of ``pytest ARGS`` run in a copy of DIR (``<!-- docs: junit DIR ARGS -->``: in the JUnit
  XML of that run; ``<!-- docs: command DIR CMD -->``: in the output of CMD);
- **watch**: a block after ``<!-- docs: watch -->`` is a ``connleak watch`` session run
  against a live service holding three connections in CLOSE_WAIT
  (docs/samples/close-wait-service/service.py); the sample's ``--pid`` stands for that
  service's pid, ``$ echo $?`` must print the last command's exit status, and ``$ curl``
  asks the service's health endpoint;
- **checked by kind**: ``python`` blocks are executed; ``ini``/``toml`` blocks may only
  set ini values pytest knows; ``console`` blocks with commands only, no output, may only
  use options and extras that exist, and ``pip install`` this package from a checkout or
  a wheel, never by name (it is not published);
- **illustrative**, said so: ``<!-- docs: illustrative: why it cannot run -->``.

Anything else fails with the page and line, and says how to fix it. Comparing, both
sides are normalised: ports, durations, client versions and the project's temporary
path; a line ``...`` in a sample skips lines, ``...`` inside a line matches anything.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from configparser import ConfigParser
from dataclasses import dataclass
from pathlib import Path

import pytest
from sybil import Document, Example, Region, Sybil
from sybil.parsers.markdown.lexers import RawFencedCodeBlockLexer

ROOT = Path(__file__).resolve().parent.parent
PROJECT_PATH = "/path/to/project"  # how the docs write the directory a sample ran in


def pages() -> list[Path]:
    found = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    found += sorted((ROOT / "examples").glob("*/README.md"))
    found.append(ROOT / "examples" / "README.md")
    return [page for page in found if page.is_file()]


# -- normalising ------------------------------------------------------------------------

_NORMALISE = [
    # pytest centres titles in runs of = _ -: their length follows the title's.
    (re.compile(r"([=_-])\1{2,}"), r"\1\1\1"),
    (re.compile(r"\b(127\.0\.0\.1|localhost|\[::1\]):\d{2,5}\b"), r"\1:PORT"),
    (re.compile(r"\bin \d+\.\d+s\b( \(\d+:\d\d:\d\d\))?"), "in N.NNs"),
    (
        re.compile(r"\b(urllib3|httpcore|aiohttp|psutil|httpx|requests) \d+(\.\d+)+\w*"),
        r"\1 X.Y.Z",
    ),
]


def normalise(text: str, project: str | None = None) -> str:
    if project:
        text = text.replace(project, PROJECT_PATH)
    for pattern, repl in _NORMALISE:
        text = pattern.sub(repl, text)
    # Column widths follow the lengths normalised away: compare cells, not spaces.
    return "\n".join(re.sub(r"(?<=\S) {2,}", "  ", line.rstrip()) for line in text.splitlines())


def _line_pattern(line: str) -> re.Pattern[str]:
    parts = [re.escape(part) for part in line.split("...")]
    return re.compile(".*".join(parts) + "$")


def assert_shown(sample: str, actual: str, what: str) -> None:
    """Each line of *sample* (but ``...`` lines) must be a line of *actual*, in order."""
    __tracebackhide__ = True
    lines = actual.splitlines()
    at = 0
    for wanted in sample.splitlines():
        if wanted.strip() in ("", "..."):
            continue
        pattern = _line_pattern(wanted)
        for i in range(at, len(lines)):
            if pattern.match(lines[i]):
                at = i + 1
                break
        else:
            raise AssertionError(
                f"the sample's line\n  {wanted}\nis not in {what} (after line {at}):\n"
                + textwrap.indent(actual, "  | ")
            )


# -- running samples --------------------------------------------------------------------


@dataclass(frozen=True)
class Ran:
    output: str  # normalised stdout + stderr
    junit: str  # normalised JUnit XML, when asked for
    returncode: int


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    if "PYTEST_DEBUG_TEMPROOT" in os.environ:
        env["PYTEST_DEBUG_TEMPROOT"] = os.environ["PYTEST_DEBUG_TEMPROOT"]
    env.update(COLUMNS="80", LINES="24", PYTHONHASHSEED="0", NO_COLOR="1")
    env.pop("FORCE_COLOR", None)
    return env


def command_argv(words: list[str]) -> list[str] | None:
    """The argv of a documented command with this interpreter, or None if unknown."""
    if not words:
        return None
    head = words[0]
    if head == "pytest":
        return [sys.executable, "-m", "pytest", *words[1:]]
    if head.endswith(("python", "python3")):
        return [sys.executable, *words[1:]]
    if head == "connleak":
        return [sys.executable, "-m", "pytest_connleak", *words[1:]]
    return None


@functools.cache
def run_in(directory: str, argv: tuple[str, ...], junit: bool = False) -> Ran:
    """Run *argv* in a fresh copy of *directory* (relative to the repository)."""
    source = ROOT / directory
    with tempfile.TemporaryDirectory(prefix="connleak-docs-") as tmp:
        # A copy, so that runs leave nothing behind; named like the original, so that
        # pytest's rootdir-relative paths read the same.
        work = Path(tmp) / source.name
        if source.is_dir() and source != ROOT:
            shutil.copytree(
                source, work, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache")
            )
        else:
            work = ROOT
        args = list(argv)
        xml = Path(tmp) / "junit.xml"
        if junit:
            args.append(f"--junitxml={xml}")
        done = subprocess.run(
            args,
            cwd=work,
            env=_environment(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        project = str(work)
        output = normalise(done.stdout + done.stderr, project)
        junit_text = normalise(xml.read_text(), project) if junit else ""
    return Ran(output, junit_text, done.returncode)


# -- what each block is -----------------------------------------------------------------

DIRECTIVE = re.compile(r"<!--\s*docs:\s*(?P<kind>[\w-]+)(?P<colon>:?)\s*(?P<args>.*?)\s*-->\s*$")
FIXES = (
    "include it from a file the suite runs (--8<--), run it (<!-- docs: run DIR -->, "
    "<!-- docs: output DIR ARGS -->), or mark it <!-- docs: illustrative: why -->"
)


@dataclass(frozen=True)
class Block:
    language: str
    source: str
    directive: str | None  # the kind
    args: str
    page: Path
    line: int


def directive_before(text: str, start: int) -> tuple[str | None, str]:
    """The ``<!-- docs: ... -->`` comment ending on the line before *start*, if any."""
    before = text[:start].rstrip("\n").rsplit("\n", 1)[-1]
    match = DIRECTIVE.search(before)
    if match is None:
        return None, ""
    return match.group("kind"), match.group("args")


def blocks_parser(document: Document) -> Iterator[Region]:
    lexer = RawFencedCodeBlockLexer(info_pattern=re.compile(r"(?P<language>[^\n]*)\n"))
    for region in lexer(document):
        kind, args = directive_before(document.text, region.start)
        block = Block(
            language=str(region.lexemes["language"]).strip().split(" ")[0],
            source=str(region.lexemes["source"]),
            directive=kind,
            args=args,
            page=Path(document.path),
            line=document.text[: region.start].count("\n") + 1,
        )
        yield Region(region.start, region.end, block, evaluate)


def evaluate(example: Example) -> None:
    __tracebackhide__ = True
    block: Block = example.parsed
    page = block.page.relative_to(ROOT) if block.page.is_relative_to(ROOT) else block.page
    where = f"{page}:{block.line}"
    try:
        _evaluate(block)
    except AssertionError as exc:
        # Our messages say it all; pytest's assertion rewriting appends "assert ...".
        raise AssertionError(f"{where}: {str(exc).split(chr(10) + 'assert ')[0]}") from None


def _evaluate(block: Block) -> None:
    __tracebackhide__ = True
    if "--8<--" in block.source:
        return check_snippets(block)
    kind = block.directive
    if kind == "illustrative":
        assert block.args, "<!-- docs: illustrative: ... --> needs a reason after the colon"
        return None
    if kind == "run":
        return check_session(block)
    if kind in ("output", "junit", "command"):
        return check_output(block)
    if kind == "watch":
        return check_watch(block)
    if kind == "excerpt":
        return check_excerpt(block)
    assert kind is None, f"unknown directive docs: {kind}; use run, output, junit, command"
    if block.language == "python":
        return check_python(block)
    if block.language in ("ini", "toml"):
        return check_ini(block)
    if block.language in ("console", "bash", "sh", "shell"):
        return check_commands(block)
    raise AssertionError(f"a ```{block.language or ''} block nobody checks; {FIXES}")


def check_excerpt(block: Block) -> None:
    """Pages read on GitHub (README.md, examples' READMEs) cannot include: they quote."""
    source = ROOT / block.args
    assert source.is_file(), f"excerpt: no file {block.args}"
    # A quote may add a comment to a line ("  # the response is never closed").
    assert_shown(
        "\n".join(line.partition("  # ")[0].strip() for line in block.source.splitlines()),
        "\n".join(line.partition("  # ")[0].strip() for line in source.read_text().splitlines()),
        block.args,
    )


def check_snippets(block: Block) -> None:
    for line in block.source.splitlines():
        match = re.search(r'--8<-- "([^":]+)', line)
        if match:
            assert (ROOT / match.group(1)).is_file(), f"{match.group(1)} does not exist"


PRELUDE = """\
import json, sys, unittest
from typing import Any
import pytest, requests, urllib3, httpx, aiohttp
import pytest_connleak
from pytest_connleak import *
"""


def check_python(block: Block) -> None:
    namespace: dict[str, object] = {"__name__": "docs_sample"}
    exec(compile(PRELUDE, "<prelude>", "exec"), namespace)
    try:
        code = compile(
            textwrap.dedent(block.source),
            f"{block.page.name}:{block.line}",
            "exec",
            flags=__import__("__future__").annotations.compiler_flag,
            dont_inherit=True,
        )
        exec(code, namespace)
    except Exception as exc:  # a sample that cannot run alone must say so
        raise AssertionError(f"the python block does not run ({exc!r}); {FIXES}") from None
    finally:
        # A sample that starts track() (a service's start-up) leaves it running: stop it,
        # or the clients stay patched and its checker thread runs into the next tests.
        from pytest_connleak import track

        for value in namespace.values():
            if isinstance(value, track):
                value.stop()


@functools.cache
def known_names() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """Ini names and command-line options pytest knows here, and the package's extras."""
    ran = run_in("examples/incident", (sys.executable, "-m", "pytest", "--help"))
    ini = set(re.findall(r"^  ([a-z_]+) \(", ran.output, re.M))
    options = set(re.findall(r"(?<![\w-])(--[a-z][\w-]*)", ran.output))
    options.add("--help")
    extras = importlib.metadata.metadata("pytest-connleak").get_all("Provides-Extra") or []
    return frozenset(ini), frozenset(options), frozenset(extras)


def check_ini(block: Block) -> None:
    ini, _, _ = known_names()
    if block.language == "toml":
        # (tomllib is Python 3.11+): the keys of [tool.pytest.ini_options].
        assert block.source.lstrip().startswith("[tool.pytest.ini_options]"), block.source
        names = set(re.findall(r"^([\w-]+)\s*=", block.source, re.M))
    else:
        parser = ConfigParser(interpolation=None)
        parser.read_string(block.source)
        names = set(parser["pytest"])
    unknown = names - ini - {"addopts", "filterwarnings", "markers", "testpaths"}
    assert not unknown, f"ini names pytest does not know: {sorted(unknown)}"


def check_commands(block: Block) -> None:
    _, options, extras = known_names()
    lines = _joined(block.source)
    prompted = any(line.startswith("$ ") for line in lines)
    for line in lines:
        assert not prompted or line.startswith("$ ") or not line.strip(), (
            f"output in a console block ({line!r}) must be run; {FIXES}"
        )
        for command in re.split(r"\s*&&\s*", line.removeprefix("$ ").partition(" #")[0]):
            words = shlex.split(command)
            if not words or words[0] == "cd" or words[1:3] == ["-m", "venv"]:
                continue
            if ("pip" in words[0] or words[1:3] == ["-m", "pip"]) and "install" in words:
                check_pip_install(words[words.index("install") + 1 :], extras)
                continue
            argv = command_argv(words)
            assert argv is not None, f"a command the docs test cannot check: {command!r}"
            if "pytest" in argv[1:3]:
                flags = {w.split("=")[0] for w in argv[3:] if w.startswith("--")}
                assert flags <= options, f"unknown pytest options: {sorted(flags - options)}"


# A requirement naming the package: it is not on PyPI yet, so it cannot be installed by name.
BY_NAME = re.compile(r"pytest[-_]connleak(\[[\w,-]*\])?([<>=!~;@ ].*)?$", re.I)


def check_pip_install(args: list[str], extras: frozenset[str]) -> None:
    """This package is installed from a checkout or a wheel, with extras that exist."""
    for arg in args:
        assert not BY_NAME.match(arg), (
            f"pip install {arg!r}: pytest-connleak is not published; install it from a "
            'checkout ("/path/to/pytest-connleak[extra]", -e ".[extra]") or a built wheel'
        )
        target, _, extra = arg.partition("[")
        if not extra or arg.startswith("-"):
            continue
        # "/path/to/pytest-connleak[x]", ".[x]", "$(ls .../dist/pytest_connleak-*.whl)[x]"
        ours = target in (".", "") or re.search(r"pytest[-_]connleak([-/*.]|$)", target)
        assert ours, f"pip install {arg!r}: extras of a package the docs test does not know"
        missing = set(extra.rstrip("]").split(",")) - extras
        assert not missing, f"extras that do not exist: {sorted(missing)}"


def _joined(source: str) -> list[str]:
    """Lines, with backslash continuations joined."""
    return source.replace("\\\n", " ").splitlines()


def check_session(block: Block) -> None:
    directory = block.args
    assert (ROOT / directory).is_dir(), f"run: no directory {directory}"
    command: list[str] | None = None
    expected: list[str] = []
    for line in [*_joined(block.source), "$ "]:
        if not line.startswith("$ "):
            expected.append(line)
            continue
        if command is not None:
            _check_one(directory, command, expected)
        text = line[2:]
        command, expected = None, []
        words = shlex.split(text.partition(" #")[0])
        if not words or words[0] == "cd":
            continue
        argv = command_argv(words)
        assert argv is not None, f"run: cannot run {text!r}"
        command = [*argv, "\0" + text.partition(" #")[2].strip()]


def _check_one(directory: str, command: list[str], expected: list[str]) -> None:
    __tracebackhide__ = True
    *argv, comment = command
    comment = comment.lstrip("\0")
    ran = run_in(directory, tuple(argv))
    shown = " ".join(a for a in argv[1:])
    assert_shown(normalise("\n".join(expected)), ran.output, f"the output of {shown}")
    outcome = re.match(r"(\d+ \w+(?:, \d+ \w+)*)", comment)
    if outcome and "pytest" in argv[1:3]:
        last = ran.output.splitlines()[-1] if ran.output else ""
        for count, noun in re.findall(r"(\d+) (\w+)", outcome.group(1)):
            assert re.search(rf"\b{count} {noun}\b", last), (
                f"the comment says {count} {noun}; the run ended: {last}"
            )
    elif comment.startswith(("FAILED", "OK")):
        assert comment.partition(":")[0] in ran.output, f"{comment!r} not in the output"


def check_output(block: Block) -> None:
    directory, _, rest = block.args.partition(" ")
    words = shlex.split(rest)
    if block.directive == "command":
        argv = command_argv(words)
        assert argv is not None, f"command: cannot run {rest!r}"
    else:
        argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *words]
    junit = block.directive == "junit"
    ran = run_in(directory, tuple(argv), junit=junit)
    actual = ran.junit.replace("><", ">\n<") if junit else ran.output
    sample = normalise(block.source)
    if junit:
        sample = "\n".join(line.strip() for line in sample.splitlines())
    assert_shown(sample, actual, f"the output of {' '.join(argv[1:])} in {directory}")


SERVICE = ROOT / "docs" / "samples" / "close-wait-service" / "service.py"
LEAKED = 3  # the connections service.py leaks


@dataclass(frozen=True)
class Service:
    pid: int
    port: int  # its health endpoint's


@contextlib.contextmanager
def leaky_service() -> Iterator[Service]:
    """service.py running, its three leaked sockets in CLOSE_WAIT."""
    import psutil

    with socket.create_server(("127.0.0.1", 0)) as upstream:
        upstream.settimeout(30)
        url = f"http://127.0.0.1:{upstream.getsockname()[1]}/auth"
        with subprocess.Popen(
            [sys.executable, str(SERVICE), url],
            env={**_environment(), "PORT": "0"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        ) as proc:
            try:
                for _ in range(LEAKED):
                    conn, _ = upstream.accept()
                    with conn:
                        request = b""
                        while not request.endswith(b"\r\n\r\n"):
                            request += conn.recv(4096)
                        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
                    # Our side closed: the service's never will, so its socket stays in
                    # CLOSE_WAIT once our FIN has arrived.
                service = psutil.Process(proc.pid)
                deadline = time.monotonic() + 30
                while True:
                    assert proc.poll() is None, f"service.py exited: {proc.communicate()[1]}"
                    sockets = service.net_connections("tcp")
                    states = [c.status for c in sockets]
                    if states.count("CLOSE_WAIT") == LEAKED and "LISTEN" in states:
                        break
                    assert time.monotonic() < deadline, f"service.py never got ready: {states}"
                    time.sleep(0.01)
                (port,) = [c.laddr.port for c in sockets if c.status == "LISTEN"]
                yield Service(proc.pid, port)
            finally:
                proc.terminate()
                proc.communicate(timeout=30)


def _watch_normalise(text: str, pid: int, shown_pid: str) -> str:
    text = re.sub(r"^\d\d:\d\d:\d\d ", "HH:MM:SS ", normalise(text), flags=re.M)
    return re.sub(rf"\b{pid}\b", shown_pid, text)


def check_watch(block: Block) -> None:
    lines = _joined(block.source)
    pid_match = re.search(r"--pid (\d+)", block.source)
    shown_pid = pid_match.group(1) if pid_match else "PID"
    with leaky_service() as service:
        pid = service.pid
        status: int | None = None
        commands: list[tuple[str, list[str]]] = []
        for line in lines:
            if line.startswith("$ "):
                commands.append((line[2:], []))
            else:
                assert commands, f"watch: output before any command: {line!r}"
                commands[-1][1].append(line)
        for command, expected in commands:
            words = shlex.split(command)
            if words == ["echo", "$?"]:
                assert expected == [str(status)], f"the exit status was {status}, not {expected}"
                continue
            if words[0] == "curl":
                # The health endpoint, wherever the sample says it listens.
                path = words[-1].partition("/")[2]
                with urllib.request.urlopen(f"http://127.0.0.1:{service.port}/{path}") as r:
                    output = r.read().decode()
            else:
                assert words[:2] == ["connleak", "watch"], f"watch: cannot run {command!r}"
                argv = command_argv([str(pid) if w == shown_pid else w for w in words])
                assert argv is not None
                done = subprocess.run(
                    argv,
                    env=_environment(),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,  # as a terminal shows them: interleaved
                    text=True,
                    timeout=60,
                    check=False,
                )
                status, output = done.returncode, done.stdout
            assert_shown(
                _watch_normalise("\n".join(expected), pid, shown_pid),
                _watch_normalise(output, pid, shown_pid),
                f"the output of {command}",
            )


# -- the tests --------------------------------------------------------------------------

SYBIL = Sybil(parsers=[blocks_parser], path=str(ROOT))


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_block_is_verified(page: Path) -> None:
    failures = []
    for example in SYBIL.parse(page):
        try:
            example.evaluate()
        except Exception as exc:
            failures.append(str(exc))
    assert not failures, "\n\n".join(failures)


def test_an_unverified_block_fails(tmp_path: Path) -> None:
    page = tmp_path / "new.md"
    page.write_text("# New\n\n```\nE   SomethingError: made up\n```\n")
    (example,) = SYBIL.parse(page)
    with pytest.raises(AssertionError, match="a ``` block nobody checks"):
        example.evaluate()


def test_a_drifted_sample_fails(tmp_path: Path) -> None:
    page = tmp_path / "new.md"
    page.write_text(
        "<!-- docs: output examples/incident --leak-check test_service.py -->\n"
        "```\nE   ConnectionLeakError: 1 connection lost by test_valid_session_is_accepted\n```\n"
    )
    (example,) = SYBIL.parse(page)
    with pytest.raises(AssertionError, match="connection lost by"):
        example.evaluate()


def test_a_drifted_watch_sample_fails(tmp_path: Path) -> None:
    page = tmp_path / "new.md"
    page.write_text(
        "<!-- docs: watch -->\n```console\n$ connleak watch --pid 7 --once\n"
        "12:00:00 pid 7: CLOSE_WAIT 2  (3 TCP: CLOSE_WAIT 2, LISTEN 1)\n```\n"
    )
    (example,) = SYBIL.parse(page)
    with pytest.raises(AssertionError, match="CLOSE_WAIT 2"):
        example.evaluate()


@pytest.mark.parametrize(
    ("command", "error"),
    [
        ('pip install "/path/to/pytest-connleak[aiohttp,sockets]"', None),
        ('pip install -e ".[dev,bench]"', None),
        ('pip install "$(ls /p/pytest-connleak/dist/pytest_connleak-*.whl)[sockets]"', None),
        ("pip install psutil", None),
        ('pip install "pytest-connleak[aiohttp]"', "is not published"),
        ("pip install pytest_connleak==0.1", "is not published"),
        ('pip install "/path/to/pytest-connleak[nope]"', "extras that do not exist"),
    ],
)
def test_pip_install_lines(command: str, error: str | None) -> None:
    _, _, extras = known_names()
    args = shlex.split(command)[2:]
    if error is None:
        check_pip_install(args, extras)
    else:
        with pytest.raises(AssertionError, match=error):
            check_pip_install(args, extras)


def test_normalising() -> None:
    assert normalise("http://127.0.0.1:41393 — in 0.52s, urllib3 2.8.0") == (
        "http://127.0.0.1:PORT — in N.NNs, urllib3 X.Y.Z"
    )
    assert normalise("pool    client", None) == "pool  client"
    assert_shown("a ... c\n...\ne", "a b c\nd\ne", "x")
    with pytest.raises(AssertionError):
        assert_shown("e\na", "a\ne", "x")
