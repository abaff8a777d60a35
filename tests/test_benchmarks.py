"""The benchmark script runs: a smoke run with small counts. Its timings are not asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"


def test_quick_run_writes_every_section(tmp_path: Path) -> None:
    output = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = output.read_text()
    for heading in ("## Machine", "## Time", "## Start-up", "## Memory"):
        assert heading in results
    clients = ["urllib3", "requests", "httpx (sync)", "httpx (async)", "aiohttp"]
    if sys.version_info >= (3, 11):  # httpx2 needs it
        clients += ["httpx2 (sync)", "httpx2 (async)"]
    for client in clients:
        assert f"| {client}, 100 requests |" in results
    assert "not tracked" not in results
    for row in ("trivial tests", "one-request tests", "start-up, pytest --co on one test"):
        assert row in results
    # Both estimates, min and median over rounds, are printed for every timed figure.
    assert "| CPU ratio, min | CPU ratio, median |" in results
    assert "| one PoolManager, keep-alive requests | 1,000: 1 objects, " in results
    assert "a new pool per lease, dropped at once" in results


@pytest.mark.skipif(sys.version_info < (3, 11), reason="httpx2 needs Python 3.11+")
def test_client_selects_the_request_rows(tmp_path: Path) -> None:
    output = tmp_path / "RESULTS.md"
    command = [sys.executable, str(SCRIPT), "--quick", "--only", "requests"]
    command += ["--client", "httpx2 (sync)", "--client", "httpx2 (async)", "--output", str(output)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = output.read_text()
    rows = [line.split(" | ")[0] for line in results.splitlines() if "requests |" in line]
    assert rows == ["| httpx2 (sync), 100 requests", "| httpx2 (async), 100 requests"]
    assert "not tracked" not in results
    assert "--client 'httpx2 (sync)' --client 'httpx2 (async)'`" in results
