"""The per-test verdict: who leased what, judged when the test or fixture scope ends.

Flag, ini value, fixture and marker all end in :func:`should_check`, so they cannot
disagree. Nothing is patched until checking is enabled for at least one test
(:func:`activate`).
"""

from __future__ import annotations

import sys
from collections.abc import Generator

import pytest

from pytest_connleak._core.adapters import (
    HTTP_LIBRARIES,
    Instrumentation,
    acquire_instrumentation,
    release_instrumentation,
)
from pytest_connleak._core.ledger import Lease, PoolUsage, ledger
from pytest_connleak._core.report import ConnectionLeakError, format_leaks, lease_line
from pytest_connleak._core.sdks import SDK_PACKAGES
from pytest_connleak._core.warnings import IncompatibleClientWarning

from .policy import (
    POLICY_KEY,
    allows_every_leak,
    note_call_failed_by_leak,
    note_early_report,
    reported_early,
)
from .settings import (
    CHECKER_KEY,
    REQUESTED_KEY,
    SETTINGS_KEY,
    USAGE_ATTR,
    escalated_client_error,
    has_results,
    is_xdist_controller,
)

__all__ = [
    "CHECKER_KEY",
    "REQUESTED_KEY",
    "SETTINGS_KEY",
    "LeakCheck",
    "LeakChecker",
    "activate",
    "is_watched",
    "is_xdist_controller",
    "should_check",
]

_USAGE_KEY: pytest.StashKey[list[PoolUsage]] = pytest.StashKey()


def activate(config: pytest.Config) -> LeakChecker:
    """Install the instrumentation and the per-test hooks once for this run."""
    checker = config.stash.get(CHECKER_KEY, None)
    if checker is not None:
        return checker
    # One instrumentation per process, shared with no_leaks(): patching twice counts twice.
    instrumentation, problems = acquire_instrumentation()
    ledger.add_library(*config.stash[SETTINGS_KEY].library_packages)
    checker = LeakChecker(config, instrumentation)
    config.stash[CHECKER_KEY] = checker
    config.add_cleanup(checker.close)
    for problem in problems:
        try:
            config.issue_config_time_warning(IncompatibleClientWarning(problem), stacklevel=2)
        except IncompatibleClientWarning:
            # Escalated by the user: a usage error, not an INTERNALERROR traceback.
            raise escalated_client_error(problem) from None
    config.pluginmanager.register(checker, "connleak-checker")
    return checker


def should_check(item: pytest.Item) -> bool:
    """Whether *item*'s leaks fail it: the one rule behind flag, ini, fixture and marker.

    Ignore rules, ``allow_leaks(origins=..., sites=...)``, the baseline and warn mode then
    decide lease by lease (see ``_policy``).
    """
    return is_watched(item) and not allows_every_leak(item)


def is_watched(item: pytest.Item) -> bool:
    """Whether *item*'s leases are judged at all, by flag, ini or fixture.

    True also under a bare ``allow_leaks`` marker: its leases are recorded as allowed, so
    the summary still counts them, but never fail the test.
    """
    if not isinstance(item, pytest.Function):
        return False
    settings = item.config.stash[SETTINGS_KEY]
    return (
        settings.check_all
        or "leak_check" in item.fixturenames
        or item.stash.get(REQUESTED_KEY, False)
    )


def _settled(owner: str) -> list[Lease]:
    """*owner*'s open leases once the cyclic garbage collector has run.

    Only called when some are open, so a clean test never pays for a collection. A response
    caught in a reference cycle (an SDK's stream object and the generator reading it) is
    closed by its finalizer when the cycle is collected, which gives its connection back:
    that is not a leak, and CPython would do it at its next collection anyway. What the
    collection's other finalizers warn or raise is listed in the run's summary (see
    ``settle``), never made a test's failure.
    """
    from . import settle  # loaded by the first test found holding a connection

    settle.collect()
    return ledger.open_leases(owner)


def _take_kept() -> list[str]:
    """What ``settle`` kept from this run's collections (none if it never collected)."""
    settle = sys.modules.get(f"{__package__}.settle")
    kept: list[str] = settle.take_kept() if settle is not None else []
    return kept


class FixtureOwner:
    """Owner of the leases made while a fixture wider than a function was set up.

    Equal (and hashed) by ``argname``, ``scope`` and ``ident``, like a frozen dataclass
    whose other fields do not compare; written out because generating a dataclass's
    methods costs about 0.5 ms of every checked run's start-up.
    """

    __slots__ = ("argname", "ident", "item", "scope", "watched")

    argname: str
    scope: str
    ident: int
    #: The test during whose setup the fixture was created.
    item: pytest.Item | None
    #: Whether that test was checked: its leaks are judged when the scope ends, whatever
    #: test happens to be running then.
    watched: bool

    def __init__(
        self,
        argname: str,
        scope: str,
        ident: int,
        item: pytest.Item | None = None,
        watched: bool = True,
    ) -> None:
        _set = object.__setattr__
        _set(self, "argname", argname)
        _set(self, "scope", scope)
        _set(self, "ident", ident)
        _set(self, "item", item)
        _set(self, "watched", watched)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, FixtureOwner)
        return (self.argname, self.scope, self.ident) == (other.argname, other.scope, other.ident)

    def __hash__(self) -> int:
        return hash((self.argname, self.scope, self.ident))

    def __repr__(self) -> str:
        return (
            f"FixtureOwner(argname={self.argname!r}, scope={self.scope!r}, "
            f"ident={self.ident!r}, item={self.item!r}, watched={self.watched!r})"
        )

    def describe(self) -> str:
        return f"fixture '{self.argname}' ({self.scope} scope)"


class LeakChecker:
    """Attributes leases to tests and fixtures, and judges them when their scope ends.

    Per test it costs one owner switch at setup and one look-up at teardown (the leases
    and the pool usage of the test): the verdict and pool health share one teardown
    wrapper and one report wrapper, and everything else waits until a leak or a busy
    pool is actually found.
    """

    def __init__(self, config: pytest.Config, instrumentation: Instrumentation) -> None:
        self.config = config
        self.instrumentation = instrumentation
        self.rootdir = str(config.rootpath)
        self.settings = config.stash[SETTINGS_KEY]
        self._fixture_owners: dict[int, FixtureOwner] = {}
        self._pending: list[tuple[FixtureOwner, list[Lease]]] = []
        self._item: pytest.Item | None = None

    def tracked(self) -> list[str]:
        tracked = [f"{a.name} {a.version()}" for a in self.instrumentation.installed]
        # Not imported yet: patched on first import; its version would cost that import.
        tracked += [f"{a.name} (when imported)" for a in self.instrumentation.pending]
        return tracked or ["nothing"]

    def close(self) -> None:
        # Only the run's own: the built-in lists stay for no_leaks() and later runs.
        own = set(self.settings.library_packages) - {*SDK_PACKAGES, *HTTP_LIBRARIES}
        ledger.remove_library(*own)
        release_instrumentation()
        ledger.owner = None
        _take_kept()  # listed by this run's summary, or by none (an xdist worker)
        if self.config.pluginmanager.is_registered(self):
            self.config.pluginmanager.unregister(self)

    def report(self, leases: list[Lease], culprit: str, when: str) -> str:
        return format_leaks(leases, culprit, when, self.instrumentation.advise, self.rootdir)

    # -- attribution -------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> None:
        # Open the first test's usage window: requests made at collection are no test's.
        # Each teardown then opens the next test's (there is nothing in between).
        ledger.take_usage()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        # A plain hook, not a wrapper: before pytest's own, which sets up the fixtures.
        ledger.owner = item.nodeid
        self._item = item

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[object], request: pytest.FixtureRequest
    ) -> Generator[None, object, object]:
        if fixturedef.scope == "function":
            return (yield)
        item = self._item
        owner = FixtureOwner(
            fixturedef.argname,
            fixturedef.scope,
            id(fixturedef),
            item,
            is_watched(item) if item is not None else self.settings.check_all,
        )
        self._fixture_owners[id(fixturedef)] = owner
        previous, ledger.owner = ledger.owner, owner
        try:
            return (yield)
        finally:
            ledger.owner = previous

    def pytest_fixture_post_finalizer(
        self, fixturedef: pytest.FixtureDef[object], request: pytest.FixtureRequest
    ) -> None:
        owner = self._fixture_owners.pop(id(fixturedef), None)
        if owner is None:
            return
        leases = ledger.open_leases(owner)
        if leases:
            ledger.disown(leases)
            self._pending.append((owner, leases))

    # -- the verdict ---------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, None, None]:
        __tracebackhide__ = True
        try:
            result = yield
        except BaseException:
            self._collect(item)
            self._health(item, failed=True)
            raise
        leases, pending = self._collect(item)
        try:
            if leases or pending:
                self._judge(item, leases, pending)
        except BaseException:
            self._health(item, failed=True)
            raise
        # After the verdict: a warning turned into an error must not stop it being reached.
        self._health(item, failed=False)
        return result

    def _collect(
        self, item: pytest.Item
    ) -> tuple[list[Lease], list[tuple[FixtureOwner, list[Lease]]]]:
        # After the yield every function-scoped fixture, and any wider scope ending
        # here, has been finalised: what is still leased now was never given back.
        leases = ledger.open_leases(item.nodeid)
        if leases:
            # Only when something is still open: a cycle's finalizer may give it back.
            leases = _settled(item.nodeid)
            ledger.disown(leases)
        ledger.owner = None
        self._item = None
        pending = self._pending
        if pending:
            pending = [(owner, held) for owner, held in pending if owner.watched]
            self._pending = []
        if leases and not is_watched(item):
            leases = []
        return leases, pending

    def _health(self, item: pytest.Item, failed: bool) -> None:
        __tracebackhide__ = True
        # After every fixture of this scope is finalised, so their requests count too.
        usage = ledger.take_usage()
        if not usage or not is_watched(item):
            return
        item.stash[_USAGE_KEY] = usage
        if self.settings.pool_warnings:
            from .health import warn_health

            warn_health(item, usage, self.settings.pool_threshold, failed)

    def _judge(
        self,
        item: pytest.Item,
        leases: list[Lease],
        pending: list[tuple[FixtureOwner, list[Lease]]],
    ) -> None:
        __tracebackhide__ = True
        name = item.name if isinstance(item, pytest.Function) else item.nodeid
        policy = item.config.stash[POLICY_KEY]
        parts = []
        everything: list[Lease] = []
        # The policy records every lease for the summary and keeps those that count;
        # assert_no_leaks() may have reported some of them already.
        early = reported_early(item, policy.mode)
        counted = policy.sort(item, leases, item.nodeid) if leases else []
        if counted := [lease for lease in counted if lease not in early]:
            parts.append(self.report(counted, name, "still leased at teardown"))
            everything += counted
        for owner, held in pending:
            if counted := policy.sort(item, held, owner.describe(), fixture_of=owner.item):
                parts.append(
                    self.report(counted, owner.describe(), "still leased when it was finalised")
                )
                everything += counted
        if not parts:
            return
        message = "\n".join(parts)
        # A report section too: pytest-html, pytest-reportlog and -rA show sections.
        lines = [lease_line(lease, self.rootdir) for lease in everything]
        item.add_report_section("teardown", "connleak", "\n".join(lines))
        if policy.mode == "warn":
            policy.warn(message, everything)
            return
        raise ConnectionLeakError(message, everything)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        excinfo = call.excinfo
        if excinfo is None and call.when != "teardown":
            return report  # setup and call, nothing raised: most reports
        if call.when == "teardown":
            usage = item.stash.get(_USAGE_KEY, None)
            if usage:
                setattr(report, USAGE_ATTR, [u.to_dict() for u in usage])
        # Teardown's verdict, or assert_no_leaks() in the test itself.
        if excinfo is not None and isinstance(excinfo.value, ConnectionLeakError):
            if call.when == "call":
                note_call_failed_by_leak(item)
            from .longrepr import leak_repr

            # Our frames say nothing useful to the user; the message says everything.
            path, line0, _ = item.location
            report.longrepr = leak_repr(excinfo.value, self.rootdir, (path, (line0 or 0) + 1))
        return report

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if has_results(terminalreporter):
            from .summary import write_summary

            write_summary(terminalreporter)
        if kept := _take_kept():
            terminalreporter.write_sep("=", "connleak: garbage collected before a verdict")
            terminalreporter.write_line(
                "Finalizers run by the collection before a verdict reported these; without"
                " the plugin they would have run at a later collection:"
            )
            for line in kept:
                terminalreporter.write_line(f"  {line}")
        for problem in self.instrumentation.escalated:
            terminalreporter.write_line(f"ERROR: IncompatibleClientWarning: {problem}", red=True)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # An escalated warning from a client's import could not be raised there without
        # failing the code under test; it fails the run instead.
        if self.instrumentation.escalated and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


class LeakCheck:
    """What the ``leak_check`` fixture returns: the current test's open leases.

    Requesting the fixture turns the check on for that test even without
    ``--leak-check``.
    """

    def __init__(self, checker: LeakChecker, item: pytest.Item) -> None:
        self._checker = checker
        self._item = item

    def leased(self) -> list[Lease]:
        """The connections this test holds right now, oldest first."""
        return ledger.open_leases(self._item.nodeid)

    def assert_no_leaks(self) -> None:
        """Fail now if this test holds a connection that would fail it at teardown.

        The teardown verdict's judgement, earlier: leases excused by ``leak_check_ignore``,
        ``allow_leaks`` or the baseline pass, and in warn mode a
        :class:`~pytest_connleak.LeakWarning` replaces the error. A lease reported here is
        not reported again at teardown (it is still listed in the end-of-run summary).
        """
        __tracebackhide__ = True
        item = self._item
        policy = item.config.stash[POLICY_KEY]
        judged = policy.classify(item, self.leased(), item.nodeid)
        early = reported_early(item, policy.mode)
        leases = [lease for lease, why, _ in judged if why is None and lease not in early]
        if not leases:
            return
        message = self._checker.report(leases, item.name, "still leased at assert_no_leaks()")
        note_early_report(item, leases)
        if policy.mode == "warn":
            policy.warn(message, leases)
            return
        raise ConnectionLeakError(message, leases)
