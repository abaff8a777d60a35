"""httpcore and httpcore2 (httpx, httpx2), sync and async: a lease is a response handed out.

``ConnectionPool.handle_request`` (``AsyncConnectionPool.handle_async_request``) returns a
response whose stream is a ``PoolByteStream`` (``ConnectionPoolByteStream`` before
httpcore 1.0.3); the pool counts the request as active until that stream's ``close()``
(``aclose()``) runs, which is what ``Response.close()``, reading the body to the end and
leaving ``client.stream(...)`` do. Nothing else gives the slot back: a dropped response is
collected with its stream unclosed and the pool keeps the connection ACTIVE until the
client is closed, so the lease stays open too.

One httpcore pool serves every origin; records are kept per (pool, origin) so that a
report names the origin the user asked for. httpx's ``MockTransport`` (respx,
pytest-httpx) never reaches a pool and is never seen here.

httpcore2 (under httpx2, which the OpenAI and Anthropic SDKs use) keeps httpcore's pool,
stream and method names; one adapter class serves both, parameterised by the package name,
and each checks the internals of its own package (so a difference skips only that one).
"""

from __future__ import annotations

import importlib
import sys
import weakref
from collections.abc import Callable
from typing import Any

from pytest_connleak._core.adapters import Adapter, Incompatible, Patcher, expect_signature
from pytest_connleak._core.ledger import Lease, Ledger
from pytest_connleak._core.origins import OriginPools, format_origin

__all__ = ["Httpcore2Adapter", "HttpcoreAdapter"]

SYNC_HINT = (
    "close the response (response.close(), or use `with client.stream(...)`) or read its body"
)
ASYNC_HINT = "use `async with client.stream(...)` or `await response.aclose()`"
CLIENT_CLOSED = (
    "the client was closed while this response was still open: closing it cut the socket, "
    "but the response was never closed"
)

#: ``Lease.state`` of a lease whose pool was closed while the lease was open.
CLOSED_WITH_POOL = "client closed"

# httpcore 1.0.3 renamed the stream class; look for the feature, not a version number.
_STREAM_CLASSES = ("PoolByteStream", "ConnectionPoolByteStream")


def origin_of(request: Any) -> str:
    """``scheme://host:port`` of an httpcore request."""
    url = request.url
    return _format(url.scheme, url.host, url.port)


def _format(scheme: bytes | str, host: bytes | str, port: int | None) -> str:
    # httpcore's Origin fills in the default port the same way; format_origin does it for
    # the schemes it knows, without URL.origin's KeyError for the schemes it does not.
    return format_origin(_text(scheme), _text(host), port)


def _text(value: bytes | str) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else value


def _capacity(pool: Any) -> tuple[int | None, bool]:
    size = getattr(pool, "_max_connections", None)
    # httpcore stores "no limit" as sys.maxsize; a request over capacity waits (pool timeout).
    ok = isinstance(size, int) and 0 < size < sys.maxsize
    return (size if ok else None), True


def _stream_class(module: Any, method: str) -> type:
    for name in _STREAM_CLASSES:
        cls = getattr(module, name, None)
        if isinstance(cls, type):
            expect_signature(cls, method, ("self",))
            return cls
    raise Incompatible(f"{module.__name__} has none of {', '.join(_STREAM_CLASSES)}")


class HttpcoreAdapter(Adapter):
    """Tracks httpcore's ``ConnectionPool`` and ``AsyncConnectionPool`` (httpx's transports)."""

    name = "httpcore"
    module = "httpcore"
    hint = SYNC_HINT

    def __init__(self) -> None:
        self._async_pools: OriginPools | None = None

    def advise(self, lease: Lease) -> str:
        is_async = self._async_pools is not None and self._async_pools.owns(lease.pool)
        hint = ASYNC_HINT if is_async else SYNC_HINT
        if lease.state == CLOSED_WITH_POOL:
            return f"{CLIENT_CLOSED}; {hint}"
        return hint

    def patch(self, ledger: Ledger, patcher: Patcher) -> None:
        async_mod = importlib.import_module(f"{self.module}._async.connection_pool")
        sync_mod = importlib.import_module(f"{self.module}._sync.connection_pool")

        sync_pool = sync_mod.ConnectionPool
        async_pool = async_mod.AsyncConnectionPool
        expect_signature(sync_pool, "handle_request", ("self", "request"))
        expect_signature(async_pool, "handle_async_request", ("self", "request"))
        expect_signature(sync_pool, "close", ("self",))
        expect_signature(async_pool, "aclose", ("self",))
        sync_stream = _stream_class(sync_mod, "close")
        async_stream = _stream_class(async_mod, "aclose")

        sync_pools = OriginPools(ledger, self.name)
        async_pools = self._async_pools = OriginPools(ledger, self.name)
        # The open lease of each response stream, by id(stream); the lease holds a weak
        # reference to its stream (a dropped response is not kept alive by us: its lease
        # stays open in the ledger, as the pool still counts it). Not keyed by a weak
        # reference: the cyclic GC clears weak references before it runs finalizers, and a
        # stream in a cycle (an SDK's stream object and its generator) is closed by such a
        # finalizer, after its entry would be gone. An entry whose stream died unclosed
        # stays until its id is reused by a new stream, which replaces it. No lock: a set
        # and a pop, each atomic (a finalizer may close a stream in the middle of our code).
        leases: dict[int, Lease] = {}
        pop_lease = leases.pop
        name = self.name
        failed = ledger.internal_error
        lease_of, release_lease = ledger.lease, ledger.release_lease
        ref = weakref.ref

        def note_wait(pools: OriginPools, pool: Any, request: Any) -> None:
            # Only when every connection is out (the rare case): the origin, whose failure
            # only skips the note (an invalid URL fails in the original, with the library's
            # own error).
            try:
                url = request.url
                key = (url.scheme, url.host, url.port)
                rec = pools.get(pool, key, lambda: _format(*key), lambda: _capacity(pool))
            except Exception:
                return
            try:
                ledger.note_wait(rec)
            except Exception as exc:
                failed(name, "counting a wait for a connection", exc)

        def first_record(pools: OriginPools, pool: Any, key: Any) -> Any:
            # The first request of an origin through this pool: make its record.
            return pools.get(pool, key, lambda: _format(*key), lambda: _capacity(pool))

        # The request path (handle_request, then the stream's close) is written out in full
        # in each wrapper, with no helper calls: one look-up of the pool's entry (by id)
        # serves both the wait check and the lease, and the lease is found again by the id
        # of its stream.

        def make_handle(original: Callable[..., Any]) -> Callable[..., Any]:
            entries = sync_pools.entries.get

            def handle_request(self: Any, request: Any) -> Any:
                # Before the original only look-ups and compares, which cannot fail.
                entry = entries(id(self))
                if entry is not None:
                    group = entry.group
                    if group[1] is not None and group[0] >= group[1]:
                        note_wait(sync_pools, self, request)
                response = original(self, request)
                try:
                    stream = getattr(response, "stream", None)
                    # Only a stream we can see close is a lease we can see returned.
                    if isinstance(stream, sync_stream):
                        url = request.url
                        key = (url.scheme, url.host, url.port)
                        rec = entry.records.get(key) if entry is not None else None
                        if rec is None:
                            rec = first_record(sync_pools, self, key)
                        lease = lease_of(rec, None)
                        lease._holder = ref(stream)
                        leases[id(stream)] = lease
                except Exception as exc:
                    failed(name, "recording a lease (handle_request)", exc)
                return response

            return handle_request

        def make_async_handle(original: Callable[..., Any]) -> Callable[..., Any]:
            entries = async_pools.entries.get

            async def handle_async_request(self: Any, request: Any) -> Any:
                entry = entries(id(self))
                if entry is not None:
                    group = entry.group
                    if group[1] is not None and group[0] >= group[1]:
                        note_wait(async_pools, self, request)
                response = await original(self, request)
                try:
                    stream = getattr(response, "stream", None)
                    if isinstance(stream, async_stream):
                        url = request.url
                        key = (url.scheme, url.host, url.port)
                        rec = entry.records.get(key) if entry is not None else None
                        if rec is None:
                            rec = first_record(async_pools, self, key)
                        lease = lease_of(rec, None)
                        lease._holder = ref(stream)
                        leases[id(stream)] = lease
                except Exception as exc:
                    failed(name, "recording a lease (handle_async_request)", exc)
                return response

            return handle_async_request

        # The stream's close, after the original only: a close() that failed part-way may
        # have left the request counted by the pool, and then the lease is still out. The
        # entry found by id(self) is this stream's own, or one left by a stream that died
        # unclosed and whose id this one reuses (being alive, this one is not that one):
        # ids are unique among live objects. A stream finalized by the cyclic GC closes
        # here too, its weak reference already cleared: it is still found by its id.

        def make_close(original: Callable[..., Any]) -> Callable[..., Any]:
            def close(self: Any) -> Any:
                result = original(self)
                lease = pop_lease(id(self), None)
                if lease is not None:
                    try:
                        release_lease(lease)
                    except Exception as exc:
                        failed(name, "recording a return (stream close)", exc)
                return result

            return close

        def make_aclose(original: Callable[..., Any]) -> Callable[..., Any]:
            async def aclose(self: Any) -> Any:
                result = await original(self)
                lease = pop_lease(id(self), None)
                if lease is not None:
                    try:
                        release_lease(lease)
                    except Exception as exc:
                        failed(name, "recording a return (stream close)", exc)
                return result

            return aclose

        def mark_closed(pools: OriginPools, pool: Any) -> None:
            # httpcore's close() drops the connections but not the requests of responses
            # still open: those leases stay open, and the report says why.
            try:
                for lease in pools.open_leases(pool):
                    lease.state = CLOSED_WITH_POOL
            except Exception as exc:
                failed(name, "noting a closed pool", exc)

        def make_pool_close(original: Callable[..., Any]) -> Callable[..., Any]:
            def close(self: Any) -> Any:
                try:
                    return original(self)
                finally:
                    mark_closed(sync_pools, self)

            return close

        def make_pool_aclose(original: Callable[..., Any]) -> Callable[..., Any]:
            async def aclose(self: Any) -> Any:
                try:
                    return await original(self)
                finally:
                    mark_closed(async_pools, self)

            return aclose

        patcher.wrap(sync_pool, "handle_request", make_handle)
        patcher.wrap(async_pool, "handle_async_request", make_async_handle)
        patcher.wrap(sync_stream, "close", make_close)
        patcher.wrap(async_stream, "aclose", make_aclose)
        patcher.wrap(sync_pool, "close", make_pool_close)
        patcher.wrap(async_pool, "aclose", make_pool_aclose)


class Httpcore2Adapter(HttpcoreAdapter):
    """Tracks httpcore2's pools (httpx2's transports): httpcore's internals, renamed package."""

    name = "httpcore2"
    module = "httpcore2"
