"""benchmarks/track_alarm.py runs: a smoke run with small counts. Its timings are not asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "track_alarm.py"


def test_quick_run_writes_every_setting(tmp_path: Path) -> None:
    output = tmp_path / "RESULTS-track.md"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = output.read_text()
    assert "## Per request" in results
    for row in (
        "| off: track(pool_threshold=None) | ",
        "| on: track(leak_threshold=30) | ",
        "| on, every 10 ms: track(leak_threshold=30, check_interval=0.01) | ",
    ):
        assert row in results
    assert "≤ 1.01: min " in results
