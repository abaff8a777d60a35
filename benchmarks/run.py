"""What pytest-connleak costs: every figure a ratio against a baseline measured in the same run.

Run from the repository root, after the README's install::

    .venv/bin/python benchmarks/run.py            # the full run, writes benchmarks/RESULTS.md
    .venv/bin/python benchmarks/run.py --quick    # a smoke run, a few seconds

1. Per request: a keep-alive loop to a local server (in its own process, so that its work
   is not ours) through urllib3, requests and httpx (sync and async), with the plugin's
   tracking installed (``Instrumentation.install()``) and not. Target: at most 1.01.
2. Per test: pytest on 2,000 trivial tests and on 500 tests that make one request each,
   ``--leak-check`` against ``-p no:connleak``. Target: at most 1.02.
3. Memory: the ledger's size after 100,000 requests against its size after 1,000.
4. For comparison, the 2,000 trivial tests under pytest-openfiles (``--open-files``), when
   that plugin is installed in the same environment.

On and off alternate within each round (and which goes first alternates between rounds), so
that drift in the machine's speed falls on both sides; medians and ranges are over rounds.
Nothing here is asserted: the results are for reading.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT / "src") not in sys.path:  # a checkout without the editable install
    sys.path.insert(0, str(ROOT / "src"))

from pytest_connleak._core.adapters import Instrumentation  # noqa: E402
from pytest_connleak._core.ledger import Ledger  # noqa: E402

KEEP_MARKER = "<!-- written by hand below this line; run.py keeps it -->"

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


# -- the server, in its own process ------------------------------------------------------


def serve() -> None:
    """A minimal threaded HTTP/1.1 keep-alive server: every request gets ``200 ok``.

    Raw sockets rather than http.server: the faster the server, the larger our share of
    each request, so the ratios below are if anything pessimistic.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    listener.listen(128)

    def handle(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                _, _, buffer = buffer.partition(b"\r\n\r\n")
                conn.sendall(RESPONSE)

    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


@contextmanager
def server() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait()


# -- statistics ------------------------------------------------------------------------------


@dataclass
class Ratio:
    """Wall-clock and CPU times of the measured side and its baseline, a pair per round.

    The wall-clock ratio is the one that counts; the CPU ratio (this process's CPU time
    for loops, the child's for pytest runs) is steadier on a busy machine, and stricter:
    the server's work and the time spent waiting on sockets are not in its baseline.
    """

    name: str
    count: int
    target: float | None = None
    note: str = ""
    on: list[tuple[float, float]] = field(default_factory=list)
    off: list[tuple[float, float]] = field(default_factory=list)

    def ratios(self, which: int) -> list[float]:
        return [a[which] / b[which] for a, b in zip(self.on, self.off, strict=True)]

    def cells(self) -> list[str]:
        wall = self.ratios(0)
        median = statistics.median(wall)
        quartiles = statistics.quantiles(wall, n=4) if len(wall) >= 2 else [wall[0]] * 3
        verdict = ""
        if self.target is not None:
            verdict = f"≤ {self.target:.2f}: {'met' if median <= self.target else 'missed'}"
        extra = statistics.median(a[0] - b[0] for a, b in zip(self.on, self.off, strict=True))
        cpu_extra = statistics.median(a[1] - b[1] for a, b in zip(self.on, self.off, strict=True))
        return [
            self.name,
            f"{statistics.median(b[0] for b in self.off) * 1e3:,.0f} ms",
            f"{median:.3f}",
            f"{quartiles[0]:.3f}–{quartiles[2]:.3f}",
            f"{min(wall):.3f}–{max(wall):.3f}",
            f"{statistics.median(self.ratios(1)):.3f}",
            f"{extra / self.count * 1e6:+.1f} µs",
            f"{cpu_extra / self.count * 1e6:+.1f} µs",
            verdict,
        ]


HEADER = [
    "benchmark",
    "baseline (wall)",
    "ratio (median)",
    "interquartile",
    "range",
    "CPU ratio",
    "extra / unit",
    "extra CPU / unit",
    "target",
]


def alternate(rounds: int, ratio: Ratio, run: Callable[[bool], tuple[float, float]]) -> Ratio:
    for i in range(rounds):
        order = (False, True) if i % 2 == 0 else (True, False)
        for on in order:
            gc.collect()
            (ratio.on if on else ratio.off).append(run(on))
    return ratio


# -- 1. per request --------------------------------------------------------------------------


@contextmanager
def tracking(on: bool) -> Iterator[Instrumentation]:
    instrumentation = Instrumentation(Ledger())
    if on:
        instrumentation.install()
    try:
        yield instrumentation
    finally:
        instrumentation.uninstall()


def clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def since(start: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = clocks()
    return wall - start[0], cpu - start[1]


def loop_urllib3(url: str, n: int) -> tuple[float, float]:
    import urllib3

    with urllib3.PoolManager() as pm:
        pm.request("GET", url)  # connect outside the timing
        start = clocks()
        for _ in range(n):
            pm.request("GET", url)
        return since(start)


def loop_requests(url: str, n: int) -> tuple[float, float]:
    import requests

    with requests.Session() as session:
        session.get(url)
        start = clocks()
        for _ in range(n):
            session.get(url)
        return since(start)


def loop_httpx(url: str, n: int) -> tuple[float, float]:
    import httpx

    with httpx.Client() as client:
        client.get(url)
        start = clocks()
        for _ in range(n):
            client.get(url)
        return since(start)


def loop_httpx_async(url: str, n: int) -> tuple[float, float]:
    import httpx

    async def main() -> tuple[float, float]:
        async with httpx.AsyncClient() as client:
            await client.get(url)
            start = clocks()
            for _ in range(n):
                await client.get(url)
            return since(start)

    return asyncio.run(main())


Loop = Callable[[str, int], tuple[float, float]]

CLIENTS: dict[str, tuple[str, str, Loop]] = {
    # label: (module to import, adapter that tracks it, loop)
    "urllib3": ("urllib3", "urllib3", loop_urllib3),
    "requests": ("requests", "urllib3", loop_requests),
    "httpx (sync)": ("httpx", "httpcore", loop_httpx),
    "httpx (async)": ("httpx", "httpcore", loop_httpx_async),
}


def per_request(url: str, n: int, rounds: int) -> list[Ratio]:
    with tracking(True) as probe:
        # Pending: not imported yet, patched on first import (the warm-up below imports it).
        tracked = {adapter.name for adapter in (*probe.installed, *probe.pending)}
    results = []
    for label, (module, adapter, loop) in CLIENTS.items():
        try:
            __import__(module)
        except ImportError:
            continue
        note = "" if adapter in tracked else f"not tracked: this build has no {adapter} adapter"

        def run(on: bool, loop: Loop = loop) -> tuple[float, float]:
            with tracking(on):
                return loop(url, n)

        loop(url, min(n, 200))  # warm up imports, caches and the server's threads
        results.append(
            alternate(
                rounds,
                Ratio(f"{label}, {n:,} requests", n, target=1.01, note=note),
                run,
            )
        )
    return results


# -- 2. per test ------------------------------------------------------------------------------


def write_suite(where: Path, tests: int, body: str, header: str = "") -> Path:
    where.mkdir(parents=True)
    per_file = 100
    for f in range(0, tests, per_file):
        lines = [header]
        for i in range(f, min(f + per_file, tests)):
            lines.append(f"def test_{i}():\n    {body}\n")
        (where / f"test_{f // per_file:03d}.py").write_text("\n".join(lines))
    ini = ["[pytest]"]
    try:
        import pytest_asyncio  # noqa: F401

        ini.append("asyncio_default_fixture_loop_scope = function")
    except ImportError:
        pass
    (where / "pytest.ini").write_text("\n".join(ini) + "\n")
    return where


def pytest_run(suite: Path, *args: str, url: str = "") -> tuple[float, float]:
    env = dict(os.environ, CONNLEAK_BENCH_URL=url, PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTEST_ADDOPTS", None)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=suite, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{proc.stdout[-3000:]}{proc.stderr}")
    return elapsed, cpu


def per_test(url: str, trivial: int, requesting: int, rounds: int, tmp: Path) -> list[Ratio]:
    quiet = write_suite(tmp / "trivial", trivial, "pass")
    loud = write_suite(
        tmp / "requesting",
        requesting,
        "assert SESSION.get(URL).content == b'ok'",
        "import os, requests\n\nURL = os.environ['CONNLEAK_BENCH_URL']\n"
        "SESSION = requests.Session()\n",
    )
    results = []
    for suite, count, what in ((quiet, trivial, "trivial"), (loud, requesting, "one-request")):

        def run(on: bool, suite: Path = suite) -> tuple[float, float]:
            flags = ["--leak-check"] if on else ["-p", "no:connleak"]
            return pytest_run(suite, *flags, url=url)

        pytest_run(suite, "-p", "no:connleak", url=url)  # warm the file system cache
        results.append(
            alternate(
                rounds,
                Ratio(
                    f"pytest, {count:,} {what} tests: --leak-check / -p no:connleak",
                    count,
                    target=1.02,
                    note="whole pytest runs, start-up included",
                ),
                run,
            )
        )
    return results


def openfiles(trivial: int, rounds: int, tmp: Path) -> Ratio | str:
    try:
        version = importlib.metadata.version("pytest-openfiles")
    except importlib.metadata.PackageNotFoundError:
        return "pytest-openfiles is not installed here (pip install pytest-openfiles)"
    suite = tmp / "trivial"
    if not suite.exists():
        write_suite(suite, trivial, "pass")

    def run(on: bool) -> tuple[float, float]:
        # The baseline has the plugin loaded but not asked for, as a user's suite would.
        return pytest_run(suite, "-p", "no:connleak", *(["--open-files"] if on else []))

    return alternate(
        rounds,
        Ratio(
            f"pytest, {trivial:,} trivial tests: --open-files / without (pytest-openfiles "
            f"{version}, for comparison)",
            trivial,
        ),
        run,
    )


# -- 3. memory --------------------------------------------------------------------------------


@dataclass
class Memory:
    pattern: str
    sizes: dict[int, int]

    def cells(self) -> list[str]:
        (small, a), (large, b) = sorted(self.sizes.items())
        verdict = "equal" if a == b else "GROWS"
        return [self.pattern, f"{small:,}: {a}", f"{large:,}: {b}", verdict]


def memory(url: str, small: int, large: int) -> list[Memory]:
    import urllib3

    results = []
    with tracking(True) as instrumentation:
        ledger = instrumentation.ledger
        sizes = {}
        with urllib3.PoolManager() as pm:
            for done in range(1, large + 1):
                pm.request("GET", url)
                if done in (small, large):
                    sizes[done] = ledger.size()
        results.append(Memory("one PoolManager, keep-alive", sizes))

        sizes = {}
        for done in range(1, large + 1):
            with urllib3.PoolManager() as pm:  # a new pool per request, dropped at once
                pm.request("GET", url)
            if done % 100 == 0:
                ledger.take_usage()  # what the plugin does between tests
            if done in (small, large):
                sizes[done] = ledger.size()
        results.append(Memory("a new PoolManager per request, windows of 100", sizes))

        ledger.take_usage()
        sizes = {}
        for done in range(1, large + 1):
            with urllib3.PoolManager() as pm:
                pm.request("GET", url)
            if done in (small, large):
                sizes[done] = ledger.size()
        results.append(Memory("a new PoolManager per request, no windows", sizes))
    return results


# -- report ------------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    found = {}
    for name in (
        "pytest-connleak",
        "pytest",
        "urllib3",
        "requests",
        "httpx",
        "httpcore",
        "aiohttp",
        "pytest-xdist",
        "pytest-openfiles",
    ):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(header: list[str], rows: list[list[str]]) -> str:
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="small counts, one round: a smoke run")
    parser.add_argument("--rounds", type=int, help="rounds per figure (default 11, quick 1)")
    parser.add_argument(
        "--output",
        type=Path,
        help="where to write the results (default benchmarks/RESULTS.md; --quick writes "
        "nothing unless given)",
    )
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return 0

    quick = args.quick
    rounds = args.rounds or (1 if quick else 11)
    requests_n = 200 if quick else 2000
    trivial, requesting = (100, 20) if quick else (2000, 500)
    small, large = (1000, 2000) if quick else (1000, 100_000)
    test_rounds = args.rounds or (1 if quick else 7)

    started = time.time()
    with server() as url, tempfile.TemporaryDirectory() as tmp:
        print(f"server: {url}; {rounds} rounds per request figure", flush=True)
        ratios = per_request(url, requests_n, rounds)
        print(text_table(HEADER, [r.cells() for r in ratios]), flush=True)
        ratios += per_test(url, trivial, requesting, test_rounds, Path(tmp))
        print(text_table(HEADER, [r.cells() for r in ratios[-2:]]), flush=True)
        compare = openfiles(trivial, 1, Path(tmp))
        mem = memory(url, small, large)

    rows = [r.cells() for r in ratios]
    notes = [f"{r.name}: {r.note}" for r in ratios if r.note]
    if isinstance(compare, Ratio):
        rows.append(compare.cells())
    else:
        notes.append(compare)
    mem_header = ["memory: ledger size (objects)", "after", "after", "verdict"]
    mem_rows = [m.cells() for m in mem]

    print()
    print(text_table(HEADER, rows))
    print()
    print(text_table(mem_header, mem_rows))
    for note in notes:
        print(f"note: {note}")

    machine = [
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores",
        f"- OS: {platform.platform()}",
        f"- Python: {platform.python_implementation()} {platform.python_version()}",
        "- Libraries: " + ", ".join(f"{k} {v}" for k, v in versions().items()),
        f"- Date: {time.strftime('%Y-%m-%d %H:%M %Z')}, took {time.time() - started:.0f} s",
        f"- Command: `python benchmarks/run.py{' --quick' if quick else ''}`"
        f"{f' --rounds {args.rounds}' if args.rounds else ''}; {rounds} rounds per request "
        f"figure, {test_rounds} per pytest figure, 1 for pytest-openfiles",
    ]
    body = [
        "# Benchmark results",
        "",
        "Written by `benchmarks/run.py`; every ratio is measured against a baseline in the",
        "same run, on and off alternating within each round. *extra / unit* is the median",
        "difference per request or per test.",
        "",
        "## Machine",
        "",
        *machine,
        "",
        "## Time",
        "",
        markdown_table(HEADER, rows),
        "",
        "## Memory",
        "",
        markdown_table(mem_header, mem_rows),
        "",
    ]
    if notes:
        body += ["## Notes", "", *[f"- {note}" for note in notes], ""]
    missed = [r.name for r in ratios if r.target is not None and r.cells()[-1].endswith("missed")]
    if missed:
        body += ["## Targets missed in this run", "", *[f"- {name}" for name in missed], ""]
    output = args.output or (None if quick else HERE / "RESULTS.md")
    if output is not None:
        # What a person wrote below the marker (the analysis of a miss) survives a rerun.
        kept = ""
        if output.exists() and KEEP_MARKER in output.read_text():
            kept = output.read_text().split(KEEP_MARKER, 1)[1]
        output.write_text("\n".join(body) + "\n" + KEEP_MARKER + kept)
        print(f"\nwritten to {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
