"""The baseline file: leaks known when it was recorded, which later runs tolerate.

One leak per line, ``test node id | scheme://host | file:function``, sorted, a lease that
leaked twice written twice. No ports and no line numbers, so that the random ports of test
servers and edits above a lease site do not make a known leak look new. The file is only
ever written when it does not exist (the recording run); afterwards the user shrinks it.

Workers of pytest-xdist never write it: they put each leak's line in the report's
``user_properties`` and the controller, which sees every report, records and compares.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_connleak._core.ledger import Lease

__all__ = ["KEY_PROPERTY", "Baseline", "BaselineReporter", "lease_key", "read_baseline"]

KEY_PROPERTY = "connection_leak_baseline"
"""Name of the ``user_properties`` entry that carries a leak's baseline line."""

SEPARATOR = " | "

HEADER = (
    "# pytest-connleak baseline: connection leaks known when this file was recorded.\n"
    "# One leak per line: test node id | pool scheme://host | lease site file:function.\n"
    "# Tests fail only on leaks not listed here. Delete a line once its leak is fixed;\n"
    "# delete the file to record it again.\n"
)


@dataclass(frozen=True)
class Baseline:
    """The baseline of this run: its path, and the known leaks (``None`` while recording)."""

    path: Path
    shown: str
    entries: Counter[str] | None

    @property
    def recording(self) -> bool:
        """True when the file did not exist at start: this run writes it."""
        return self.entries is None


def lease_key(culprit: str, lease: Lease, rootdir: str | None) -> str:
    """The baseline line of *lease*, leaked by *culprit* (a test node id or a fixture).

    The site is the file relative to *rootdir* with ``/`` separators, or the module name
    when the file lies outside it (an installed SDK): an absolute path would differ from
    one machine, or virtualenv, to the next.
    """
    site = lease.site
    rel = site.path(rootdir)
    where = rel.replace(os.sep, "/") if rel != site.filename else site.module
    return SEPARATOR.join((culprit, _without_port(lease.origin), f"{where}:{site.function}"))


def _without_port(origin: str) -> str:
    scheme, _, rest = origin.partition("://")
    host = rest[: rest.rfind(":")] if ":" in rest[rest.rfind("]") + 1 :] else rest
    return f"{scheme}://{host}"


def read_baseline(path: Path, shown: str) -> Counter[str]:
    """Parse a baseline file; a file that cannot be read or parsed is a UsageError."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise pytest.UsageError(f"--leak-check-baseline: cannot read {shown}: {exc}") from None
    entries: Counter[str] = Counter()
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        # rsplit: a test id may contain the separator (parametrize ids); origin and site never.
        fields = line.rsplit(SEPARATOR, 2)
        if len(fields) != 3 or "://" not in fields[1] or ":" not in fields[2] or not fields[0]:
            raise pytest.UsageError(
                f"--leak-check-baseline: {shown}:{lineno}: not a baseline line: {line!r}; "
                f"expected 'test node id{SEPARATOR}scheme://host{SEPARATOR}file:function'"
            )
        entries[SEPARATOR.join(field.strip() for field in fields)] += 1
    return entries


def load_baseline(path: Path, shown: str) -> Baseline:
    """The baseline at *path*: known leaks if it exists, else a recording baseline."""
    if not path.exists():
        if not path.parent.is_dir():
            raise pytest.UsageError(
                f"--leak-check-baseline: cannot record {shown}: "
                f"directory {path.parent} does not exist"
            )
        return Baseline(path, shown, None)
    return Baseline(path, shown, read_baseline(path, shown))


def format_baseline(keys: Iterable[str]) -> str:
    """The file text: the header, then one sorted line per leak."""
    return HEADER + "".join(f"{key}\n" for key in sorted(keys))


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {plural or word + 's'}"


class BaselineReporter:
    """Records or compares the baseline from test reports (on the xdist controller if any)."""

    def __init__(self, baseline: Baseline, rootdir: str) -> None:
        self.baseline = baseline
        self.rootdir = rootdir
        self.seen: Counter[str] = Counter()
        self.ran: set[str] = set()
        self.written: bool | None = None
        self.write_error: str | None = None

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: object) -> None:
        # Workers judge with the controller's reading of the file, not their own: both
        # agree on "recording" even if the file appears while they start.
        entries = self.baseline.entries
        node.workerinput["connleak_baseline"] = {  # type: ignore[attr-defined]
            "path": str(self.baseline.path),
            "shown": self.baseline.shown,
            "entries": None if entries is None else list(entries.elements()),
        }

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call":
            self.ran.add(report.nodeid)
        if report.when == "teardown":
            keys = Counter(str(v) for name, v in report.user_properties if name == KEY_PROPERTY)
            # Union (a max per line), not a sum: under pytest-xdist a module fixture is set
            # up once in each worker that runs its tests, and how many that is varies from
            # run to run; a test's own lines appear in one report only either way.
            self.seen |= keys

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        config = session.config
        if not self.baseline.recording or config.option.collectonly:
            return
        if exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR):
            return
        try:
            # "x": never overwrite a baseline that appeared meanwhile; it only shrinks by hand.
            with open(self.baseline.path, "x", encoding="utf-8") as file:
                file.write(format_baseline(self.seen.elements()))
        except OSError as exc:
            self.written = False
            self.write_error = str(exc)
        else:
            self.written = True

    def fixed(self) -> list[str]:
        """Baseline lines whose leak did not happen, though their test (or scope) ran."""
        entries = self.baseline.entries or Counter()
        gone = entries - self.seen
        return [key for key in sorted(gone.elements()) if self._ran(key)]

    def _ran(self, key: str) -> bool:
        culprit, _, site = key.rsplit(SEPARATOR, 2)
        if culprit in self.ran:
            return True
        if not culprit.startswith("fixture "):
            return False
        # A fixture wider than a function: it ran if a test of its file ran, or, for a
        # conftest.py, a test below its directory. Fixtures of installed packages (a module
        # name, not a path) cannot be placed and are never reported as fixed.
        filename = site.rpartition(":")[0]
        if "/" not in filename and not filename.endswith(".py"):
            return False
        directory, _, base = filename.rpartition("/")
        conftest_scope = f"{directory}/" if directory else ""
        prefix = conftest_scope if base == "conftest.py" else f"{filename}::"
        return any(nodeid.startswith(prefix) for nodeid in self.ran)

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_terminal_summary(
        self, terminalreporter: pytest.TerminalReporter
    ) -> Generator[None, None, None]:
        # After the "connection leaks" section, before pytest's short test summary.
        result = yield
        self._write_summary(terminalreporter)
        return result

    def _write_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        shown = self.baseline.shown
        write = terminalreporter.write_line
        if self.baseline.recording:
            if self.written:
                count = sum(self.seen.values())
                write(f"connleak baseline: recorded {_plural(count, 'leak')} in {shown}")
            elif self.written is False:
                write(f"connleak baseline: cannot write {shown}: {self.write_error}", red=True)
            return
        entries = self.baseline.entries or Counter()
        known = sum((self.seen & entries).values())
        new = sum((self.seen - entries).values())
        if known or new:
            write(
                f"connleak baseline: {_plural(known, 'known leak')} tolerated, "
                f"{_plural(new, 'new leak')} not in {shown}"
            )
        fixed = self.fixed()
        if fixed:
            it = "it" if len(fixed) == 1 else "them"
            write(
                f"connleak baseline: {_plural(len(fixed), 'entry', 'entries')} fixed, remove {it} "
                f"from {shown}:",
                yellow=True,
            )
            for key in fixed:
                write(f"    {key}")
