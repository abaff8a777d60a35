"""The benchmark script runs: a smoke run with small counts. Its timings are not asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
    for client in ("urllib3", "requests", "httpx (sync)", "httpx (async)", "aiohttp"):
        assert f"| {client}, 100 requests |" in results
    for row in ("trivial tests", "one-request tests", "start-up, pytest --co on one test"):
        assert row in results
    # Both estimates, min and median over rounds, are printed for every timed figure.
    assert "| CPU ratio, min | CPU ratio, median |" in results
    assert "| one PoolManager, keep-alive requests | 1,000: 1 objects, " in results
    assert "a new pool per lease, dropped at once" in results
