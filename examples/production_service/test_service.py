"""The service leaks under the load balancer's 403 page; track() and its metrics show it.

Nothing here runs under --leak-check: this is how the leak looks in production, and how
it is found there while the service goes on serving.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from conftest import Service


def close_wait(service: Service, at_least: int, timeout: float = 15) -> dict[str, object]:
    """``connleak watch --once --json`` of the service, once it counts enough CLOSE_WAIT."""
    deadline = time.monotonic() + timeout
    while True:
        done = subprocess.run(
            [sys.executable, "-m", "pytest_connleak", "watch", "--pid", str(service.pid)]
            + ["--once", "--json"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        snapshot: dict[str, object] = json.loads(done.stdout)
        counts = snapshot["counts"]
        assert isinstance(counts, dict)
        if counts.get("CLOSE_WAIT", 0) >= at_least or time.monotonic() > deadline:
            return snapshot
        time.sleep(0.2)  # polling a condition, with the deadline above


def test_a_leak_in_production(service: Service, profile_api: str) -> None:
    assert service.get("/profile/ada").json() == {"user": "ada"}
    # Three refused users: every 403 leaks a connection, and /metrics shows it climb.
    leased = []
    for _ in range(3):
        assert service.get("/profile/mallory").status_code == 403
        leased.append(service.metric("connleak_pool_leased"))
    assert leased == [1, 2, 3]
    assert service.metric("connleak_pool_capacity") == 4

    # The alarm: one warning per leaked connection, naming the line that leased it.
    alarms = service.wait_for_log("possible connection leak", count=3)
    for line in alarms:
        assert f"a connection to {profile_api} (httpcore)" in line
        assert re.search(r"by thread 'worker_\d'", line), line
        assert line.endswith(f"at service.py:{send_line()} in fetch_profile"), line
    assert service.metric("connleak_pool_leaks_total") == 3
    # The 75% warning, as in the test run: 3 of the pool's 4 connections are out.
    (alert,) = service.wait_for_log("reached 3 of 4 connections")
    assert alert.endswith(
        f"pool {profile_api} (httpcore) reached 3 of 4 connections (75%) "
        "(threshold 75%); 3 leased now"
    )

    # And the service still serves, on the pool's last connection.
    assert service.get("/profile/ada").status_code == 200

    # The load balancer closes idle connections after a second: the leaked ones, which
    # nothing will ever close, stay in CLOSE_WAIT towards it.
    snapshot = close_wait(service, at_least=3)
    port = profile_api.rsplit(":", 1)[1]
    sockets = snapshot["sockets"]
    assert isinstance(sockets, list)
    towards_lb = [
        s for s in sockets if s["state"] == "CLOSE_WAIT" and s["remote"].endswith(f":{port}")
    ]
    assert len(towards_lb) >= 3, snapshot


def send_line() -> int:
    """The line of service.py that sends the request in fetch_profile."""
    lines = (Path(__file__).parent / "service.py").read_text().splitlines()
    start = lines.index(next(line for line in lines if line.startswith("def fetch_profile(")))
    return next(i for i in range(start, len(lines)) if "client.send(" in lines[i]) + 1
