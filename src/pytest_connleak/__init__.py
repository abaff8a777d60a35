"""pytest-connleak: fail the test that leaks a pooled connection.

The plugin itself lives in :mod:`pytest_connleak.plugin`; this package re-exports the
public names that tests and conftest files use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._checker.verdict import LeakCheck
    from ._core.ledger import Lease, Site
    from ._core.report import ConnectionLeakError
    from ._core.warnings import (
        ConnleakWarning,
        IncompatibleClientWarning,
        InternalErrorWarning,
        LeakWarning,
        PoolHealthWarning,
    )
    from ._runtime.alarm import LeakAlarm
    from ._runtime.api import LeakCheckMixin, no_leaks, pool_stats, track
    from ._upstreams.error_pages import error_page
    from ._upstreams.shapes import RESPONSE_SHAPES, ResponseShape
    from ._version import __version__

# Imported on first use: pytest imports this package in every run, and most runs need
# neither the plain-Python API nor the mock upstreams (werkzeug pages and shapes), and a
# run that checks nothing needs no checker, no ledger and no warning classes.
_LAZY = {
    "ConnectionLeakError": "._core.report",
    "ConnleakWarning": "._core.warnings",
    "IncompatibleClientWarning": "._core.warnings",
    "InternalErrorWarning": "._core.warnings",
    "LeakWarning": "._core.warnings",
    "PoolHealthWarning": "._core.warnings",
    "Lease": "._core.ledger",
    "Site": "._core.ledger",
    "LeakCheck": "._checker.verdict",
    "LeakAlarm": "._runtime.alarm",
    "LeakCheckMixin": "._runtime.api",
    "no_leaks": "._runtime.api",
    "pool_stats": "._runtime.api",
    "track": "._runtime.api",
    "error_page": "._upstreams.error_pages",
    "RESPONSE_SHAPES": "._upstreams.shapes",
    "ResponseShape": "._upstreams.shapes",
    "__version__": "._version",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    if module.startswith("._upstreams."):
        from ._upstreams.extra import require

        require(f"pytest_connleak.{name}", ("werkzeug",))
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # once: later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "RESPONSE_SHAPES",
    "ConnectionLeakError",
    "ConnleakWarning",
    "IncompatibleClientWarning",
    "InternalErrorWarning",
    "Lease",
    "LeakAlarm",
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
