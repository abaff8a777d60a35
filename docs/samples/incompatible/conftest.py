"""urllib3 as a future release might change it: _get_conn takes a new argument.

Imported before the plugin patches the clients, so urllib3 is found incompatible at
start-up (the docs' IncompatibleClientWarning samples).
"""

from urllib3.connectionpool import HTTPConnectionPool

_original = HTTPConnectionPool._get_conn


def _get_conn(self, timeout=None, priority=0):
    return _original(self, timeout)


HTTPConnectionPool._get_conn = _get_conn
