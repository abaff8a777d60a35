"""urllib3 (and so requests): a lease is ``_get_conn``, a return is ``_put_conn``.

Every release path of urllib3 1.26 and 2.x goes through ``_put_conn``, including the
error path, which gives the slot back as ``_put_conn(None)`` after discarding a broken
connection; the ledger balances slots, not connection objects, for that reason.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from pytest_connleak._core.adapters import Adapter, Patcher, expect_signature
from pytest_connleak._core.ledger import Lease, Ledger
from pytest_connleak._core.origins import format_origin

REQUESTS_HINT = (
    "close the response (response.close(), or use it as a context manager) or read its body"
)
URLLIB3_HINT = (
    "read the body to the end or call response.release_conn() "
    "(or use preload_content=True, the default)"
)
CLOSED_NOT_RELEASED = (
    "the response was closed but never released: urllib3's HTTPResponse.close() (and a "
    "`with` around a preload_content=False response whose body was not read) closes the "
    "socket but never returns the connection to the pool; call response.release_conn() "
    "after close(), or read the body to the end"
)
CLOSED_OR_DROPPED = (
    "the response was closed or dropped without being released: urllib3's "
    "HTTPResponse.close() (which `with` and garbage collection call) closes the socket but "
    "never returns the connection to the pool; read the body to the end or call "
    "response.release_conn()"
)
COLLECTED = (
    "the response was dropped without being closed; garbage collection closed its socket, "
    "but the pool never got the connection back"
)


#: ``Lease.state`` of a response closed by garbage collection, not by anyone's close().
DROPPED = "dropped"


def origin_of(pool: Any) -> str:
    """``scheme://host:port`` of a urllib3 connection pool."""
    scheme = getattr(pool, "scheme", None) or "http"
    return format_origin(str(scheme), str(getattr(pool, "host", "?")), _port(pool))


def _port(pool: Any) -> int | None:
    port = getattr(pool, "port", None)
    return port if isinstance(port, int) else None


def _capacity(pool: Any) -> tuple[int | None, bool]:
    queue = getattr(pool, "pool", None)
    size = getattr(queue, "maxsize", None)
    return (size if isinstance(size, int) and size > 0 else None), bool(
        getattr(pool, "block", False)
    )


class Urllib3Adapter(Adapter):
    """Tracks ``urllib3.connectionpool.HTTPConnectionPool`` and everything built on it."""

    name = "urllib3"
    module = "urllib3"
    hint = URLLIB3_HINT

    def advise(self, lease: Lease) -> str:
        if lease.site.library == "requests":
            return f"{COLLECTED}; {REQUESTS_HINT}" if lease.holder_collected else REQUESTS_HINT
        if lease.state == "closed":
            return CLOSED_OR_DROPPED if lease.holder_collected else CLOSED_NOT_RELEASED
        return f"{COLLECTED}; {URLLIB3_HINT}" if lease.holder_collected else URLLIB3_HINT

    def patch(self, ledger: Ledger, patcher: Patcher) -> None:
        from urllib3 import connectionpool, response

        cls = connectionpool.HTTPConnectionPool
        expect_signature(cls, "_get_conn", ("self", "timeout"))
        expect_signature(cls, "_put_conn", ("self", "conn"))
        expect_signature(response.HTTPResponse, "close", ("self",))

        record = ledger.pool_record
        known = ledger.known_record
        # known_record() inlined on the request path: the ledger never rebinds _pools.
        known_pool = ledger._pools.get
        lease, release = ledger.lease, ledger.release
        failed = ledger.internal_error
        name = self.name
        get_timeout = _default(cls._get_conn, "timeout")

        def make_get(original: Callable[..., Any]) -> Callable[..., Any]:
            # The exact signature, not *args/**kwargs: this runs on every request.
            def _get_conn(self: Any, timeout: Any = get_timeout) -> Any:
                # Before the original only what cannot fail: a dict look-up and a compare.
                rec = known_pool(id(self))
                if rec is not None and rec.leased >= rec.wait_at:
                    try:
                        ledger.note_wait(rec)
                    except Exception as exc:
                        failed(name, "counting a wait for a connection", exc)
                conn = original(self, timeout)
                try:
                    if rec is None:
                        rec = record(self, name, lambda: origin_of(self), lambda: _capacity(self))
                    lease(rec, conn)
                except Exception as exc:
                    failed(name, "recording a lease (_get_conn)", exc)
                return conn

            return _get_conn

        def make_put(original: Callable[..., Any]) -> Callable[..., Any]:
            def _put_conn(self: Any, conn: Any) -> Any:
                try:
                    return original(self, conn)
                finally:
                    # After the original: FullPoolError still returns the slot to us.
                    # A pool never seen leasing (it leased before we were installed)
                    # has nothing to balance, and gets no record from a late return.
                    rec = known_pool(id(self))
                    if rec is not None:
                        try:
                            release(rec, conn)
                        except Exception as exc:
                            failed(name, "recording a return (_put_conn)", exc)

            return _put_conn

        def make_close(original: Callable[..., Any]) -> Callable[..., Any]:
            def close(self: Any) -> Any:
                result = original(self)
                # urllib3 closes the socket here but keeps the slot until release_conn();
                # remember it, so the report can say exactly that.
                try:
                    conn = getattr(self, "_connection", None)
                    pool = getattr(self, "_pool", None)
                    rec = known(pool) if conn is not None and pool is not None else None
                    if rec is not None:
                        # IOBase's finalizer sets _finalizing before it calls close(): then
                        # nobody closed the response, garbage collection did.
                        dropped = getattr(self, "_finalizing", False)
                        ledger.mark_closed(rec, conn, self, DROPPED if dropped else "closed")
                except Exception as exc:
                    failed(name, "noting a closed response (HTTPResponse.close)", exc)
                return result

            return close

        patcher.wrap(cls, "_get_conn", make_get)
        patcher.wrap(cls, "_put_conn", make_put)
        patcher.wrap(response.HTTPResponse, "close", make_close)


def _default(func: Any, param: str) -> Any:
    """The default value of *param* of *func* (the wrapper repeats it)."""
    default = inspect.signature(func).parameters[param].default
    return None if default is inspect.Parameter.empty else default
