"""aiohttp: a lease is a ``Connection`` made by a connector, a return is ``_release``.

aiohttp 3.10+ makes every pooled connection it hands out as a ``Connection(connector, key,
protocol, loop)`` inside ``BaseConnector.connect`` (a CONNECT tunnel's subclass aside,
which is never pooled), and every way it gives one back (``response.release()``,
``close()``, leaving ``async with session.get(...)``, a dropped response's ``__del__``, and
its own release once a small body is fully buffered) runs ``BaseConnector._release(key,
protocol)``, also once the connector is closed (it then returns at once: a response
released after its session was closed *was* released). Both are synchronous: the request
path gains no coroutine. A request that has to wait for a free connection runs
``_wait_for_available_connection``, which is where waits are counted. Older versions are
tracked at ``connect`` (a lease) and ``_release_acquired`` (a return).

``ClientSession.close()`` empties the connector's acquired set without releasing: a
response still open then was never released, and its lease stays open (marked, so that
the report says the session was closed under it).

One connector serves every host; records are kept per (connector, origin).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from pytest_connleak._core.adapters import Adapter, Incompatible, Patcher, expect_signature
from pytest_connleak._core.ledger import Lease, Ledger, PoolRecord
from pytest_connleak._core.origins import OriginPools, format_origin

__all__ = ["AiohttpAdapter"]

HINT = "`await response.release()` or `async with session.get(...)`"
SESSION_CLOSED = (
    "the session was closed while this response was still open: closing it cut the "
    "socket, but the response was never released"
)

#: ``Lease.state`` of a lease whose connector was closed while the lease was open.
CLOSED_WITH_CONNECTOR = "client closed"


def origin_of(key: Any) -> str:
    """``scheme://host:port`` of an aiohttp ``ConnectionKey``."""
    return format_origin("https" if key.is_ssl else "http", str(key.host), key.port)


def _capacity(connector: Any) -> tuple[int | None, bool]:
    # 0 means "no limit" for both; a request over the limit waits for a free slot.
    limits = [n for n in (connector.limit, connector.limit_per_host) if n]
    return (min(limits) if limits else None), True


def _expect_leading(owner: Any, name: str, params: tuple[str, ...]) -> None:
    """Like :func:`expect_signature`, for methods whose trailing keywords vary by version."""
    func = owner.__dict__.get(name)
    if func is None:
        raise Incompatible(f"{owner.__module__}.{owner.__qualname__}.{name} does not exist")
    got = tuple(inspect.signature(func).parameters)
    if got[: len(params)] != params:
        raise Incompatible(
            f"{owner.__module__}.{owner.__qualname__}.{name}{got} does not take {params}"
        )


class AiohttpAdapter(Adapter):
    """Tracks connections acquired from an aiohttp ``BaseConnector`` (``ClientSession``)."""

    name = "aiohttp"
    module = "aiohttp"
    hint = HINT

    def advise(self, lease: Lease) -> str:
        if lease.state == CLOSED_WITH_CONNECTOR:
            return f"{SESSION_CLOSED}; {HINT}"
        return HINT

    def patch(self, ledger: Ledger, patcher: Patcher) -> None:
        from aiohttp import connector as connector_mod

        cls = connector_mod.BaseConnector
        expect_signature(cls, "connect", ("self", "req", "traces", "timeout"))
        expect_signature(cls, "_release_acquired", ("self", "key", "proto"))
        _expect_leading(cls, "_release", ("self", "key", "protocol"))
        _expect_leading(cls, "_close", ("self",))
        if "_wait_for_available_connection" in cls.__dict__:
            _expect_leading(cls, "_wait_for_available_connection", ("self", "key"))
        if not inspect.iscoroutinefunction(cls.__dict__["connect"]):
            raise Incompatible(f"{cls.__module__}.{cls.__qualname__}.connect is not async")

        pools = OriginPools(ledger, self.name)
        name = self.name
        failed = ledger.internal_error
        # aiohttp 3.10+ waits for a free slot in one method of its own, which runs only
        # when a request really has to wait: the request path then pays nothing for it.
        waits_apart = "_wait_for_available_connection" in cls.__dict__

        find = pools.find
        connection_cls = getattr(connector_mod, "Connection", None)
        # aiohttp 3.10+ (which waits apart) makes every Connection in connect() with
        # these parameters; older versions are tracked at connect() itself.
        direct = (
            waits_apart
            and isinstance(connection_cls, type)
            and "__init__" in connection_cls.__dict__
            and tuple(inspect.signature(connection_cls.__dict__["__init__"]).parameters)
            == ("self", "connector", "key", "protocol", "loop")
        )

        def record(connector: Any, key: Any) -> PoolRecord:
            origin_key = (key.host, key.port, key.is_ssl)
            # find() first: the closures below cost more than the look-up.
            return find(connector, origin_key) or pools.get(
                connector, origin_key, lambda: origin_of(key), lambda: _capacity(connector)
            )

        def note_wait(connector: Any, key: Any) -> None:
            try:
                ledger.note_wait(record(connector, key))
            except Exception as exc:
                failed(name, "counting a wait for a connection", exc)

        # The open lease of each leased connection, by id() of its protocol (what every
        # return names): the pool record is looked up once a request, at the lease, and the
        # return finds the lease itself. A protocol is leased by one Connection at a time
        # and stays alive while leased (the connector's acquired set, or the Connection,
        # holds it). An entry whose protocol died leased (its session closed under it)
        # stays until a new protocol reuses its id; the weak reference in the lease tells
        # such an entry from the live protocol's own. No lock: a set and a pop, each atomic.
        leases: dict[int, Lease] = {}
        pop_lease = leases.pop
        lease_of, release_lease = ledger.lease, ledger.release_lease
        entries = pools.entries.get

        def lease_for(connector: Any, key: Any, protocol: Any) -> None:
            entry = entries(id(connector))
            rec = entry.records.get((key.host, key.port, key.is_ssl)) if entry is not None else None
            if rec is None:
                rec = record(connector, key)
            leases[id(protocol)] = lease_of(rec, protocol)

        def give_back(protocol: Any) -> None:
            # The placeholders and connections released here before we saw them leased
            # have no entry.
            lease = pop_lease(id(protocol), None)
            if lease is not None:
                try:
                    ref = lease._conn_ref
                    if ref is None or ref() is protocol:
                        release_lease(lease)
                except Exception as exc:
                    failed(name, "recording a return (_release)", exc)

        def make_connect(original: Callable[..., Any]) -> Callable[..., Any]:
            async def connect(self: Any, req: Any, traces: Any, timeout: Any) -> Any:
                if not waits_apart:
                    # Before the original: look-ups that cannot fail; the origin only when
                    # every connection is out.
                    group = pools.group(self)
                    if group is not None and group[1] is not None and group[0] >= group[1]:
                        try:
                            key = req.connection_key
                        except Exception:
                            key = None
                        if key is not None:
                            note_wait(self, key)
                conn = await original(self, req, traces, timeout)
                try:
                    # The connection's own key: req.connection_key builds a new one.
                    key = getattr(conn, "_key", None) or req.connection_key
                    lease_for(self, key, conn.protocol)
                except Exception as exc:
                    failed(name, "recording a lease (connect)", exc)
                return conn

            return connect

        def make_wait(original: Callable[..., Any]) -> Callable[..., Any]:
            async def _wait_for_available_connection(
                self: Any, key: Any, *args: Any, **kwargs: Any
            ) -> Any:
                note_wait(self, key)
                return await original(self, key, *args, **kwargs)

            return _wait_for_available_connection

        def make_release_acquired(original: Callable[..., Any]) -> Callable[..., Any]:
            def _release_acquired(self: Any, key: Any, proto: Any) -> Any:
                try:
                    return original(self, key, proto)
                finally:
                    give_back(proto)

            return _release_acquired

        def make_release(original: Callable[..., Any]) -> Callable[..., Any]:
            def _release(self: Any, key: Any, protocol: Any, *a: Any, **kw: Any) -> Any:
                if self.closed:
                    # The original returns at once and never reaches _release_acquired.
                    give_back(protocol)
                return original(self, key, protocol, *a, **kw)

            return _release

        def make_close(original: Callable[..., Any]) -> Callable[..., Any]:
            def _close(self: Any, *args: Any, **kwargs: Any) -> Any:
                # The original forgets every acquired connection without releasing it.
                try:
                    for lease in pools.open_leases(self):
                        lease.state = CLOSED_WITH_CONNECTOR
                except Exception as exc:
                    failed(name, "noting a closed session", exc)
                return original(self, *args, **kwargs)

            return _close

        def make_init(original: Callable[..., Any]) -> Callable[..., Any]:
            def __init__(self: Any, connector: Any, key: Any, protocol: Any, loop: Any) -> None:
                original(self, connector, key, protocol, loop)
                # A CONNECT tunnel's connection (a subclass) is never pooled nor released.
                if type(self) is connection_cls:
                    try:
                        # lease_for(), written out: this runs on every request.
                        entry = entries(id(connector))
                        rec = (
                            entry.records.get((key.host, key.port, key.is_ssl))
                            if entry is not None
                            else None
                        )
                        if rec is None:
                            rec = record(connector, key)
                        leases[id(protocol)] = lease_of(rec, protocol)
                    except Exception as exc:
                        failed(name, "recording a lease (Connection)", exc)

            return __init__

        release_params = inspect.signature(cls.__dict__["_release"]).parameters
        should_close = release_params.get("should_close")
        release_exact = (
            tuple(release_params) == ("self", "key", "protocol", "should_close")
            and should_close is not None
            and should_close.kind is inspect.Parameter.KEYWORD_ONLY
            and should_close.default is False
        )

        def make_release_all(original: Callable[..., Any]) -> Callable[..., Any]:
            if release_exact:
                # The exact signature (3.10+), not *a/**kw: this runs on every request.
                def _release(
                    self: Any, key: Any, protocol: Any, *, should_close: bool = False
                ) -> Any:
                    try:
                        return original(self, key, protocol, should_close=should_close)
                    finally:
                        lease = pop_lease(id(protocol), None)
                        if lease is not None:
                            try:
                                ref = lease._conn_ref
                                if ref is None or ref() is protocol:
                                    release_lease(lease)
                            except Exception as exc:
                                failed(name, "recording a return (_release)", exc)

                return _release

            def _release_any(self: Any, key: Any, protocol: Any, *a: Any, **kw: Any) -> Any:
                try:
                    return original(self, key, protocol, *a, **kw)
                finally:
                    give_back(protocol)

            return _release_any

        if direct:
            # Every connection handed out is a Connection made in connect(), and every
            # release of one runs _release (on a closed connector too): two synchronous
            # wrappers, no coroutine added to the request path.
            patcher.wrap(connection_cls, "__init__", make_init)
            patcher.wrap(cls, "_release", make_release_all)
        else:
            patcher.wrap(cls, "connect", make_connect)
            patcher.wrap(cls, "_release_acquired", make_release_acquired)
            patcher.wrap(cls, "_release", make_release)
        if waits_apart:
            patcher.wrap(cls, "_wait_for_available_connection", make_wait)
        patcher.wrap(cls, "_close", make_close)
