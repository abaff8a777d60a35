"""One module per instrumented client library; each depends on the core only.

A module defines an :class:`~pytest_connleak._core.adapters.Adapter`; the registry line
in :data:`pytest_connleak._core.adapters.ADAPTERS` names it.
"""
