"""aiohttp: a lease is ``BaseConnector.connect``, a return is ``_release_acquired``.

Every way aiohttp gives a connection back (``response.release()``, ``close()``, leaving
``async with session.get(...)``, and its own release once a small body is fully buffered)
runs ``BaseConnector._release(key, protocol)``, which calls
``_release_acquired(key, protocol)``. Two exceptions, both measured on aiohttp 3.14:

- ``ClientSession.close()`` empties the connector's acquired set without calling
  ``_release_acquired``: a response still open then was never released, and its lease
  stays open (marked, so that the report says the session was closed under it);
- once the connector is closed, ``_release`` returns before ``_release_acquired``: a
  response released after its session was closed *was* released, so ``_release`` on a
  closed connector gives the lease back too.

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

        def record(connector: Any, key: Any) -> PoolRecord:
            origin_key = (key.host, key.port, key.is_ssl)
            return pools.get(
                connector, origin_key, lambda: origin_of(key), lambda: _capacity(connector)
            )

        def note_wait(connector: Any, key: Any) -> None:
            try:
                ledger.note_wait(record(connector, key))
            except Exception as exc:
                failed(name, "counting a wait for a connection", exc)

        def give_back(connector: Any, key: Any, proto: Any) -> None:
            # find(), not get(): the placeholders and connections released here before we
            # saw them leased need no record.
            try:
                rec = pools.find(connector, (key.host, key.port, key.is_ssl))
                if rec is not None:
                    ledger.release(rec, proto)
            except Exception as exc:
                failed(name, "recording a return (_release_acquired)", exc)

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
                    ledger.lease(record(self, req.connection_key), conn.protocol)
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
                    give_back(self, key, proto)

            return _release_acquired

        def make_release(original: Callable[..., Any]) -> Callable[..., Any]:
            def _release(self: Any, key: Any, protocol: Any, *a: Any, **kw: Any) -> Any:
                if self.closed:
                    # The original returns at once and never reaches _release_acquired.
                    give_back(self, key, protocol)
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

        patcher.wrap(cls, "connect", make_connect)
        if waits_apart:
            patcher.wrap(cls, "_wait_for_available_connection", make_wait)
        patcher.wrap(cls, "_release_acquired", make_release_acquired)
        patcher.wrap(cls, "_release", make_release)
        patcher.wrap(cls, "_close", make_close)
