"""The ``pytest11`` entry point (``-p no:connleak``): wires the parts into pytest's hooks.

The verdict lives in :mod:`pytest_connleak._checker.verdict`, the options in
``_checker.settings`` and ``_checker.policy``, the mock upstreams' fixtures in
``_upstreams.fixtures``. pytest finds the fixtures below because this module names them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

# Only what every run needs: the options, the settings and the policy. pytest imports this
# module in every run; the checker, the ledger, the client adapters, the socket check and
# the summary load when a run (or a test) asks for them (start-up time, issue 12).
from ._checker import policy as _policy
from ._checker.internal import InternalErrors
from ._checker.policy import POLICY_KEY, configure_policy
from ._checker.settings import (
    CHECKER_KEY,
    REQUESTED_KEY,
    SETTINGS_KEY,
    add_options,
    add_socket_options,
    has_results,
    is_xdist_controller,
    parse_allow_leaks,
    resolve_settings,
)

if TYPE_CHECKING:
    from ._checker.verdict import LeakCheck, LeakChecker

# Fixtures: pytest collects them from this module's namespace.
from ._upstreams.fixtures import (  # noqa: F401
    _connleak_lb,
    lb_httpserver,
    load_balancer,
    response_shape,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = add_options(parser)
    _policy.add_options(parser, group)  # mode, ignore rules, baseline
    add_socket_options(parser)  # --leak-check-sockets


def activate(config: pytest.Config) -> LeakChecker:
    # The checker, the ledger and the client adapters load only in a run that checks.
    from ._checker.verdict import activate

    return activate(config)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "allow_leaks(reason=..., origins=[...], sites=[...]): do not fail this test "
        "(function, class or module) for connections it leaves leased, or only for those "
        "of these pool origins or lease sites; they are still counted in the summary.",
    )
    settings = resolve_settings(config)
    config.stash[SETTINGS_KEY] = settings
    InternalErrors.register(config)
    config.stash[POLICY_KEY] = configure_policy(config)
    if settings.check_all and not is_xdist_controller(config):
        activate(config)
    if settings.check_sockets:
        from ._checker import socket_check as _sockets

        psutil = _sockets.require_psutil()
        if not is_xdist_controller(config):
            # The pool instrumentation is what tells a pool's keep-alive from a leak.
            activate(config)
        # After the pool checker, so that its teardown wrapper is the outer one.
        config.pluginmanager.register(_sockets.SocketChecker(psutil), "connleak-sockets")


def pytest_report_header(config: pytest.Config) -> str | None:
    settings = config.stash.get(SETTINGS_KEY, None)
    checker = config.stash.get(CHECKER_KEY, None)
    if settings is None or not settings.check_all:
        return None
    tracked = ", ".join(checker.tracked()) if checker else "in the workers"
    return f"connleak: checking every test for leaked connections (tracking {tracked})"


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    uses_fixture = False
    for item in items:
        for marker in item.iter_markers("allow_leaks"):
            parse_allow_leaks(marker, item.nodeid)
        if "leak_check" in getattr(item, "fixturenames", ()):
            uses_fixture = True
    if uses_fixture and not is_xdist_controller(config):
        activate(config)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # On an xdist controller no checker is registered; the reports still carry the leaks.
    if terminalreporter.config.stash.get(CHECKER_KEY, None) is None and has_results(
        terminalreporter
    ):
        from ._checker.summary import write_summary

        write_summary(terminalreporter)


@pytest.fixture
def leak_check(request: pytest.FixtureRequest) -> LeakCheck:
    """Fail this test if it leaves a connection leased, even without --leak-check.

    Returns a :class:`pytest_connleak.LeakCheck` with ``leased()`` and
    ``assert_no_leaks()``. Make it autouse in a conftest.py to check a whole directory.
    """
    from ._checker.verdict import LeakCheck
    from ._core.ledger import ledger

    checker = activate(request.config)
    request.node.stash[REQUESTED_KEY] = True
    if ledger.owner is None:  # requested late, through getfixturevalue()
        ledger.owner = request.node.nodeid
    return LeakCheck(checker, request.node)
