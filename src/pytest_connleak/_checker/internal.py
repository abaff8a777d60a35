"""Internal errors: our bookkeeping failed, the client went on; said once, at the end.

The client wrappers never let an exception of ours reach the code under test: they record
it in the ledger (:meth:`Ledger.internal_error`) and the library's own behaviour goes on.
This module reports those records once per distinct failure at the end of the run: a line
in the terminal summary and one :class:`InternalErrorWarning` each, never a test failure.
Under pytest-xdist each worker hands its records to the controller when it finishes.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_connleak._core.ledger import Ledger

__all__ = ["ISSUES_URL", "InternalErrors", "describe"]

ISSUES_URL = "https://github.com/pytest-connleak/pytest-connleak/issues"
_WORKER_KEY = "connleak_internal_errors"
_LEDGER_MODULE = "pytest_connleak._core.ledger"


def describe(client: str, what: str, error: str) -> str:
    """The one-line text of an internal error, as the summary and the warning say it."""
    return (
        f"{client}: {what} failed ({error}); {client} went on unchanged, but its leaks "
        f"may be missed in this run; please report this line at {ISSUES_URL}"
    )


def _process_ledger() -> Ledger | None:
    """The process's ledger if something imported it, without importing it."""
    module = sys.modules.get(_LEDGER_MODULE)
    return None if module is None else module.ledger


class InternalErrors:
    """The pytest hooks that report the ledger's internal errors at the end of the run."""

    def __init__(self, ledger: Ledger | None = None) -> None:
        # Without a ledger given, the process's own, which a run that checks nothing
        # never imports (start-up time): if it is not imported yet, it has no errors yet.
        if ledger is None:
            ledger = _process_ledger()
        self.ledger = ledger
        # The ledger is process-wide: an earlier run in this process (pytester's inline
        # runs) reported its own.
        self._start = 0 if ledger is None else len(ledger.internal_errors)
        self._from_workers: list[str] = []

    def lines(self) -> list[str]:
        """Every distinct internal error of this process and of the xdist workers."""
        ledger = self.ledger if self.ledger is not None else _process_ledger()
        errors = ledger.internal_errors[self._start :] if ledger is not None else []
        mine = [describe(*error) for error in errors]
        return list(dict.fromkeys([*mine, *self._from_workers]))

    @classmethod
    def register(cls, config: pytest.Config, ledger: Ledger | None = None) -> None:
        """Register the hooks for this run; unregistered when the run ends."""
        plugin = cls(ledger)
        config.pluginmanager.register(plugin, "connleak-internal-errors")

        def unregister() -> None:
            if config.pluginmanager.is_registered(plugin):
                config.pluginmanager.unregister(plugin)

        config.add_cleanup(unregister)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        workeroutput = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:  # an xdist worker: the controller reports them
            workeroutput[_WORKER_KEY] = self.lines()

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: object, error: object) -> None:
        output = getattr(node, "workeroutput", None) or {}
        self._from_workers += list(output.get(_WORKER_KEY, ()))

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        lines = self.lines()
        if not lines:
            return
        from pytest_connleak._core.warnings import InternalErrorWarning

        from .summary import write_internal_errors

        write_internal_errors(terminalreporter, lines)
        for line in lines:
            # Escalated by a filter, it raises: the line above says it all the same, and
            # an internal error of ours must not fail the run.
            with contextlib.suppress(InternalErrorWarning):
                warnings.warn(InternalErrorWarning(line), stacklevel=1)
