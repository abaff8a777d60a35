"""Pool metrics for ``prometheus_client``: ``REGISTRY.register(PoolCollector())``.

Needs prometheus_client, the extra ``prometheus`` (``pip install prometheus_client``). The
collector reports the pools that :func:`pytest_connleak.track` sees, so call ``track()`` at
start-up too. The logic lives in the runtime part; this module is its public name.
"""

from __future__ import annotations

from ._runtime.metrics import PoolCollector

__all__ = ["PoolCollector"]
