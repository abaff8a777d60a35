"""Tools for code outside pytest: ``no_leaks()``, ``LeakCheckMixin``, ``track()``,
``pool_stats()`` and ``connleak watch``. They use the core, never the pytest layer.
"""
