"""Options, ini values and marker arguments, parsed once into typed values.

Every bad value becomes a :class:`pytest.UsageError` that names what is valid.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .verdict import LeakChecker

__all__ = [
    "CHECKER_KEY",
    "DEFAULT_POOL_THRESHOLD",
    "LEAK_PROPERTY",
    "REQUESTED_KEY",
    "SETTINGS_KEY",
    "SOCKET_PROPERTY",
    "USAGE_ATTR",
    "add_options",
    "add_socket_options",
    "AllowLeaks",
    "escalated_client_error",
    "has_results",
    "is_xdist_controller",
    "Settings",
    "parse_allow_leaks",
    "parse_bool",
    "parse_packages",
    "parse_threshold",
    "resolve_settings",
]

DEFAULT_POOL_THRESHOLD = 0.75
"""Share of a pool's capacity at which a test's pool is marked in the pools table (and the
test gets a PoolHealthWarning when pool warnings are on)."""

LEAK_PROPERTY = "connection_leak"
"""Name of the ``user_properties`` entry (and JUnit XML property) of each leak."""

SOCKET_PROPERTY = "socket_leak"
"""Name of the ``user_properties`` entry (and JUnit XML property) of each socket left open
(``--leak-check-sockets``): ``tcp local -> remote STATE``, then `` (why)`` if excused."""

USAGE_ATTR = "connleak_pools"
"""Attribute of a teardown report holding that test's pool usage, a list of dicts.

Reports carry extra attributes through pytest-xdist (and pytest-reportlog), so the summary
can be built from reports alone. It is not a ``user_properties`` entry: that would add a
JUnit XML property to every test that made a request.
"""


_TRUE = ("1", "true", "yes", "on", "y", "t")
_FALSE = ("0", "false", "no", "off", "n", "f", "")


class Settings:
    """What the command line and ini file asked for, resolved once per run."""

    # A slotted class written out rather than a frozen dataclass: this module loads in every
    # pytest run, and generating a dataclass's methods costs about 0.5 ms of start-up each.
    __slots__ = (
        "check_all",
        "check_sockets",
        "library_packages",
        "pool_threshold",
        "pool_warnings",
    )

    #: ``--leak-check`` / ini ``leak_check``: every test is checked.
    check_all: bool
    #: ``--leak-check-sockets`` / ini ``leak_check_sockets``: the socket check is on.
    check_sockets: bool
    #: A test that drives a pool to this share of its capacity, in (0, 1], is marked in
    #: the pools table (and warned, with ``pool_warnings``).
    pool_threshold: float
    #: ``--leak-check-pool-warnings`` / ini ``leak_check_pool_warnings``: emit
    #: PoolHealthWarning. Off by default: a clean test is never failed by a warning
    #: filter it did not ask for.
    pool_warnings: bool
    #: ini ``leak_check_library_packages``: packages never a lease site, besides the SDKs
    #: built in (``pytest_connleak._core.sdks.SDK_PACKAGES``).
    library_packages: tuple[str, ...]

    def __init__(
        self,
        check_all: bool,
        check_sockets: bool = False,
        pool_threshold: float = DEFAULT_POOL_THRESHOLD,
        pool_warnings: bool = False,
        library_packages: tuple[str, ...] = (),
    ) -> None:
        _set = object.__setattr__
        _set(self, "check_all", check_all)
        _set(self, "check_sockets", check_sockets)
        _set(self, "pool_threshold", pool_threshold)
        _set(self, "pool_warnings", pool_warnings)
        _set(self, "library_packages", library_packages)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")  # resolved once: frozen

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in _SETTINGS_FIELDS)
        return f"Settings({fields})"


_SETTINGS_FIELDS = (
    "check_all",
    "check_sockets",
    "pool_threshold",
    "pool_warnings",
    "library_packages",
)


SETTINGS_KEY = pytest.StashKey[Settings]()
"""Where ``pytest_configure`` keeps this run's :class:`Settings` (``config.stash``)."""
# Here rather than in ``verdict``, so that a run that checks nothing never imports it.
CHECKER_KEY: pytest.StashKey[LeakChecker] = pytest.StashKey()
REQUESTED_KEY = pytest.StashKey[bool]()


class AllowLeaks:
    """The arguments of one ``@pytest.mark.allow_leaks`` marker.

    ``origins`` and ``sites`` are ``None`` when not given: a marker with neither exempts
    every lease of the test, one with either exempts only the leases they match.
    """

    __slots__ = ("origins", "reason", "sites")  # not a dataclass: see Settings

    reason: str | None
    origins: tuple[str, ...] | None
    sites: tuple[str, ...] | None

    def __init__(
        self,
        reason: str | None,
        origins: tuple[str, ...] | None = None,
        sites: tuple[str, ...] | None = None,
    ) -> None:
        _set = object.__setattr__
        _set(self, "reason", reason)
        _set(self, "origins", origins)
        _set(self, "sites", sites)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, AllowLeaks)
        return (self.reason, self.origins, self.sites) == (
            other.reason,
            other.origins,
            other.sites,
        )

    def __hash__(self) -> int:
        return hash((self.reason, self.origins, self.sites))

    def __repr__(self) -> str:
        return f"AllowLeaks(reason={self.reason!r}, origins={self.origins!r}, sites={self.sites!r})"

    @property
    def allows_everything(self) -> bool:
        """True for a marker without ``origins`` and ``sites``: the whole test is exempt."""
        return self.origins is None and self.sites is None


ALLOW_LEAKS_ARGUMENTS = ("reason", "origins", "sites")


def is_xdist_controller(config: pytest.Config) -> bool:
    """Whether this process is a pytest-xdist controller, which runs no test."""
    # The controller runs no test; patching it would only cost start-up time.
    return not hasattr(config, "workerinput") and getattr(config.option, "dist", "no") != "no"


def has_results(terminalreporter: pytest.TerminalReporter) -> bool:
    """Whether a teardown report carries a leak, a socket or pool usage to summarise.

    Without any, the summary has nothing to write, and a run that checked nothing (or no
    test) does not import it.
    """
    kinds = (LEAK_PROPERTY, SOCKET_PROPERTY)
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "teardown":
                continue
            if getattr(report, USAGE_ATTR, None):
                return True
            for name, _ in getattr(report, "user_properties", ()):
                if name in kinds:
                    return True
    return False


def parse_bool(value: object, name: str) -> bool:
    """Parse an ini boolean the way pytest does, with a message naming the valid values."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise pytest.UsageError(
        f"{name} = {value!r} is not a boolean; use one of: true, false (or 1/0, yes/no, on/off)"
    )


def parse_threshold(value: object, name: str) -> float:
    """Parse a share of a pool's capacity: a number in (0, 1], like 0.75."""
    try:
        threshold = float(str(value).strip())
    except ValueError:
        threshold = float("nan")
    if not 0 < threshold <= 1:  # also rejects nan
        raise pytest.UsageError(
            f"{name} = {value!r} is not a share of a pool's capacity; use a number greater "
            "than 0 and at most 1, like 0.75 (warn at 75%)"
        )
    return threshold


def resolve_settings(config: pytest.Config) -> Settings:
    """Read ``--leak-check``/``--no-leak-check`` and fall back to ini ``leak_check``.

    Likewise ``--leak-check-sockets`` and ini ``leak_check_sockets``.
    """
    option = config.getoption("leak_check", None)
    if option is None:
        option = parse_bool(config.getini("leak_check"), "leak_check")
    sockets = config.getoption("leak_check_sockets", None)
    if sockets is None:
        sockets = parse_bool(config.getini("leak_check_sockets"), "leak_check_sockets")
    threshold = config.getoption("leak_check_pool_threshold", None)
    if threshold is None:
        threshold = config.getini("leak_check_pool_threshold")
    pool_warnings = config.getoption("leak_check_pool_warnings", None)
    if pool_warnings is None:
        pool_warnings = parse_bool(
            config.getini("leak_check_pool_warnings"), "leak_check_pool_warnings"
        )
    return Settings(
        check_all=bool(option),
        check_sockets=bool(sockets),
        pool_threshold=parse_threshold(threshold, "leak_check_pool_threshold"),
        pool_warnings=bool(pool_warnings),
        library_packages=parse_packages(
            config.getini("leak_check_library_packages"), "leak_check_library_packages"
        ),
    )


def escalated_client_error(problem: str) -> pytest.UsageError:
    """The usage error for an ``IncompatibleClientWarning`` the user made an error.

    One line: which client, what its adapter expected, and how to run without tracking it.
    """
    match = re.match(r"pytest-connleak cannot track (\S+)", problem)
    client = match.group(1) if match else "this client"
    # The warning's "leaks through X will not be reported" is not what happens here.
    what = problem.partition(f"; leaks through {client} will not be reported")[0]
    return pytest.UsageError(
        f"{what} (IncompatibleClientWarning is an error in this run); to go on without "
        f"tracking {client}, let the warning through: "
        "-W default::pytest_connleak.IncompatibleClientWarning"
    )


def parse_packages(values: Sequence[object], name: str) -> tuple[str, ...]:
    """Check a list of importable package names (``my_sdk``, ``company.clients``)."""
    packages = []
    for value in values:
        text = str(value).strip()
        if not all(part.isidentifier() for part in text.split(".")):
            raise pytest.UsageError(
                f"{name}: {text!r} is not a package name; give importable names such as "
                "my_sdk or company.clients, separated by spaces or newlines"
            )
        packages.append(text)
    return tuple(packages)


def parse_allow_leaks(marker: pytest.Mark, nodeid: str) -> AllowLeaks:
    """Check the arguments of an ``allow_leaks`` marker; raise a UsageError if they are off."""
    where = f"@pytest.mark.allow_leaks on {nodeid}"
    unknown = sorted(set(marker.kwargs) - set(ALLOW_LEAKS_ARGUMENTS))
    if unknown:
        valid = ", ".join(f"{name}=" for name in ALLOW_LEAKS_ARGUMENTS)
        raise pytest.UsageError(
            f"{where}: unexpected argument {', '.join(map(repr, unknown))}; valid arguments: "
            f"{valid}"
        )
    if len(marker.args) > 1 or (marker.args and "reason" in marker.kwargs):
        raise pytest.UsageError(
            f"{where}: takes at most one positional argument, the reason "
            '(write allow_leaks(reason="..."))'
        )
    reason = marker.args[0] if marker.args else marker.kwargs.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise pytest.UsageError(f"{where}: reason must be a string, got {reason!r}")
    origins = _patterns(marker.kwargs, "origins", where, "http://localhost:*")
    sites = _patterns(marker.kwargs, "sites", where, "some_sdk.*")
    return AllowLeaks(reason=reason, origins=origins, sites=sites)


def _patterns(
    kwargs: Mapping[str, object], name: str, where: str, example: str
) -> tuple[str, ...] | None:
    if name not in kwargs:
        return None
    value = kwargs[name]
    # A bare string is a list of one-letter patterns to Python; say so instead.
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise pytest.UsageError(
            f"{where}: {name} must be a list of strings, got {value!r} (write {name}=[{example!r}])"
        )
    from .rules import PatternError, parse_rule  # only when a marker gives patterns

    kind = "origin" if name == "origins" else "site"
    for pattern in value:
        if not isinstance(pattern, str):
            raise pytest.UsageError(
                f"{where}: {name} must be a list of strings, got {pattern!r} in it"
            )
        try:
            parse_rule(pattern, kind)
        except PatternError as exc:
            raise pytest.UsageError(f"{where}: bad pattern in {name}: {exc}") from None
    return tuple(value)


def add_options(parser: pytest.Parser) -> pytest.OptionGroup:
    """The options and ini values of the check itself; returns their group."""
    group = parser.getgroup("connleak", "connection leak checks (pytest-connleak)")
    group.addoption(
        "--leak-check",
        action="store_true",
        dest="leak_check",
        default=None,
        help="fail every test that leaves a connection leased from a pool (urllib3/requests, "
        "httpx, aiohttp, SQLAlchemy, psycopg_pool, redis, asyncpg). Ini: leak_check.",
    )
    group.addoption(
        "--no-leak-check",
        action="store_false",
        dest="leak_check",
        help="turn off the check for every test, overriding the leak_check ini value "
        "(tests that request the leak_check fixture are still checked).",
    )
    parser.addini(
        "leak_check",
        type="string",
        default="false",
        help="check every test for leaked connections (true/false, default false).",
    )
    group.addoption(
        "--leak-check-pool-threshold",
        dest="leak_check_pool_threshold",
        default=None,
        metavar="SHARE",
        help="mark a pool in the pools table (and warn, with --leak-check-pool-warnings) "
        "when a checked test drives it to this share of its capacity, a number in (0, 1]. "
        "Ini: leak_check_pool_threshold.",
    )
    parser.addini(
        "leak_check_pool_threshold",
        type="string",
        default=str(DEFAULT_POOL_THRESHOLD),
        help="share of a pool's capacity, in (0, 1], at which a checked test's pool is "
        "marked in the pools table (and warned) (default 0.75).",
    )
    group.addoption(
        "--leak-check-pool-warnings",
        action="store_true",
        dest="leak_check_pool_warnings",
        default=None,
        help="emit a PoolHealthWarning for each checked test that drives a pool to the "
        "threshold or makes requests wait on a small pool (off by default: the pools "
        "table marks them either way). Ini: leak_check_pool_warnings.",
    )
    group.addoption(
        "--no-leak-check-pool-warnings",
        action="store_false",
        dest="leak_check_pool_warnings",
        help="no PoolHealthWarning, overriding the leak_check_pool_warnings ini value.",
    )
    parser.addini(
        "leak_check_pool_warnings",
        type="string",
        default="false",
        help="emit PoolHealthWarning for pool health (true/false, default false).",
    )
    parser.addini(
        "leak_check_library_packages",
        type="args",
        default=[],
        help="packages whose frames are library code, never a lease site (your own SDK "
        "wrappers); boto3, botocore, openai, anthropic, docker and other common SDKs are "
        "built in.",
    )
    return group


def add_socket_options(parser: pytest.Parser) -> None:
    """Register ``--leak-check-sockets`` and its ini twin in the plugin's option group.

    Here rather than with the socket check, which a run loads only when it is on.
    """
    group = parser.getgroup("connleak")
    group.addoption(
        "--leak-check-sockets",
        action="store_true",
        dest="leak_check_sockets",
        default=None,
        help="fail every test that leaves a TCP socket of this process open, through any "
        "library (http.client, raw sockets, drivers); needs psutil. Ini: leak_check_sockets.",
    )
    group.addoption(
        "--no-leak-check-sockets",
        action="store_false",
        dest="leak_check_sockets",
        help="turn off the socket check, overriding the leak_check_sockets ini value.",
    )
    parser.addini(
        "leak_check_sockets",
        type="string",
        default="false",
        help="check every test for TCP sockets left open (true/false, default false).",
    )
