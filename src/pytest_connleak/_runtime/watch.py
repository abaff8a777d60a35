"""``connleak watch``: count a running process's TCP sockets by state, CLOSE_WAIT first.

The outage this project comes from was found with ``netstat -a | grep CLOSE_WAIT | wc -l``
and then watched by hand in a loop piped to mail. This is that loop: ``--warn`` and
``--fail`` are thresholds on the CLOSE_WAIT count (a socket whose peer has closed but that
this process never closed: a leaked or an idle pooled connection), ``--exec`` is the mail
step, run once, and ``--once --json`` is the snapshot a health check reads.

Exit status: 0 when done, 1 when ``--fail`` was reached, 2 for a usage error, a process
that does not exist (or exits while watched), no permission, or no psutil.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import IO, Any

from pytest_connleak._core.sockets import PSUTIL_MISSING, SocketInfo, tcp_sockets

__all__ = ["Snapshot", "build_parser", "main"]

PROG = "connleak"
CLOSE_WAIT = "CLOSE_WAIT"
EXIT_FAIL = 1
EXIT_ERROR = 2


class WatchError(Exception):
    """A condition that ends the watch with a one-line message and exit status 2."""


class Snapshot:
    """The TCP sockets of one process at one moment."""

    def __init__(self, pid: int, sockets: list[SocketInfo]) -> None:
        self.pid = pid
        self.sockets = sorted(sockets, key=lambda s: (s.state, s.remote or "", s.local))
        self.counts = Counter(s.state for s in self.sockets)

    @property
    def close_wait(self) -> int:
        return self.counts.get(CLOSE_WAIT, 0)

    def as_json(self) -> dict[str, Any]:
        """``{"pid": ..., "counts": {state: n}, "sockets": [{"state", "local", "remote"}]}``.

        ``remote`` is ``null`` for a socket with no peer (a listening socket).
        """
        return {
            "pid": self.pid,
            "counts": dict(sorted(self.counts.items())),
            "sockets": [
                {"state": s.state, "local": s.local, "remote": s.remote} for s in self.sockets
            ],
        }

    def text(self, color: bool) -> list[str]:
        """A headline with the CLOSE_WAIT count first, then one line per state and peer."""
        count = f"{CLOSE_WAIT} {self.close_wait}"
        if color:
            # Yellow when there are any, to be seen at a glance in a scrolling terminal.
            count = f"\033[1;33m{count}\033[0m" if self.close_wait else f"\033[1m{count}\033[0m"
        others = ", ".join(f"{state} {n}" for state, n in sorted(self.counts.items()))
        stamp = time.strftime("%H:%M:%S")
        lines = [f"{stamp} pid {self.pid}: {count}  ({len(self.sockets)} TCP: {others or '-'})"]
        by_peer = Counter((s.state, s.remote or "-") for s in self.sockets)
        for (state, remote), n in sorted(by_peer.items(), key=_close_wait_first):
            lines.append(f"  {state:<12} {n:>5}  {remote}")
        return lines


def _close_wait_first(item: tuple[tuple[str, str], int]) -> tuple[bool, str, str]:
    (state, remote), _ = item
    return (state != CLOSE_WAIT, state, remote)


def build_parser() -> argparse.ArgumentParser:
    """The ``connleak`` argument parser (one subcommand, ``watch``)."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Tools of pytest-connleak that work outside pytest."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    watch = sub.add_parser(
        "watch",
        help="watch a running process's TCP sockets, CLOSE_WAIT first",
        description="Poll a running process and print its TCP sockets by state and peer, "
        "with the CLOSE_WAIT count first. Exit status: 0 done, 1 --fail reached, 2 error.",
    )
    watch.set_defaults(subparser=watch)  # so that argument errors print the watch usage
    watch.add_argument("--pid", type=int, required=True, help="the process to watch")
    watch.add_argument(
        "--interval", type=float, default=5.0, help="seconds between polls (default 5)"
    )
    watch.add_argument(
        "--warn", type=int, metavar="N", help="print a warning when CLOSE_WAIT reaches N"
    )
    watch.add_argument(
        "--fail", type=int, metavar="N", help="stop with exit status 1 when CLOSE_WAIT reaches N"
    )
    watch.add_argument(
        "--exec",
        dest="exec_cmd",
        metavar="CMD",
        help="shell command run once, the first time --warn or --fail is reached; it gets "
        "CONNLEAK_PID, CONNLEAK_CLOSE_WAIT and CONNLEAK_LEVEL (warn or fail) in its environment",
    )
    watch.add_argument("--once", action="store_true", help="print one snapshot and exit")
    watch.add_argument(
        "--count", type=int, metavar="N", help="stop after N polls (default: until interrupted)"
    )
    watch.add_argument(
        "--json",
        action="store_true",
        help='print JSON: {"pid", "counts", "sockets": [{"state", "local", "remote"}]}, '
        "one object per poll, one per line",
    )
    return parser


def _check_args(args: argparse.Namespace) -> None:
    parser: argparse.ArgumentParser = args.subparser
    if args.interval <= 0:
        parser.error(f"--interval must be a positive number of seconds, got {args.interval}")
    for name in ("warn", "fail", "count"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be at least 1, got {value}")
    if args.exec_cmd is not None and args.warn is None and args.fail is None:
        parser.error("--exec needs a threshold to run at: give --warn N or --fail N")


def _process(pid: int) -> Any:
    try:
        import psutil
    except ImportError:
        raise WatchError(f"connleak watch {PSUTIL_MISSING}") from None
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        raise WatchError(f"connleak watch: no process with pid {pid}") from None
    except psutil.AccessDenied:
        raise WatchError(_denied(pid)) from None


def _denied(pid: int) -> str:
    return (
        f"connleak watch: permission denied reading the sockets of pid {pid} "
        "(run as the same user as the process, or as root)"
    )


def snapshot(process: Any) -> Snapshot:
    """List *process*'s TCP sockets; :class:`WatchError` if it is gone or hidden from us."""
    import psutil

    try:
        return Snapshot(process.pid, tcp_sockets(process))
    except psutil.NoSuchProcess:
        raise WatchError(f"connleak watch: process {process.pid} no longer exists") from None
    except psutil.AccessDenied:
        raise WatchError(_denied(process.pid)) from None


def _run_exec(cmd: str, snap: Snapshot, level: str, out: IO[str]) -> None:
    env = dict(
        os.environ,
        CONNLEAK_PID=str(snap.pid),
        CONNLEAK_CLOSE_WAIT=str(snap.close_wait),
        CONNLEAK_LEVEL=level,
    )
    # The user's own command line, run by their shell like the `| mail` it replaces.
    done = subprocess.run(cmd, shell=True, env=env, check=False)
    if done.returncode != 0:
        print(f"connleak watch: --exec command exited with status {done.returncode}", file=out)


def watch(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """Run the polling loop described by parsed *args*; return the exit status."""
    process = _process(args.pid)
    color = not args.json and out.isatty()
    polls = 1 if args.once else args.count
    executed = was_warned = False
    n = 0
    while True:
        snap = snapshot(process)
        n += 1
        if args.json:
            print(json.dumps(snap.as_json()), file=out)
        else:
            print("\n".join(snap.text(color)), file=out)
        out.flush()
        failed = args.fail is not None and snap.close_wait >= args.fail
        warn = args.warn is not None and snap.close_wait >= args.warn
        # Warn on the way up only, not at every poll while above the threshold.
        if failed or (warn and not was_warned):
            level, limit = ("fail", args.fail) if failed else ("warn", args.warn)
            print(
                f"connleak watch: {level.upper()}: pid {snap.pid} has {snap.close_wait} "
                f"sockets in {CLOSE_WAIT} (--{level} {limit})",
                file=err,
            )
            err.flush()
            if args.exec_cmd and not executed:
                executed = True
                _run_exec(args.exec_cmd, snap, level, err)
        was_warned = warn
        if failed:
            return EXIT_FAIL
        if polls is not None and n >= polls:
            return 0
        time.sleep(args.interval)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``connleak`` console script and ``python -m pytest_connleak``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(args)
    try:
        return watch(args, sys.stdout, sys.stderr)
    except WatchError as exc:
        print(exc, file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 0
