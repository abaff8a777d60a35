"""The incident in three pytest runs: the leak hides, the leak is caught, the fix passes.

Run it from anywhere: ``python examples/demo.py``. It exits 0 when all three runs ended as
they should, and 1 (saying which run went wrong) otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

INCIDENT = Path(__file__).resolve().parent / "incident"
LEAK_HEADLINE = "ConnectionLeakError: 1 connection leaked by test_expired_session_is_rejected"


def lease_site() -> str:
    """Where the report must point: the line of service.py that sends the request."""
    lines = (INCIDENT / "service.py").read_text().splitlines()
    lineno = next(i for i, line in enumerate(lines, 1) if "http.get(" in line)
    return f"leased at service.py:{lineno} in is_session_active"


def pytest(*args: str) -> subprocess.CompletedProcess[str]:
    """Run pytest on the incident example, leaving no cache or bytecode behind."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--color=no", *args]
    return subprocess.run(
        command, cwd=INCIDENT, env=env, capture_output=True, text=True, timeout=120
    )


def say(text: str) -> None:
    print(textwrap.dedent(text).strip() + "\n")


def note(text: str) -> None:
    print(textwrap.indent(text, "   ") + "\n")


def leak_report(output: str) -> str:
    """The report lines of the first leak, as pytest printed them."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if LEAK_HEADLINE in line)
    report = []
    for line in lines[start:]:
        if not line.startswith("E "):
            break
        report.append(line)
    return "\n".join(report)


def fail(why: str, run: subprocess.CompletedProcess[str]) -> int:
    print(f"DEMO FAILED: {why}\n\n--- pytest output ---\n{run.stdout}{run.stderr}")
    return 1


def main() -> int:
    say(
        """
        pytest-connleak demo: the incident in examples/incident/

        service.py asks an auth service, behind a load balancer, whether a session cookie
        is valid. It passes stream=True to skip the body and only reads the status code,
        so it never gives its connection back to the pool. In production every check kept
        one connection; once the pool was empty, the service hung.
        """
    )

    say("1. pytest test_service.py  (how the team ran it for months)")
    run = pytest("test_service.py")
    if run.returncode != 0:
        return fail("the leaking service's tests should pass without --leak-check", run)
    note("Both tests pass: nothing in plain pytest notices the leak.")

    say("2. pytest --leak-check test_service.py")
    run = pytest("--leak-check", "test_service.py")
    if run.returncode != 1:
        return fail(f"expected exit status 1 (the leak), got {run.returncode}", run)
    site = lease_site()
    if LEAK_HEADLINE not in run.stdout or site not in run.stdout:
        return fail(f"the leak report is missing or does not say '{site}'", run)
    note("Each test now errors at teardown. The report pytest printed:")
    note(leak_report(run.stdout))

    say("3. pytest --leak-check test_service_fixed.py  (the response used as a context manager)")
    run = pytest("--leak-check", "test_service_fixed.py")
    if run.returncode != 0 or "ConnectionLeakError" in run.stdout:
        return fail("the fixed service's tests should pass under --leak-check", run)
    summary = run.stdout.strip().splitlines()[-1].strip("= ")
    note(f"{summary}: every connection went back to the pool.")

    say("Demo OK: the leak hid, was caught with the line that leased it, and the fix passed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
