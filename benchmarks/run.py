"""What pytest-connleak costs: every figure against a baseline measured in the same run.

Run from the repository root, after ``pip install -e ".[dev,bench]"`` (``bench`` adds
pytest-openfiles, the comparison below)::

    .venv/bin/python benchmarks/run.py            # the full run, writes benchmarks/RESULTS.md
    .venv/bin/python benchmarks/run.py --quick    # a smoke run with small counts
    .venv/bin/python benchmarks/run.py --only startup --only tests   # some sections
    .venv/bin/python benchmarks/run.py --only requests --client "httpx2 (sync)"  # some rows

1. Per request (``requests``): a keep-alive loop to a local server (in its own process, so
   that its work is not ours) through urllib3, requests, httpx sync, httpx async, httpx2
   sync and async (Python 3.11+) and aiohttp, with the plugin's tracking installed
   (``Instrumentation.install()``) and not. Target: at most 1.01.
2. Start-up (``startup``): ``pytest --co`` on a one-test project, ``--leak-check`` (and
   the plugin merely installed) against ``-p no:connleak``. Target: at most +15 ms.
3. Per test (``tests``): pytest on 2,000 trivial tests and on 500 tests that make one
   request each, ``--leak-check`` against ``-p no:connleak``. Target: at most 1.02.
4. For comparison (``openfiles``), the 2,000 trivial tests under pytest-openfiles
   (``--open-files``), when that plugin is installed.
5. Memory (``memory``): the ledger's object count and the bytes it holds after 1,000,
   100,000 and 1,000,000 leases of one pool, and after 100,000 pools created and dropped.
   Target: flat.

Times are CPU times (this process's for the loops, the child's for pytest runs): the
machine this runs on is often shared, and wall-clock time then mostly measures the
others. On and off are interleaved within each round, and which goes first alternates
between rounds; each figure is printed twice, from the fastest rounds (``min``) and as
the median of the rounds' own ratios (``median``). Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import functools
import gc
import importlib.metadata
import importlib.util
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
import types
import weakref
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

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
    """CPU and wall-clock times of the measured side and its baseline, a pair per round.

    CPU time is what counts (this process's for the request loops, the child's for pytest
    runs): on a machine shared with other work, wall-clock time mostly measures the others.
    Two estimates are printed, and a target is met only when both meet it:

    - *min*: the fastest "on" round over the fastest "off" round. Interference only ever
      adds time, so the fastest round of each side is the least disturbed one;
    - *median*: the median over rounds of each round's own on/off ratio. On and off run
      back to back within a round, so a slow spell of the machine falls on both.

    When the two disagree about a target, the figure is reported as unclear rather than
    met: a noisy machine can neither hide a cost nor fake a gain that way.
    """

    name: str
    count: int
    target: float | None = None
    note: str = ""
    on: list[tuple[float, float]] = field(default_factory=list)
    off: list[tuple[float, float]] = field(default_factory=list)

    def ratios(self, which: int) -> list[float]:
        return [a[which] / b[which] for a, b in zip(self.on, self.off, strict=True)]

    def min_ratio(self, which: int = 1) -> float:
        return min(a[which] for a in self.on) / min(b[which] for b in self.off)

    def median_ratio(self, which: int = 1) -> float:
        return statistics.median(self.ratios(which))

    def extra(self) -> tuple[float, float]:
        """CPU seconds per unit on top of the baseline: (min-based, median of rounds)."""
        low = min(a[1] for a in self.on) - min(b[1] for b in self.off)
        mid = statistics.median(a[1] - b[1] for a, b in zip(self.on, self.off, strict=True))
        return low / self.count, mid / self.count

    def verdict(self) -> str:
        if self.target is None:
            return ""
        met = [self.min_ratio() <= self.target, self.median_ratio() <= self.target]
        word = "met" if all(met) else "missed" if not any(met) else "unclear"
        return f"≤ {self.target:.2f}: {word}"

    def cells(self) -> list[str]:
        low, mid = self.extra()
        return [
            self.name,
            f"{min(b[1] for b in self.off) * 1e3:,.0f} ms",
            f"{self.min_ratio():.3f}",
            f"{self.median_ratio():.3f}",
            f"{low * 1e6:+.1f} / {mid * 1e6:+.1f} µs",
            f"{self.median_ratio(0):.3f}",
            str(len(self.on)),
            self.verdict(),
        ]


HEADER = [
    "benchmark",
    "baseline CPU (min)",
    "CPU ratio, min",
    "CPU ratio, median",
    "extra CPU / unit (min / median)",
    "wall ratio (median)",
    "rounds",
    "target",
]


@dataclass
class Delta:
    """Like :class:`Ratio`, for a fixed cost judged in milliseconds (start-up)."""

    name: str
    target_ms: float | None
    note: str = ""
    on: list[tuple[float, float]] = field(default_factory=list)
    off: list[tuple[float, float]] = field(default_factory=list)

    def deltas(self) -> tuple[float, float]:
        low = min(a[1] for a in self.on) - min(b[1] for b in self.off)
        mid = statistics.median(a[1] - b[1] for a, b in zip(self.on, self.off, strict=True))
        return low * 1e3, mid * 1e3

    def verdict(self) -> str:
        if self.target_ms is None:
            return ""
        met = [d <= self.target_ms for d in self.deltas()]
        word = "met" if all(met) else "missed" if not any(met) else "unclear"
        return f"≤ +{self.target_ms:g} ms: {word}"

    def cells(self) -> list[str]:
        low, mid = self.deltas()
        wall = statistics.median(a[0] - b[0] for a, b in zip(self.on, self.off, strict=True))
        return [
            self.name,
            f"{min(b[1] for b in self.off) * 1e3:,.0f} ms",
            f"{low:+.1f} ms",
            f"{mid:+.1f} ms",
            f"{wall * 1e3:+.1f} ms",
            str(len(self.on)),
            self.verdict(),
        ]


DELTA_HEADER = [
    "benchmark",
    "baseline CPU (min)",
    "extra CPU, min",
    "extra CPU, median",
    "extra wall (median)",
    "rounds",
    "target",
]


Measured = TypeVar("Measured", Ratio, Delta)


def alternate(rounds: int, ratio: Measured, run: Callable[[bool], tuple[float, float]]) -> Measured:
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


def loop_httpx(url: str, n: int, module: str = "httpx") -> tuple[float, float]:
    httpx = importlib.import_module(module)  # httpx2 has httpx's API

    with httpx.Client() as client:
        client.get(url)
        start = clocks()
        for _ in range(n):
            client.get(url)
        return since(start)


def loop_httpx_async(url: str, n: int, module: str = "httpx") -> tuple[float, float]:
    httpx = importlib.import_module(module)

    async def main() -> tuple[float, float]:
        async with httpx.AsyncClient() as client:
            await client.get(url)
            start = clocks()
            for _ in range(n):
                await client.get(url)
            return since(start)

    return asyncio.run(main())


def loop_aiohttp(url: str, n: int) -> tuple[float, float]:
    import aiohttp

    async def main() -> tuple[float, float]:
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as response:
                await response.read()
            start = clocks()
            for _ in range(n):
                async with session.get(url) as response:
                    await response.read()
            return since(start)

    return asyncio.run(main())


Loop = Callable[[str, int], tuple[float, float]]

CLIENTS: dict[str, tuple[str, str, Loop]] = {
    # label: (module to import, adapter that tracks it, loop)
    "urllib3": ("urllib3", "urllib3", loop_urllib3),
    "requests": ("requests", "urllib3", loop_requests),
    "httpx (sync)": ("httpx", "httpcore", loop_httpx),
    "httpx (async)": ("httpx", "httpcore", loop_httpx_async),
    # httpx2 (Python 3.11+; under the OpenAI and Anthropic SDKs): httpcore's adapter on httpcore2
    "httpx2 (sync)": ("httpx2", "httpcore2", functools.partial(loop_httpx, module="httpx2")),
    "httpx2 (async)": (
        "httpx2",
        "httpcore2",
        functools.partial(loop_httpx_async, module="httpx2"),
    ),
    "aiohttp": ("aiohttp", "aiohttp", loop_aiohttp),
}


def per_request(
    url: str, n: int, rounds: int, clients: Collection[str] | None = None
) -> list[Ratio]:
    """The request loops of *clients* (labels of ``CLIENTS``; None: every one)."""
    with tracking(True) as probe:
        # Pending: not imported yet, patched on first import (the warm-up below imports it).
        tracked = {adapter.name for adapter in (*probe.installed, *probe.pending)}
    results = []
    for label, (module, adapter, loop) in CLIENTS.items():
        if clients is not None and label not in clients:
            continue
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


PYCACHE: Path | None = None
"""Where the pytest runs keep their bytecode (set by main): out of the source tree."""


def pytest_run(
    suite: Path, *args: str, url: str = "", bytecode: bool = True
) -> tuple[float, float]:
    env = dict(os.environ, CONNLEAK_BENCH_URL=url)
    env.pop("PYTEST_ADDOPTS", None)
    # Bytecode as Python keeps it by default, pytest's rewritten modules included: the
    # first (warm-up) run writes it, the measured runs read it, on both sides alike.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if PYCACHE is not None:
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    if not bytecode:
        # Some CI images set this: nothing is cached, and pytest rewrites the asserts of
        # every plugin module (ours included) in every run.
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
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

        run(True)  # warm up: the file system cache, and the bytecode of both sides
        run(False)
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
        return 'pytest-openfiles is not installed here (pip install -e ".[dev,bench]")'
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


# -- 3. start-up ------------------------------------------------------------------------------


def startup(rounds: int, tmp: Path) -> list[Delta]:
    """``pytest --co`` on a one-test project: the fixed cost of the plugin per pytest run."""
    suite = write_suite(tmp / "startup", 1, "pass")
    results = []
    for flags, what, bytecode, target in (
        (["--leak-check"], "--leak-check", True, 15.0),
        ([], "installed, not asked for", True, 15.0),
        (["--leak-check"], "--leak-check, no bytecode cache", False, None),
    ):

        def run(
            on: bool, flags: list[str] = flags, bytecode: bool = bytecode
        ) -> tuple[float, float]:
            return pytest_run(
                suite, "--co", *(flags if on else ["-p", "no:connleak"]), bytecode=bytecode
            )

        run(True)  # warm up: write the bytecode of both sides
        run(False)
        results.append(
            alternate(
                rounds,
                Delta(f"start-up, pytest --co on one test: {what} / -p no:connleak", target),
                run,
            )
        )
    return results


# -- 4. memory --------------------------------------------------------------------------------


def deep_size(root: object) -> int:
    """Bytes held by *root* through strong references, stopping at code and modules.

    Weak references count for themselves only: what the ledger holds weakly is not its.
    """
    seen: set[int] = set()
    stack = [root]
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, STOP_TYPES):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, weakref.ref | threading.local):
            continue
        stack.extend(gc.get_referents(obj))
    return total


STOP_TYPES = (type, types.ModuleType, types.FunctionType, types.CodeType, types.FrameType)


@dataclass
class Memory:
    """The ledger's size at checkpoints of one pattern: objects, and bytes held."""

    pattern: str
    sizes: dict[int, tuple[int, int]] = field(default_factory=dict)

    def cells(self) -> list[str]:
        points = sorted(self.sizes.items())
        objects = {size[0] for _, size in points}
        grown = points[-1][1][1] - points[0][1][1]
        # A dict keeps the slots of deleted keys until it is next resized: a few hundred
        # bytes of slack come and go. Growth means more than that.
        verdict = "flat" if len(objects) == 1 and grown <= SLACK else "GROWS"
        return [
            self.pattern,
            "; ".join(f"{n:,}: {o} objects, {b:,} B" for n, (o, b) in points),
            verdict,
        ]


SLACK = 1024

MEMORY_HEADER = [
    "memory: the ledger at checkpoints",
    "count: ledger objects, bytes held",
    "verdict",
]


def between_tests(ledger: Ledger) -> None:
    """What the plugin does to the ledger between two checked tests."""
    take = getattr(ledger, "take_usage", None)
    if take is not None:
        take()


def memory(url: str, checkpoints: list[int], pool_checkpoints: list[int]) -> list[Memory]:
    import urllib3

    results = []
    with tracking(True) as instrumentation:
        ledger = instrumentation.ledger

        def note(result: Memory, done: int) -> None:
            if done in result.sizes or done not in points:
                return
            gc.collect()
            result.sizes[done] = (ledger.size(), deep_size(ledger))

        # Real requests, to the largest checkpoint that a loopback loop reaches quickly.
        points = [n for n in checkpoints if n <= 100_000]
        result = Memory("one PoolManager, keep-alive requests")
        with urllib3.PoolManager() as pm:
            for done in range(1, points[-1] + 1):
                pm.request("GET", url)
                if done in points:
                    note(result, done)
        results.append(result)

        # The lease and return of a request without its socket I/O, through urllib3's own
        # pool methods (what the plugin patches): a million of them in seconds.
        points = checkpoints
        result = Memory("one pool, lease/return cycles (_get_conn/_put_conn, no I/O)")
        pool = urllib3.HTTPConnectionPool("127.0.0.1", 9, maxsize=1)
        for done in range(1, points[-1] + 1):
            pool._put_conn(pool._get_conn())
            if done % 1000 == 0:
                between_tests(ledger)
            if done in points:
                note(result, done)
        results.append(result)
        pool.close()

        for windows in (True, False):
            points = pool_checkpoints
            result = Memory(
                "a new pool per lease, dropped at once, "
                + ("plugin's per-test bookkeeping every 100" if windows else "no tests")
            )
            between_tests(ledger)
            for done in range(1, points[-1] + 1):
                pool = urllib3.HTTPConnectionPool("127.0.0.1", 9, maxsize=1)
                pool._put_conn(pool._get_conn())
                del pool
                if windows and done % 100 == 0:
                    between_tests(ledger)
                if done in points:
                    note(result, done)
            results.append(result)
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
        "httpx2",
        "httpcore2",
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


SECTIONS = ("requests", "startup", "tests", "openfiles", "memory")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="small counts, one round: a smoke run")
    parser.add_argument(
        "--rounds", type=int, help="rounds per figure (default 11 per request, 7 per pytest run)"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=SECTIONS,
        help="run only these sections (repeatable); nothing is written unless --output is given",
    )
    parser.add_argument(
        "--client",
        action="append",
        choices=list(CLIENTS),
        help="per request: only these clients (repeatable); nothing is written unless "
        "--output is given",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="where to write the results (default benchmarks/RESULTS.md; --quick and --only "
        "write nothing unless given)",
    )
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return 0

    quick = args.quick
    only = set(args.only or SECTIONS)
    rounds = args.rounds or (1 if quick else 11)
    test_rounds = args.rounds or (1 if quick else 7)
    startup_rounds = args.rounds or (1 if quick else 15)
    requests_n = 100 if quick else 2000
    trivial, requesting = (50, 10) if quick else (2000, 500)
    checkpoints = [1000, 2000] if quick else [1000, 100_000, 1_000_000]
    pool_checkpoints = [1000, 2000] if quick else [1000, 100_000, 1_000_000]

    # As pip leaves an installed package: compiled. This environment may set
    # PYTHONDONTWRITEBYTECODE, and then every pytest run would compile the plugin again,
    # a cost (about 100 ms) that no installed copy pays.
    package = Path(importlib.util.find_spec("pytest_connleak").origin or "").parent
    compileall.compile_dir(package, quiet=1)
    global PYCACHE

    started = time.time()
    ratios: list[Ratio] = []
    deltas: list[Delta] = []
    mem: list[Memory] = []
    notes = []
    compare: Ratio | str | None = None
    with server() as url, tempfile.TemporaryDirectory() as tmp:
        PYCACHE = Path(tmp) / "pycache"
        print(f"server: {url}", flush=True)
        if "requests" in only:
            ratios += per_request(url, requests_n, rounds, args.client)
            print(text_table(HEADER, [r.cells() for r in ratios]), flush=True)
        if "startup" in only:
            deltas += startup(startup_rounds, Path(tmp))
            print(text_table(DELTA_HEADER, [d.cells() for d in deltas]), flush=True)
        if "tests" in only:
            tests = per_test(url, trivial, requesting, test_rounds, Path(tmp))
            print(text_table(HEADER, [r.cells() for r in tests]), flush=True)
            ratios += tests
        if "openfiles" in only:
            compare = openfiles(trivial, 1, Path(tmp))
        if "memory" in only:
            mem = memory(url, checkpoints, pool_checkpoints)

    rows = [r.cells() for r in ratios]
    notes += [f"{r.name}: {r.note}" for r in ratios if r.note]
    if isinstance(compare, Ratio):
        rows.append(compare.cells())
    elif compare is not None:
        notes.append(compare)
    mem_rows = [m.cells() for m in mem]

    print()
    print(text_table(HEADER, rows))
    print()
    print(text_table(DELTA_HEADER, [d.cells() for d in deltas]))
    print()
    print(text_table(MEMORY_HEADER, mem_rows))
    for note in notes:
        print(f"note: {note}")

    command = "python benchmarks/run.py" + (" --quick" if quick else "")
    command += f" --rounds {args.rounds}" if args.rounds else ""
    command += "".join(f" --only {name}" for name in args.only or ())
    command += "".join(f" --client '{name}'" for name in args.client or ())
    machine = [
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores; load average at the end "
        + ", ".join(f"{x:.1f}" for x in os.getloadavg()),
        f"- OS: {platform.platform()}",
        f"- Python: {platform.python_implementation()} {platform.python_version()}",
        "- Libraries: " + ", ".join(f"{k} {v}" for k, v in versions().items()),
        f"- Date: {time.strftime('%Y-%m-%d %H:%M %Z')}, took {time.time() - started:.0f} s",
        f"- Command: `{command}`; {rounds} rounds per request figure, {test_rounds} per "
        f"pytest run figure, {startup_rounds} for start-up, 1 for pytest-openfiles",
    ]
    body = [
        "# Benchmark results",
        "",
        "Written by `benchmarks/run.py`. Every figure is measured against a baseline in the",
        "same run, on and off interleaved (which goes first alternates between rounds), in",
        "CPU time. *min* compares the fastest round of each side, *median* is the median",
        "of the rounds' own ratios; a target counts as met only when both meet it.",
        "",
        "## Machine",
        "",
        *machine,
        "",
    ]
    if rows:
        body += ["## Time", "", markdown_table(HEADER, rows), ""]
    if deltas:
        body += ["## Start-up", "", markdown_table(DELTA_HEADER, [d.cells() for d in deltas]), ""]
    if mem_rows:
        body += ["## Memory", "", markdown_table(MEMORY_HEADER, mem_rows), ""]
    if notes:
        body += ["## Notes", "", *[f"- {note}" for note in notes], ""]
    missed = [r.name for r in [*ratios, *deltas] if r.verdict() and not r.verdict().endswith("met")]
    if missed:
        body += ["## Targets not met in this run", "", *[f"- {name}" for name in missed], ""]
    default = None if quick or args.only or args.client else HERE / "RESULTS.md"
    output = args.output or default
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
