"""Where the plugin's time goes, figure by figure: the profiles behind RESULTS.md's analysis.

Run from the repository root::

    .venv/bin/python benchmarks/breakdown.py cycle      # one lease + return, on and off
    .venv/bin/python benchmarks/breakdown.py request    # cProfile of a request loop, per client
    .venv/bin/python benchmarks/breakdown.py tests      # per-test cost without start-up
    .venv/bin/python benchmarks/breakdown.py startup    # the plugin's imports and configure
    .venv/bin/python benchmarks/breakdown.py instructions   # per request, counted (valgrind)

Each prints CPU times measured with on and off interleaved (minimum over rounds, then the
median), and, for the profiles, the functions of this package by their own time. Profiles
inflate small Python functions, so read their shares, and the interleaved timings for size.

``instructions`` needs no quiet machine: it counts the CPU instructions the client process
runs per keep-alive request, tracking on and off, under valgrind's callgrind (the server
runs in another process, uncounted; only the request loop is counted, not the imports, the
connect or the warm-up). The same code on the same data counts within a fraction of a
percent from run to run, so a change of a few hundred instructions a request shows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import importlib
import importlib.util
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
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
if str(HERE.parent / "src") not in sys.path:  # a checkout without the editable install
    sys.path.insert(0, str(HERE.parent / "src"))

import callgrind  # noqa: E402  (benchmarks/callgrind.py: counting instructions)
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


# -- instructions per request (callgrind) ----------------------------------------------------

#: A counted loop: set up a client, return (run n requests, close it).
Counted = Callable[[str], tuple[Callable[[int], None], Callable[[], None]]]


def _sync(make: Callable[[], Any], get: Callable[[Any, str], None]) -> Counted:
    def setup(url: str) -> tuple[Callable[[int], None], Callable[[], None]]:
        client = make()

        def requests(n: int) -> None:
            for _ in range(n):
                get(client, url)

        return requests, client.close if hasattr(client, "close") else client.clear

    return setup


def _httpx(module: str) -> Counted:
    def make() -> Any:
        return importlib.import_module(module).Client()

    return _sync(make, lambda client, url: client.get(url).close())


def _urllib3() -> Any:
    import urllib3

    return urllib3.PoolManager()


def _async(make: Callable[[], Any], get: Callable[[Any, str], Any]) -> Counted:
    """An event loop of our own, so that only the requests' part of it is counted."""

    def setup(url: str) -> tuple[Callable[[int], None], Callable[[], None]]:
        loop = asyncio.new_event_loop()

        async def opened() -> Any:
            return make()

        client = loop.run_until_complete(opened())

        async def body(n: int) -> None:
            for _ in range(n):
                await get(client, url)

        def requests(n: int) -> None:
            loop.run_until_complete(body(n))

        def close() -> None:
            closing = client.aclose() if hasattr(client, "aclose") else client.close()
            loop.run_until_complete(closing)
            loop.close()

        return requests, close

    return setup


def _httpx_async(module: str) -> Counted:
    async def get(client: Any, url: str) -> None:
        response = await client.get(url)
        await response.aclose()

    return _async(lambda: importlib.import_module(module).AsyncClient(), get)


def _aiohttp() -> Counted:
    async def get(session: Any, url: str) -> None:
        async with session.get(url) as response:
            await response.read()

    return _async(lambda: importlib.import_module("aiohttp").ClientSession(), get)


COUNTED: dict[str, tuple[str, Callable[[], Counted]]] = {
    # label: (module, the loop); the same requests as run.py's loops
    "urllib3": ("urllib3", lambda: _sync(_urllib3, lambda pm, url: pm.request("GET", url))),
    "httpx (sync)": ("httpx", lambda: _httpx("httpx")),
    "httpx (async)": ("httpx", lambda: _httpx_async("httpx")),
    "httpx2 (sync)": ("httpx2", lambda: _httpx("httpx2")),
    "httpx2 (async)": ("httpx2", lambda: _httpx_async("httpx2")),
    "aiohttp": ("aiohttp", _aiohttp),
}


def count_child(label: str, on: bool, n: int, url: str) -> None:
    """The process callgrind runs: only what runs inside ``functools.reduce`` is counted."""
    from pytest_connleak._core.adapters import acquire_instrumentation, release_instrumentation
    from pytest_connleak._core.ledger import ledger

    requests, close = COUNTED[label][1]()(url)
    requests(50)  # connect, fill caches
    if on:
        acquire_instrumentation()
        ledger.owner = "benchmark"
    requests(20)
    callgrind.counted(lambda: requests(n))
    if on:
        ledger.owner = None
        release_instrumentation()
    close()


def instructions(n: int, labels: list[str] | None) -> None:
    """Instructions per request of each client, off and on, counted by callgrind."""
    callgrind.require()
    print(f"instructions per keep-alive request, {n} requests counted (callgrind)")
    print("| client | off | on | added | ratio |")
    print("| --- | --- | --- | --- | --- |")
    with run.server() as url, tempfile.TemporaryDirectory() as tmp:
        for label in labels or list(COUNTED):
            module = COUNTED[label][0]
            if importlib.util.find_spec(module) is None:
                continue
            counts = {}
            for mode in ("off", "on"):  # one after the other: the machine has few cores
                out = os.path.join(tmp, f"callgrind.{mode}.out")
                child = [sys.executable, __file__, "--count-child", label, "--mode", mode]
                child += ["-n", str(n), "--url", url]
                subprocess.run(
                    callgrind.command(out, child),
                    env=callgrind.environment(),
                    check=True,
                    capture_output=True,
                )
                counts[mode] = callgrind.total(out) / n
            off, on = counts["off"], counts["on"]
            print(
                f"| {label} | {off:,.0f} | {on:,.0f} | {on - off:+,.0f} | {on / off:.4f} |",
                flush=True,
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "what", nargs="?", choices=["cycle", "request", "tests", "startup", "instructions"]
    )
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("-n", type=int, help="requests, cycles or tests per round")
    parser.add_argument(
        "--client", action="append", choices=list(COUNTED), help="instructions: only these"
    )
    # The child that callgrind runs (see instructions()); not for people.
    parser.add_argument("--count-child", choices=list(COUNTED), help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=("on", "off"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.count_child:
        count_child(args.count_child, args.mode == "on", args.n, args.url)
        return 0
    if args.what is None:
        parser.error("say what to measure")
    if args.what == "instructions":
        instructions(args.n or 300, args.client)
    elif args.what == "cycle":
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
