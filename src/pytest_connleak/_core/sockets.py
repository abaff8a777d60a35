"""A process's TCP sockets as psutil lists them: what the socket check and ``connleak watch``
both read. psutil is optional (extra ``sockets``); callers import it.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

__all__ = ["PSUTIL_MISSING", "SocketInfo", "format_address", "tcp_sockets"]

# pip install psutil works today; the extra's index form only once the package is published.
PSUTIL_MISSING = "needs psutil: pip install psutil (the 'sockets' extra of pytest-connleak)"


@dataclass(frozen=True)
class SocketInfo:
    """One TCP socket of a process, as psutil lists it."""

    fd: int
    family: str
    state: str
    local: str
    remote: str | None
    local_addr: tuple[str, int]
    remote_addr: tuple[str, int] | None = None

    @property
    def key(self) -> tuple[int, str, str | None]:
        return (self.fd, self.local, self.remote)

    def line(self) -> str:
        """``tcp 127.0.0.1:51514 -> 127.0.0.1:8080 ESTABLISHED``."""
        return f"{self.family} {self.local} -> {self.remote or '-'} {self.state}"


def format_address(addr: Any) -> str | None:
    """``host:port``, ``[v6]:port``, or ``None`` for no address (a listening socket's peer)."""
    if not addr:
        return None
    ip, port = addr[0], addr[1]
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def tcp_sockets(process: Any) -> list[SocketInfo]:
    """The TCP sockets (IPv4 and IPv6) of a ``psutil.Process``."""
    # psutil 6 renamed connections() to net_connections(); 5.9 only has the old name.
    listing = getattr(process, "net_connections", None) or process.connections
    out = []
    for conn in listing(kind="tcp"):
        local = format_address(conn.laddr) or "-"
        out.append(
            SocketInfo(
                fd=conn.fd,
                family="tcp6" if conn.family == socket.AF_INET6 else "tcp",
                state=str(conn.status),
                local=local,
                remote=format_address(conn.raddr),
                local_addr=(conn.laddr[0], conn.laddr[1]) if conn.laddr else ("", 0),
                remote_addr=(conn.raddr[0], conn.raddr[1]) if conn.raddr else None,
            )
        )
    return out
