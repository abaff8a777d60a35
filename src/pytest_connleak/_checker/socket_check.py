"""The socket check: TCP sockets a test opened and left open, whatever made them.

Not every leak goes through a pool we instrument (``http.client``, raw sockets, database
drivers), so ``--leak-check-sockets`` looks at the process's TCP sockets instead.

How a leaked socket is told apart from the others, cheaply:

1. **Only when the descriptor count grew.** ``num_fds()`` costs ~14 µs, listing sockets
   ~70 µs with none and ~15 ms with 100. The count is taken before the test's setup and
   after its teardown; the sockets are listed only when it grew. The listing is kept as
   the *baseline*, and refreshed before a test only when the count moved since. (A test
   that closes as many descriptors as it leaks is therefore not seen: a cheap guard, not
   an audit.)
2. **Only sockets new since the baseline**, keyed by ``(fd, local, remote)``. Sockets
   opened while a module-, class- or session-scoped fixture is set up are added to the
   baseline: they belong to the fixture, and outlive the test by design.
3. **Never a server's.** A listening socket, and any socket whose local address is one
   this process listens on (the connections an in-process server accepted, such as
   pytest-httpserver's), is skipped.
4. **Never a pool's keep-alive.** A socket whose descriptor is that of an idle connection
   kept by a pool the ledger tracks (a session-scoped ``requests.Session``) is skipped;
   that is why this check installs the pool instrumentation too.
5. **One leak, one report.** Each lease the pool check judged for the same test (failed,
   warned or excused) accounts for one new socket to that lease's origin, which is left
   out: the pool report already names the line that leased it. (By peer, not by descriptor: after
   a ``Connection: close`` response, urllib3's connection no longer holds the socket;
   the unread response does.)
"""

from __future__ import annotations

import ipaddress
import warnings
from collections.abc import Callable, Generator, Iterable
from typing import Any

import pytest

from pytest_connleak._core.ledger import Lease, ledger
from pytest_connleak._core.pools import idle_connections, live_pools, socket_fd
from pytest_connleak._core.report import ConnectionLeakError
from pytest_connleak._core.sockets import PSUTIL_MISSING, SocketInfo, tcp_sockets
from pytest_connleak._core.warnings import LeakWarning

from .policy import JUDGED_KEY, POLICY_KEY, WARNED
from .settings import SOCKET_PROPERTY

__all__ = ["SocketChecker", "require_psutil"]

SOCKET_HINT = (
    "close the socket, or the client that owns it (conn.close(), sock.close(), or a "
    "`with` block); the socket check cannot tell where it was opened"
)

_START_KEY = pytest.StashKey[int]()


def require_psutil() -> Any:
    """Import psutil, or raise the :class:`pytest.UsageError` that says how to get it."""
    try:
        import psutil
    except ImportError:
        raise pytest.UsageError(f"--leak-check-sockets {PSUTIL_MISSING}") from None
    return psutil


def _served(sockets: Iterable[SocketInfo]) -> Callable[[SocketInfo], bool]:
    """A predicate: is this socket a listening one, or one accepted by a listening one?"""
    listening: dict[int, set[str]] = {}
    for sock in sockets:
        if sock.state == "LISTEN":
            listening.setdefault(sock.local_addr[1], set()).add(sock.local_addr[0])

    def served(sock: SocketInfo) -> bool:
        if sock.state == "LISTEN":
            return True
        hosts = listening.get(sock.local_addr[1], set())
        # A server bound to the wildcard address accepts on every local address.
        return bool(hosts & {sock.local_addr[0], "0.0.0.0", "::"})

    return served


def idle_pooled_fds() -> set[int]:
    """Descriptors of the connections that tracked pools keep idle for reuse."""
    fds: set[int] = set()
    for _rec, pool in live_pools(ledger):
        for conn in (idle_connections(pool) if pool is not None else None) or ():
            if (fd := socket_fd(conn)) is not None:
                fds.add(fd)
    return fds


def _origin_peer(origin: str) -> tuple[str | None, int]:
    """``(ip, port)`` of ``scheme://host:port``; ip is None when host is a name."""
    # Database origins carry a user and a database: user@host:port/dbname.
    hostport = origin.partition("://")[2].partition("/")[0].rpartition("@")[2]
    host, _, port = hostport.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None, int(port) if port.isdigit() else -1
    return host, int(port) if port.isdigit() else -1


def _same_ip(a: str, b: str) -> bool:
    # psutil lists an IPv4 peer of a dual-stack socket as ::ffff:a.b.c.d
    ia, ib = ipaddress.ip_address(a), ipaddress.ip_address(b)
    ia = getattr(ia, "ipv4_mapped", None) or ia
    ib = getattr(ib, "ipv4_mapped", None) or ib
    return ia == ib


def without_reported(sockets: list[SocketInfo], leases: Iterable[Lease]) -> list[SocketInfo]:
    """*sockets* minus one socket to each reported lease's origin (see the module doc)."""
    left = list(sockets)
    for lease in leases:
        ip, port = _origin_peer(lease.origin)
        for i, sock in enumerate(left):
            peer = sock.remote_addr
            if peer is not None and peer[1] == port and (ip is None or _same_ip(peer[0], ip)):
                del left[i]
                break
    return left


def format_socket_leaks(sockets: list[SocketInfo], culprit: str, when: str) -> str:
    """The socket report, shaped like the pool report: headline, one line each, the fix."""
    n = len(sockets)
    out = [f"{n} socket{'s' if n != 1 else ''} leaked by {culprit} ({when})"]
    out += [f"  {sock.line()}" for sock in sockets]
    out.append(f"  {SOCKET_HINT}")
    return "\n".join(out)


class SocketChecker:
    """The per-test socket check, registered as a plugin when it is enabled."""

    def __init__(self, psutil: Any) -> None:
        self._process = psutil.Process()
        self._version = str(getattr(psutil, "__version__", "?"))
        self._baseline: set[tuple[int, str, str | None]] = set()
        self._baseline_fds = -1  # descriptor count when the baseline was listed

    def pytest_report_header(self) -> str:
        return f"connleak: checking every test for TCP sockets left open (psutil {self._version})"

    def _num_fds(self) -> int:
        return int(self._process.num_fds())

    def _relist(self) -> list[SocketInfo]:
        sockets = tcp_sockets(self._process)
        self._baseline = {sock.key for sock in sockets}
        self._baseline_fds = self._num_fds()
        return sockets

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, None, None]:
        count = self._num_fds()
        if count != self._baseline_fds:
            # Something between tests (a wider fixture's teardown, a collection-time import)
            # moved the count: what is open now is not this test's doing.
            self._relist()
            count = self._baseline_fds
        item.stash[_START_KEY] = count
        return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[object], request: pytest.FixtureRequest
    ) -> Generator[None, object, object]:
        if fixturedef.scope == "function":
            return (yield)
        before = self._num_fds()
        try:
            return (yield)
        finally:
            if self._num_fds() > before:
                # Sockets a wider fixture opens outlive this test by design.
                self._baseline |= {sock.key for sock in tcp_sockets(self._process)}

    # Outermost of the teardown wrappers (registered after the pool checker, so called
    # first): it sees the pool checker's ConnectionLeakError and adds its own text to it.
    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, None, None]:
        __tracebackhide__ = True
        pool_error: ConnectionLeakError | None = None
        try:
            result = yield
        except ConnectionLeakError as exc:
            pool_error = exc
        leaked = self._leaked(item)
        # The pool check judged these leases (failed, warned or excused): their sockets
        # are its report, not ours.
        judged: list[Lease] = item.stash.get(JUDGED_KEY, [])
        leaked = without_reported(leaked, judged)
        # Same scope as the pool check: test functions; a bare allow_leaks excuses them.
        if leaked and isinstance(item, pytest.Function):
            policy = item.config.stash[POLICY_KEY]
            why = policy.why_socket(item)
            for sock in leaked:
                line = sock.line()
                item.user_properties.append((SOCKET_PROPERTY, f"{line} ({why})" if why else line))
            if why is None or why == WARNED:
                text = format_socket_leaks(leaked, item.name, "still open at teardown")
                if why == WARNED:
                    # At the test's own line: a socket has no lease site to point at.
                    _, line0, _ = item.location
                    warnings.warn_explicit(
                        LeakWarning(text), LeakWarning, str(item.path), (line0 or 0) + 1
                    )
                elif pool_error is not None:
                    raise ConnectionLeakError(f"{pool_error}\n{text}", pool_error.leases)
                else:
                    raise ConnectionLeakError(text)
        if pool_error is not None:
            raise pool_error
        return result

    def _leaked(self, item: pytest.Item) -> list[SocketInfo]:
        start = item.stash.get(_START_KEY, None)
        if start is None or self._num_fds() <= start:
            return []
        baseline = self._baseline
        sockets = self._relist()
        served = _served(sockets)
        candidates = [s for s in sockets if s.key not in baseline and not served(s)]
        if not candidates:
            return []
        pooled = idle_pooled_fds()
        return [s for s in candidates if s.fd not in pooled]
