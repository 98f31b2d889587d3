"""Shared by the benchmark's server scripts (run as `python bench/<script>.py`)."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web


def new_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop when uvloop is installed (as the edge uses), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def serve_until_stopped(runner: web.BaseRunner, port: int, **site: Any) -> None:
    """Serve `runner` on 127.0.0.1:`port` with the edge's listen backlog and GC settings
    until SIGTERM or SIGINT, then clean up. `site`: more TCPSite options."""
    import gc

    from aiohttp import web

    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=2048, **site).start()
    gc.collect()  # as the edge does once it listens
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def round_args(ap: argparse.ArgumentParser, *, connections_help: str) -> None:
    """The load options every wrk-driven bench shares."""
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    ap.add_argument("--duration", type=float, default=5.0,
                    help="seconds per wrk run (default 5)")
    ap.add_argument("--connections", type=int, default=64, help=connections_help)
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per target")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round of 2 s")


def settle_rounds(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 2.0, 1.0
    if args.rounds < 1 or args.duration < 1:
        ap.error("--rounds and --duration must be at least 1")


def _sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


EDGE_BIN = Path(sys.executable).parent / "edge"


def preflight(script: str, *, wrk: bool) -> int | None:
    """Exit code 2 with a message when a tool is missing; else None. Makes SIGTERM stop
    the bench like Ctrl-C, so its child processes are cleaned up."""
    if wrk and shutil.which("wrk") is None:
        print(f"bench/{script} needs the wrk load generator: `apt-get install wrk`",
              file=sys.stderr)
        return 2
    if not EDGE_BIN.exists():
        print(f"{EDGE_BIN} not found: install the project (`pip install -e .`)",
              file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _sigterm)
    return None
