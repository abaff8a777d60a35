"""What a leak does to its test: ignore rules, ``allow_leaks`` arguments, baseline, mode.

The verdict in :mod:`pytest_connleak.plugin` hands every leak of a test to
:meth:`Policy.sort`, which sets aside the excused ones (still recorded for the summary, so
nothing hides) and returns those that count; :meth:`Policy.warn` is warn mode's way of
reporting them.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .settings import LEAK_PROPERTY, AllowLeaks, parse_allow_leaks

# Every pytest run configures the policy; only a run with leaks (or ignore rules, or a
# baseline) needs the rules, the baseline, the report text and the summary's names, so
# those are imported where they are used, not here (start-up time, issue 12).
if TYPE_CHECKING:
    from pytest_connleak._core.ledger import Lease

    from .baseline import Baseline
    from .rules import Rule

    _Allowances = tuple[AllowLeaks | None, tuple[tuple[Rule, AllowLeaks], ...]]

__all__ = [
    "JUDGED_KEY",
    "MODES",
    "POLICY_KEY",
    "WARNED",
    "Policy",
    "add_options",
    "configure_policy",
    "note_call_failed_by_leak",
    "note_early_report",
    "reported_early",
]

MODES = ("fail", "warn")
"""The values of ``--leak-check-mode`` and ini ``leak_check_mode``."""

_ALLOWANCES_KEY: pytest.StashKey[_Allowances] = pytest.StashKey()
_PARENT_ALLOWANCES_KEY: pytest.StashKey[_Allowances] = pytest.StashKey()


def add_options(parser: pytest.Parser, group: pytest.OptionGroup) -> None:
    """Add the mode, ignore and baseline options to the plugin's option group."""
    group.addoption(
        "--leak-check-mode",
        dest="leak_check_mode",
        default=None,
        metavar="MODE",
        help="what a leak does to its test: fail (a teardown error, the default) or warn "
        "(a pytest_connleak.LeakWarning attached to the test). Ini: leak_check_mode.",
    )
    group.addoption(
        "--leak-check-baseline",
        dest="leak_check_baseline",
        default=None,
        metavar="FILE",
        help="tolerate the leaks listed in FILE and fail only on new ones; if FILE does not "
        "exist, record this run's leaks in it. Ini: leak_check_baseline.",
    )
    parser.addini(
        "leak_check_mode",
        type="string",
        default="fail",
        help="what a leak does to its test: fail (default) or warn.",
    )
    parser.addini(
        "leak_check_ignore",
        type="linelist",
        default=[],
        help="leaks never to fail a test, one pattern a line: an origin "
        "(http://localhost:*), a module (some_sdk.*) or a file (tests/legacy/*) of the "
        "lease site; prefix origin:, module: or file: to be explicit.",
    )
    parser.addini(
        "leak_check_baseline",
        type="string",
        default="",
        help="baseline file of tolerated leaks, relative to the ini file "
        "(as --leak-check-baseline).",
    )


class Policy:
    """Mode, ignore rules and baseline of this run, resolved once."""

    # Not a frozen dataclass: generating its methods would cost every pytest run ~0.5 ms.
    __slots__ = ("baseline", "ignore", "mode", "rootdir")

    mode: str
    ignore: tuple[Rule, ...]
    baseline: Baseline | None
    rootdir: str

    def __init__(
        self, mode: str, ignore: tuple[Rule, ...], baseline: Baseline | None, rootdir: str
    ) -> None:
        _set = object.__setattr__
        _set(self, "mode", mode)
        _set(self, "ignore", ignore)
        _set(self, "baseline", baseline)
        _set(self, "rootdir", rootdir)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")  # resolved once: frozen

    def __repr__(self) -> str:
        return (
            f"Policy(mode={self.mode!r}, ignore={self.ignore!r}, "
            f"baseline={self.baseline!r}, rootdir={self.rootdir!r})"
        )

    def classify(
        self,
        item: pytest.Item,
        leases: Sequence[Lease],
        culprit: str,
        fixture_of: pytest.Item | None = None,
    ) -> list[tuple[Lease, str | None, str | None]]:
        """``(lease, why, baseline key)`` for each lease; *why* is None when it counts.

        The same judgement for the teardown verdict and ``assert_no_leaks()``:
        ``allow_leaks`` (the closest marker only), then the ignore rules, then the baseline.
        """
        if fixture_of is None:
            everything, marker_rules = _allowances(item)
        else:
            everything, marker_rules = _allowances(fixture_of, parents_only=True)
        entries = self.baseline.entries if self.baseline else None
        if self.baseline is not None:
            from .baseline import lease_key
        used: Counter[str] = Counter()
        out: list[tuple[Lease, str | None, str | None]] = []
        for lease in leases:
            status = _excuse(lease, everything, marker_rules, self.ignore, self.rootdir)
            key = None
            if status is None and self.baseline is not None:
                key = lease_key(culprit, lease, self.rootdir)
                if entries is None:
                    status = "recorded in baseline"
                elif used[key] < entries[key]:
                    used[key] += 1
                    status = "in baseline"
            out.append((lease, status, key))
        return out

    def sort(
        self,
        item: pytest.Item,
        leases: Sequence[Lease],
        culprit: str,
        fixture_of: pytest.Item | None = None,
    ) -> list[Lease]:
        """Record every lease of *item* in its report; return those that count against it.

        *culprit* names who leaked them in the baseline: the test's node id, or the
        fixture whose scope ended. For a fixture's leases, *fixture_of* is the test that
        set the fixture up: only its module- and class-level ``allow_leaks`` markers apply
        (a marker on one test function does not excuse a fixture that outlives it).
        In warn mode a lease that counts is recorded as ``warned``, so the summary says why
        it did not fail its test.
        """
        from pytest_connleak._core.report import lease_line

        from .baseline import KEY_PROPERTY

        counted = []
        item.stash.setdefault(JUDGED_KEY, []).extend(leases)
        for lease, status, key in self.classify(item, leases, culprit, fixture_of):
            line = lease_line(lease, self.rootdir)
            if fixture_of is not None:
                line = f"{line} [{culprit}]"
            shown = status
            if status is None:
                counted.append(lease)
                if self.mode == "warn":
                    shown = WARNED
            item.user_properties.append((LEAK_PROPERTY, f"{line} ({shown})" if shown else line))
            if key is not None:
                item.user_properties.append((KEY_PROPERTY, key))
        return counted

    def why_socket(self, item: pytest.Item) -> str | None:
        """Why a socket *item* left open does not fail it, or None when it does.

        A socket has no lease site or pool origin for ``origins=``/``sites=`` and the
        ignore rules to match: only a bare ``allow_leaks`` marker (the closest one)
        excuses it; warn mode warns instead of failing.
        """
        allow = _allowances(item)[0]
        if allow is not None:
            return f"allowed: {allow.reason}" if allow.reason else "allowed"
        return WARNED if self.mode == "warn" else None

    def warn(self, message: str, leases: Sequence[Lease]) -> None:
        """Warn mode: one :class:`LeakWarning` carrying *message*, at the first lease site.

        Called from the teardown hook, inside pytest's warning capture for the test, so the
        warnings summary lists it under the test's node id and ``filterwarnings`` /
        ``-W error::pytest_connleak.LeakWarning`` can turn it into an error.
        """
        __tracebackhide__ = True
        from pytest_connleak._core.warnings import LeakWarning

        site = leases[0].site
        # warn_explicit with no registry: "default" filters would otherwise show a second
        # leak from the same line once only, and each test must get its warning.
        warnings.warn_explicit(
            LeakWarning(message), LeakWarning, site.filename, site.lineno, module=site.module
        )


POLICY_KEY = pytest.StashKey[Policy]()
"""Where :func:`configure_policy` leaves the run's :class:`Policy` in ``config.stash``."""

JUDGED_KEY: pytest.StashKey[list[Lease]] = pytest.StashKey()
"""Every lease the teardown verdict judged for a test, counted or excused: the socket check
leaves their sockets out, whatever the mode, so that one leak makes one report."""

_EARLY_KEY: pytest.StashKey[list[Lease]] = pytest.StashKey()
_EARLY_FAILED_KEY = pytest.StashKey[bool]()


def note_early_report(item: pytest.Item, leases: Sequence[Lease]) -> None:
    """``assert_no_leaks()`` reported *leases* during the test (an error, or a warning)."""
    item.stash.setdefault(_EARLY_KEY, []).extend(leases)


def note_call_failed_by_leak(item: pytest.Item) -> None:
    """The test's call ended with ``assert_no_leaks()``'s error, not caught by the test."""
    item.stash[_EARLY_FAILED_KEY] = True


def reported_early(item: pytest.Item, mode: str) -> list[Lease]:
    """Leases the teardown verdict must not report again: one leak, one report.

    Those ``assert_no_leaks()`` already failed the test for, or warned about in warn mode.
    A test that caught the error and went on (``pytest.raises``) did not fail for them, so
    they are judged at teardown as usual.
    """
    if mode == "warn" or item.stash.get(_EARLY_FAILED_KEY, False):
        return item.stash.get(_EARLY_KEY, [])
    return []


WARNED = "warned: leak_check_mode = warn"
"""Why a leak that counted did not fail its test, in the summary and JUnit property."""


def _allowances(
    item: pytest.Item, parents_only: bool = False
) -> tuple[AllowLeaks | None, tuple[tuple[Rule, AllowLeaks], ...]]:
    """The closest ``allow_leaks`` markers of *item*, as ``get_closest_marker`` finds them.

    The function's marker replaces its class's, which replaces its module's: only the
    markers of the closest node that has any count (several on that one node add up).
    With *parents_only*, the function's own markers are passed over.
    """
    key = _PARENT_ALLOWANCES_KEY if parents_only else _ALLOWANCES_KEY
    cached = item.stash.get(key, None)
    if cached is not None:
        return cached
    everything = None
    rules: list[tuple[Rule, AllowLeaks]] = []
    closest: object = None
    for node, marker in item.iter_markers_with_node("allow_leaks"):
        if parents_only and node is item:
            continue
        if closest is None:
            closest = node
        elif node is not closest:
            break
        allow = parse_allow_leaks(marker, item.nodeid)
        if allow.allows_everything:
            everything = everything or allow
            continue
        from .rules import parse_rule  # only for a marker that gives patterns

        rules += [(parse_rule(p, "origin"), allow) for p in allow.origins or ()]
        rules += [(parse_rule(p, "site"), allow) for p in allow.sites or ()]
    result = (everything, tuple(rules))
    item.stash[key] = result
    return result


def _excuse(
    lease: Lease,
    everything: AllowLeaks | None,
    marker_rules: Sequence[tuple[Rule, AllowLeaks]],
    ignore: Sequence[Rule],
    rootdir: str,
) -> str | None:
    if everything is not None:
        return f"allowed: {everything.reason}" if everything.reason else "allowed"
    for rule, allow in marker_rules:
        if rule.matches(lease, rootdir):
            # The rule says which leases; the reason says why they may leak.
            reason = f"; {allow.reason}" if allow.reason else ""
            return f"allowed: {rule.describe()}{reason}"
    for rule in ignore:
        if rule.matches(lease, rootdir):
            return f"ignored: {rule.describe()}"
    from pytest_connleak._core.sdks import known_behaviour

    from .summary import KNOWN_SDK_BEHAVIOUR

    behaviour = known_behaviour(lease)
    if behaviour is not None:
        return f"{KNOWN_SDK_BEHAVIOUR}: {behaviour}"
    return None


def allows_every_leak(item: pytest.Item) -> bool:
    """Whether a bare ``allow_leaks`` marker (no origins, no sites) exempts all of *item*."""
    return _allowances(item)[0] is not None


def configure_policy(config: pytest.Config) -> Policy:
    """Resolve mode, ignore rules and baseline; register the baseline reporter if needed."""
    option = config.getoption("leak_check_mode", None)
    name = "--leak-check-mode"
    if option is None:
        option, name = config.getini("leak_check_mode"), "leak_check_mode"
    mode = str(option).strip().lower()
    if mode not in MODES:
        raise pytest.UsageError(f"{name} must be one of: {', '.join(MODES)} (got {option!r})")
    rules = []
    lines = config.getini("leak_check_ignore")
    if lines:
        from .rules import VALID_FORMS, PatternError, parse_rule
    for line in lines:
        try:
            rules.append(parse_rule(str(line)))
        except PatternError as exc:
            raise pytest.UsageError(
                f"leak_check_ignore: {exc}; valid forms: {VALID_FORMS}"
            ) from None
    rootdir = str(config.rootpath)
    baseline = _resolve_baseline(config)
    policy = Policy(mode, tuple(rules), baseline, rootdir)
    if not hasattr(config, "workerinput"):
        if report_header(policy):  # the defaults add no header line: no plugin to call
            config.pluginmanager.register(_HeaderReporter(policy), "connleak-policy")
        if baseline is not None:
            from .baseline import BaselineReporter

            reporter = BaselineReporter(baseline, rootdir)
            config.pluginmanager.register(reporter, "connleak-baseline")
    return policy


def _resolve_baseline(config: pytest.Config) -> Baseline | None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and "connleak_baseline" in workerinput:
        from .baseline import Baseline

        given = workerinput["connleak_baseline"]
        entries = given["entries"]
        return Baseline(
            Path(given["path"]), given["shown"], None if entries is None else Counter(entries)
        )
    shown = config.getoption("leak_check_baseline", None)
    if shown:
        path = config.invocation_params.dir / shown
    else:
        shown = str(config.getini("leak_check_baseline")).strip()
        if not shown:
            return None
        path = (config.inipath.parent if config.inipath else config.rootpath) / shown
    from .baseline import load_baseline

    return load_baseline(path, shown)


class _HeaderReporter:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        return report_header(self.policy)


def report_header(policy: Policy) -> list[str]:
    """Header lines for whatever differs from the defaults."""
    lines = []
    if policy.mode != "fail":
        lines.append(f"connleak: leak_check_mode = {policy.mode}")
    if policy.ignore:
        rules = ", ".join(rule.describe() for rule in policy.ignore)
        lines.append(f"connleak: ignoring leases of {rules}")
    baseline = policy.baseline
    if baseline is not None:
        if baseline.entries is None:
            lines.append(f"connleak: recording a baseline in {baseline.shown}")
        else:
            count = sum(baseline.entries.values())
            lines.append(f"connleak: baseline {baseline.shown} ({count} known leaks)")
    return lines
