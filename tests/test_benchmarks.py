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
    for heading in ("## Machine", "## Time", "## Memory"):
        assert heading in results
    for row in ("| urllib3, 200 requests |", "| requests, 200 requests |", "trivial tests"):
        assert row in results
    assert "| one PoolManager, keep-alive | 1,000: " in results
