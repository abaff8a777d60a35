"""Warning classes, all under :class:`ConnleakWarning` so one filter can escalate them."""

from __future__ import annotations

import pytest

__all__ = [
    "ConnleakWarning",
    "IncompatibleClientWarning",
    "InternalErrorWarning",
    "LeakWarning",
    "PoolHealthWarning",
]


class ConnleakWarning(pytest.PytestWarning):
    """Base class of every warning pytest-connleak issues.

    Turn all of them into errors with ``filterwarnings = error::pytest_connleak.ConnleakWarning``.
    """

    __module__ = "pytest_connleak"


class IncompatibleClientWarning(ConnleakWarning):
    """An installed HTTP client's internals are not what its adapter expects.

    That client is not tracked for the rest of the run; the others still are.
    """

    __module__ = "pytest_connleak"


class LeakWarning(ConnleakWarning):
    """A connection leak reported as a warning instead of an error (warn mode)."""

    __module__ = "pytest_connleak"


class PoolHealthWarning(ConnleakWarning):
    """A pool was driven close to its capacity, or requests waited for a connection."""

    __module__ = "pytest_connleak"


class InternalErrorWarning(ConnleakWarning):
    """pytest-connleak's own bookkeeping failed; the HTTP client went on unchanged.

    Issued once per distinct failure at the end of the run, naming the client and what
    failed. Leaks through that client may have gone unreported; please report it.
    """

    __module__ = "pytest_connleak"
