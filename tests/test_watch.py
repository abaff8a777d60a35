"""``connleak watch`` against a child process holding a known number of CLOSE_WAIT sockets."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from pytest_connleak._runtime import watch as _watch

CLOSE_WAIT = 3
ESTABLISHED = 2

# Connects CLOSE_WAIT + ESTABLISHED sockets to PORT, tagging each with its index; says
# "ready"; waits for "check", then reads the peer's end of stream on the first
# CLOSE_WAIT sockets (that proves they are in CLOSE_WAIT) and says "closed"; exits on
# end of input.
CHILD = textwrap.dedent(
    """
    import socket, sys
    port, closing, total = map(int, sys.argv[1:])
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(total)]
    for i, s in enumerate(socks):
        s.sendall(bytes([i]))
    print("ready", flush=True)
    assert sys.stdin.readline() == "check\\n"
    for s in socks[:closing]:
        assert s.recv(1) == b""
    print("closed", flush=True)
    sys.stdin.read()
    for s in socks:
        s.close()
    """
)


@dataclass
class Child:
    pid: int
    server_port: int


@pytest.fixture
def child() -> Iterator[Child]:
    """A child process with CLOSE_WAIT sockets in CLOSE_WAIT and ESTABLISHED established."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        total = CLOSE_WAIT + ESTABLISHED
        with subprocess.Popen(
            [sys.executable, "-c", CHILD, str(port), str(CLOSE_WAIT), str(total)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ) as proc:
            assert proc.stdin is not None and proc.stdout is not None
            accepted: dict[int, socket.socket] = {}
            try:
                for _ in range(total):
                    conn, _addr = server.accept()
                    accepted[conn.recv(1)[0]] = conn
                assert proc.stdout.readline() == "ready\n"
                for i in range(CLOSE_WAIT):
                    accepted.pop(i).close()  # our FIN: the child's side goes to CLOSE_WAIT
                proc.stdin.write("check\n")
                proc.stdin.flush()
                assert proc.stdout.readline() == "closed\n"
                yield Child(proc.pid, port)
            finally:
                proc.stdin.close()
                proc.wait(timeout=30)
                for conn in accepted.values():
                    conn.close()


def watch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_connleak", "watch", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_once_json_shape(child: Child) -> None:
    done = watch("--pid", str(child.pid), "--once", "--json")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    snapshot = json.loads(done.stdout)
    assert list(snapshot) == ["pid", "counts", "sockets"]
    assert snapshot["pid"] == child.pid
    assert snapshot["counts"] == {"CLOSE_WAIT": CLOSE_WAIT, "ESTABLISHED": ESTABLISHED}
    assert len(snapshot["sockets"]) == CLOSE_WAIT + ESTABLISHED
    for sock in snapshot["sockets"]:
        assert list(sock) == ["state", "local", "remote"]
        assert sock["remote"] == f"127.0.0.1:{child.server_port}"
        assert sock["local"].startswith("127.0.0.1:")
    assert [s["state"] for s in snapshot["sockets"]] == (
        ["CLOSE_WAIT"] * CLOSE_WAIT + ["ESTABLISHED"] * ESTABLISHED
    )


def test_polls_print_the_close_wait_count(child: Child) -> None:
    done = watch("--pid", str(child.pid), "--interval", "0.01", "--count", "2")
    assert done.returncode == 0, done.stderr
    heads = [line for line in done.stdout.splitlines() if not line.startswith(" ")]
    assert len(heads) == 2
    for head in heads:
        assert f"pid {child.pid}: CLOSE_WAIT {CLOSE_WAIT}  (5 TCP: " in head
    lines = done.stdout.splitlines()
    assert lines[1].split() == ["CLOSE_WAIT", str(CLOSE_WAIT), f"127.0.0.1:{child.server_port}"]
    assert lines[2].split() == ["ESTABLISHED", str(ESTABLISHED), f"127.0.0.1:{child.server_port}"]
    assert "\033[" not in done.stdout  # not a terminal: no colour codes
    assert done.stderr == ""


def test_warn_runs_exec_once(child: Child, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    cmd = f'echo "$CONNLEAK_CLOSE_WAIT $CONNLEAK_LEVEL $CONNLEAK_PID" >> "{marker}"'
    done = watch(
        "--pid", str(child.pid), "--interval", "0.01", "--count", "3",
        "--warn", str(CLOSE_WAIT), "--exec", cmd,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == f"{CLOSE_WAIT} warn {child.pid}\n"
    assert done.stderr.splitlines() == [
        f"connleak watch: WARN: pid {child.pid} has {CLOSE_WAIT} sockets in CLOSE_WAIT "
        f"(--warn {CLOSE_WAIT})"
    ]


def test_below_the_thresholds_nothing_happens(child: Child, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    done = watch(
        "--pid", str(child.pid), "--interval", "0.01", "--count", "2",
        "--warn", str(CLOSE_WAIT + 1), "--fail", str(CLOSE_WAIT + 1),
        "--exec", f'touch "{marker}"',
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert not marker.exists()


def test_fail_exits_non_zero_after_exec(child: Child, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    done = watch(
        "--pid", str(child.pid), "--interval", "0.01", "--count", "5",
        "--warn", "1", "--fail", str(CLOSE_WAIT), "--exec", f'echo "$CONNLEAK_LEVEL" >> "{marker}"',
    )  # fmt: skip
    assert done.returncode == 1
    assert marker.read_text() == "fail\n"
    assert done.stderr.splitlines() == [
        f"connleak watch: FAIL: pid {child.pid} has {CLOSE_WAIT} sockets in CLOSE_WAIT "
        f"(--fail {CLOSE_WAIT})"
    ]
    # It stopped at the first poll instead of polling five times.
    assert sum(1 for line in done.stdout.splitlines() if not line.startswith(" ")) == 1


def test_console_script(child: Child) -> None:
    script = shutil.which("connleak", path=os.path.dirname(sys.executable))
    assert script is not None
    done = subprocess.run(
        [script, "watch", "--pid", str(child.pid), "--once", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["counts"]["CLOSE_WAIT"] == CLOSE_WAIT


def test_missing_process() -> None:
    with subprocess.Popen([sys.executable, "-c", "pass"]) as gone:
        gone.wait()
    done = watch("--pid", str(gone.pid), "--once")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == f"connleak watch: no process with pid {gone.pid}\n"


def test_permission_denied(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def denied(pid: int) -> None:
        raise psutil.AccessDenied(pid)

    monkeypatch.setattr(psutil, "Process", denied)
    assert _watch.main(["watch", "--pid", "1", "--once"]) == 2
    assert capsys.readouterr().err == (
        "connleak watch: permission denied reading the sockets of pid 1 "
        "(run as the same user as the process, or as root)\n"
    )


def test_without_psutil(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "psutil", None)
    assert _watch.main(["watch", "--pid", str(os.getpid()), "--once"]) == 2
    assert capsys.readouterr().err == (
        "connleak watch needs psutil: pip install psutil (the 'sockets' extra of pytest-connleak)\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--interval", "0"], "--interval must be a positive number of seconds, got 0.0"),
        (["--fail", "0"], "--fail must be at least 1, got 0"),
        (["--exec", "true"], "--exec needs a threshold to run at: give --warn N or --fail N"),
        (["--pid", "x"], "argument --pid: invalid int value: 'x'"),
    ],
)
def test_bad_arguments(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _watch.main(["watch", "--pid", "1", *args])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"connleak watch: error: {message}"
