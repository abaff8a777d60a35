"""The plugin's bookkeeping, made to fail on purpose (the docs' internal-error samples).

Every lease the ledger records raises, as a bug of ours would: the requests must still
succeed, and the run reports the failure once, after the tests.
"""

from pytest_connleak._core.ledger import ledger


def _broken_lease(rec, conn):
    raise RuntimeError("injected bookkeeping failure")


# Before the plugin installs its wrappers (at start-up, or when urllib3 is imported):
# they look the method up then.
ledger.lease = _broken_lease
