"""Counting instructions under valgrind's callgrind, shared by the benchmarks.

A benchmark runs its loop in a child process (``command()``), and the child counts only
what runs inside ``counted()``: the imports, servers and warm-up before it are not
counted. Without address randomisation and with a fixed hash seed, dicts keyed by
``id()`` and by ``str`` lay out the same in every run, so the counts repeat.
"""

from __future__ import annotations

import functools
import gc
import os
import shutil
from collections.abc import Callable


def require() -> None:
    """Exit with a clear message when valgrind is not installed."""
    if shutil.which("valgrind") is None:
        raise SystemExit("counting instructions needs valgrind (apt-get install valgrind)")


def command(out: str, argv: list[str]) -> list[str]:
    """The command that runs *argv* under callgrind, writing its counts to *out*."""
    args = ["setarch", "-R"] if shutil.which("setarch") else []
    args += ["valgrind", "--tool=callgrind", "--collect-atstart=no"]
    args += ["--toggle-collect=functools_reduce", f"--callgrind-out-file={out}"]
    return args + argv


def environment() -> dict[str, str]:
    """The child's environment: this one with a fixed hash seed."""
    return {**os.environ, "PYTHONHASHSEED": "0"}


def counted(loop: Callable[[], object]) -> None:
    """Run *loop* once inside the window that ``command()`` counts."""
    # A collection of the old generations inside the window would count the whole heap.
    gc.collect()
    gc.freeze()
    # One element and an initial value: reduce() calls the loop once (two elements would
    # call it twice and double every count).
    functools.reduce(lambda _, __: loop(), [0], None)


def total(path: str) -> int:
    """The instructions counted in callgrind's output file *path*."""
    with open(path, encoding="utf-8") as out:
        for line in out:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")
