"""pytest-connleak: fail the test that leaks an HTTP connection.

The plugin itself lives in :mod:`pytest_connleak.plugin`; this package re-exports the
public names that tests and conftest files use.
"""

from __future__ import annotations

from ._api import LeakCheckMixin, no_leaks, pool_stats, track
from ._error_pages import error_page
from ._ledger import Lease, Site
from ._report import ConnectionLeakError
from ._shapes import RESPONSE_SHAPES, ResponseShape
from ._version import __version__
from ._warnings import (
    ConnleakWarning,
    IncompatibleClientWarning,
    LeakWarning,
    PoolHealthWarning,
)
from .plugin import LeakCheck

__all__ = [
    "RESPONSE_SHAPES",
    "ConnectionLeakError",
    "ConnleakWarning",
    "IncompatibleClientWarning",
    "Lease",
    "LeakCheck",
    "LeakCheckMixin",
    "LeakWarning",
    "PoolHealthWarning",
    "ResponseShape",
    "Site",
    "__version__",
    "error_page",
    "no_leaks",
    "pool_stats",
    "track",
]
