"""Where the plugin's time goes, figure by figure: the profiles behind RESULTS.md's analysis.

Run from the repository root::

    .venv/bin/python benchmarks/breakdown.py cycle      # one lease + return, on and off
    .venv/bin/python benchmarks/breakdown.py request    # cProfile of a request loop, per client
    .venv/bin/python benchmarks/breakdown.py tests      # per-test cost without start-up
    .venv/bin/python benchmarks/breakdown.py startup    # the plugin's imports and configure

Each prints CPU times measured with on and off interleaved (minimum over rounds, then the
median), and, for the profiles, the functions of this package by their own time. Profiles
inflate small Python functions, so read their shares, and the interleaved timings for size.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
if str(HERE.parent / "src") not in sys.path:  # a checkout without the editable install
    sys.path.insert(0, str(HERE.parent / "src"))

import run  # noqa: E402  (benchmarks/run.py: the server, the loops, the suites)

OURS = "pytest_connleak"


def interleaved(rounds: int, measure: Callable[[bool], float]) -> tuple[list[float], list[float]]:
    on: list[float] = []
    off: list[float] = []
    for i in range(rounds):
        for flag in (False, True) if i % 2 == 0 else (True, False):
            gc.collect()
            (on if flag else off).append(measure(flag))
    return on, off


def show(label: str, on: list[float], off: list[float], unit: int, what: str) -> None:
    low = (min(on) - min(off)) / unit * 1e6
    mid = statistics.median(a - b for a, b in zip(on, off, strict=True)) / unit * 1e6
    print(
        f"{label}: off {min(off) / unit * 1e6:.1f} µs/{what}, on {min(on) / unit * 1e6:.1f}; "
        f"extra {low:+.2f} µs (min) / {mid:+.2f} µs (median) over {len(on)} rounds"
    )


def own_functions(profile: cProfile.Profile, top: int) -> None:
    stats = pstats.Stats(profile)
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    rows = [
        (v[2], v[1], f"{Path(fn).name}:{line} {name}")
        for (fn, line, name), v in stats.stats.items()  # type: ignore[attr-defined]
        if OURS in fn
    ]
    rows.sort(reverse=True)
    ours = sum(r[0] for r in rows)
    print(f"  this package's own time: {ours / total:.1%} of the profile")
    for tt, calls, where in rows[:top]:
        print(f"  {tt / total:6.1%}  {calls:8d} calls  {where}")


def cycle(rounds: int, n: int) -> None:
    """One lease and one return through urllib3's own pool methods, no I/O."""
    import urllib3

    def measure(on: bool) -> float:
        with run.tracking(on):
            pool = urllib3.HTTPConnectionPool("127.0.0.1", 9, maxsize=1)
            pool._put_conn(pool._get_conn())
            start = time.process_time()
            for _ in range(n):
                pool._put_conn(pool._get_conn())
            return time.process_time() - start

    show("urllib3 _get_conn + _put_conn", *interleaved(rounds, measure), n, "cycle")
    with run.tracking(True):
        pool = urllib3.HTTPConnectionPool("127.0.0.1", 9, maxsize=1)
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(n):
            pool._put_conn(pool._get_conn())
        profile.disable()
    own_functions(profile, 12)


def request(rounds: int, n: int) -> None:
    with run.server() as url:
        for label, (module, _adapter, loop) in run.CLIENTS.items():
            try:
                __import__(module)
            except ImportError:  # httpx2 before Python 3.11
                continue
            loop(url, 50)

            def measure(on: bool, loop: run.Loop = loop) -> float:
                with run.tracking(on):
                    return loop(url, n)[1]

            show(label, *interleaved(rounds, measure), n, "request")
            with run.tracking(True):
                profile = cProfile.Profile()
                profile.enable()
                loop(url, n)
                profile.disable()
            own_functions(profile, 6)


def tests(rounds: int, n: int) -> None:
    """pytest.main in this process: start-up is paid once, so the difference is per test."""
    import pytest

    with tempfile.TemporaryDirectory() as tmp:
        suite = run.write_suite(Path(tmp) / "trivial", n, "pass")
        os.chdir(suite)

        def main(on: bool) -> None:
            flags = ["--leak-check"] if on else ["-p", "no:connleak"]
            with contextlib.redirect_stdout(io.StringIO()):
                pytest.main(["-q", "-p", "no:cacheprovider", *flags])

        def measure(on: bool) -> float:
            start = time.process_time()
            main(on)
            return time.process_time() - start

        main(True)
        main(False)
        show(f"pytest.main, {n} trivial tests", *interleaved(rounds, measure), n, "test")
        profile = cProfile.Profile()
        profile.enable()
        main(True)
        profile.disable()
        own_functions(profile, 12)


def startup(rounds: int) -> None:
    """``-X importtime`` of ``pytest --co --leak-check``: this package's modules, self time."""
    with tempfile.TemporaryDirectory() as tmp:
        suite = run.write_suite(Path(tmp) / "startup", 1, "pass")
        env = dict(os.environ, PYTHONPYCACHEPREFIX=str(Path(tmp) / "pycache"))
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        command = [sys.executable, "-X", "importtime", "-m", "pytest", "-q", "--co"]
        command += ["-p", "no:cacheprovider", "--leak-check"]
        best: dict[str, int] = {}
        for i in range(rounds + 1):
            err = subprocess.run(command, cwd=suite, env=env, capture_output=True, text=True)
            if i == 0:
                continue  # writes the bytecode
            for line in err.stderr.splitlines():
                parts = line.split("|")
                if len(parts) != 3 or OURS not in parts[2]:
                    continue
                name = parts[2].strip()
                own = int(parts[0].split(":")[1])
                best[name] = min(own, best.get(name, own))
    total = sum(best.values())
    print(f"this package's modules: {len(best)}, {total / 1e3:.1f} ms of import (own time, min)")
    for name, own in sorted(best.items(), key=lambda kv: -kv[1]):
        print(f"  {own / 1e3:6.2f} ms  {name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["cycle", "request", "tests", "startup"])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("-n", type=int, help="requests, cycles or tests per round")
    args = parser.parse_args(argv)
    if args.what == "cycle":
        cycle(args.rounds, args.n or 20_000)
    elif args.what == "request":
        request(args.rounds, args.n or 2_000)
    elif args.what == "tests":
        tests(args.rounds, args.n or 2_000)
    else:
        startup(args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
