"""pytest-connleak: fail the test that leaks an HTTP connection.

The plugin itself lives in :mod:`pytest_connleak.plugin`; this package re-exports the
public names that tests and conftest files use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._ledger import Lease, Site
from ._report import ConnectionLeakError
from ._version import __version__
from ._warnings import (
    ConnleakWarning,
    IncompatibleClientWarning,
    LeakWarning,
    PoolHealthWarning,
)
from .plugin import LeakCheck

if TYPE_CHECKING:
    from ._api import LeakCheckMixin, no_leaks, pool_stats, track
    from ._error_pages import error_page
    from ._shapes import RESPONSE_SHAPES, ResponseShape

# Imported on first use: pytest imports this package in every run, and most runs need
# neither the plain-Python API nor the mock upstreams (werkzeug pages and shapes).
_LAZY = {
    "LeakCheckMixin": "._api",
    "no_leaks": "._api",
    "pool_stats": "._api",
    "track": "._api",
    "error_page": "._error_pages",
    "RESPONSE_SHAPES": "._shapes",
    "ResponseShape": "._shapes",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

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
