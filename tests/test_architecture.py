"""The package layout's rules (import-linter contracts in pyproject.toml) hold, and bite.

Each breaking case copies the package, adds one import that the architecture forbids,
and checks that ``lint-imports`` fails on that copy and names the broken contract.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = shutil.which("lint-imports", path=os.path.dirname(sys.executable))

pytestmark = pytest.mark.skipif(LINT_IMPORTS is None, reason="import-linter not installed")


def lint_imports(src: Path) -> subprocess.CompletedProcess[str]:
    assert LINT_IMPORTS is not None
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [LINT_IMPORTS, "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_contracts_hold() -> None:
    result = lint_imports(ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        (
            "_clients/urllib3.py",
            "import pytest_connleak._checker.settings",
            "Parts are layered",
        ),
        ("_clients/httpcore.py", "import _pytest.fixtures", "Clients and runtime tools never use"),
        ("_core/ledger.py", "import pytest_connleak._clients.aiohttp", "Parts are layered"),
        ("_core/origins.py", "import urllib3", "The core knows nothing of pytest"),
        ("_checker/summary.py", "import pytest_connleak._clients.urllib3", "Parts are layered"),
        ("_runtime/api.py", "import pytest_connleak._checker.policy", "Parts are layered"),
        ("_upstreams/shapes.py", "import pytest_connleak._core.ledger", "Mock upstreams are"),
        ("_upstreams/fixtures.py", "import pytest_connleak._core.ledger", "Mock upstreams are"),
        ("_upstreams/extra.py", "import pytest_connleak._checker.settings", "Mock upstreams are"),
        ("_runtime/alarm.py", "import prometheus_client", "Only the Prometheus collector"),
        ("prometheus.py", "import pytest_connleak.plugin", "Parts are layered"),
    ],
)
def test_a_forbidden_import_breaks_a_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "pytest_connleak", src / "pytest_connleak")
    target = src / "pytest_connleak" / module
    target.write_text(target.read_text() + f"\n{line}  # added by the test\n")
    result = lint_imports(src)
    assert result.returncode == 1, result.stdout + result.stderr
    # "NAME BROKEN", or "NAME BROKEN (1 ignored import)"
    broken = [ln for ln in result.stdout.splitlines() if " BROKEN" in ln]
    assert [ln for ln in broken if ln.startswith(contract)], result.stdout
