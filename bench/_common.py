"""Shared by the benchmark's server scripts (run as `python bench/<script>.py`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Coroutine
from dataclasses import dataclass
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


def run_helper(main: Coroutine[Any, Any, Any], *, nofile: bool = False) -> None:
    """A bench helper process's whole life: `main` on a new_loop() (Ctrl-C ends it
    quietly), with the soft open-file limit raised to the hard one first when `nofile`."""
    if nofile:
        raise_nofile()
    loop = new_loop()
    try:
        loop.run_until_complete(main)
    except KeyboardInterrupt:
        pass
    finally:
        loop.close()


def raise_nofile() -> int:
    """Soft open-file limit up to the hard one; children (edge, clients) inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


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


# -------------------------------------------------------------------------- baseline

# the project's top-level packages (pyproject.toml), which a baseline must bring its own of
PACKAGES = ("edge", "images")


@dataclass(frozen=True, slots=True)
class Baseline:
    """Another checkout of the repo (a git worktree), whose `edge` the bench also runs.

    Its edge runs as `python -m edge serve ...` (this venv's interpreter, so the same
    dependencies) with PYTHONPATH=`root` and `root` as the working directory: with -m (and
    -c) Python puts the working directory first on sys.path, so from the main checkout it
    would import the main checkout's `edge` whatever PYTHONPATH says. The editable install's
    finder comes after sys.path, so `root`'s packages win."""

    root: Path
    commit: str  # `git describe --always --dirty` of root, or "?"
    files: tuple[tuple[str, str], ...]  # (package, its __file__ as imported under env)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(self.root)}

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "edge", *args]

    def describe(self) -> str:
        imported = ", ".join(f"{pkg} from {file}" for pkg, file in self.files)
        return f"baseline: {self.root} at {self.commit}; its edge imports {imported}"

    def as_json(self, **more: object) -> dict[str, object]:
        return {"dir": str(self.root), "commit": self.commit, "files": dict(self.files),
                **more}


def baseline_arg(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--baseline", metavar="DIR", type=Path,
                    help="another checkout (git worktree) of the repo: also run its edge "
                    "(python -m edge, PYTHONPATH=DIR) as a '(baseline)' twin of every edge "
                    "target, in the same rounds, and report new/baseline req/s")


def open_baseline(ap: argparse.ArgumentParser, path: Path | None) -> Baseline | None:
    """The --baseline checkout, checked: each package it has is imported from it under the
    env and working directory its edge runs with (else exit 2 with the reason)."""
    if path is None:
        return None
    root = path.resolve()
    if not (root / "edge" / "__main__.py").is_file():
        ap.error(f"--baseline {path}: no edge/__main__.py there; expected a checkout of the "
                 "repo, e.g. `git worktree add /tmp/base <commit>`")
    pkgs = [p for p in PACKAGES if (root / p / "__init__.py").is_file()]
    code = ("import importlib, json, sys; print(json.dumps({p: importlib.import_module(p)"
            ".__file__ for p in sys.argv[1:]}))")
    b = Baseline(root, "?", ())
    proc = subprocess.run([sys.executable, "-c", code, *pkgs], cwd=root, env=b.env,
                          capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        ap.error(f"--baseline {path}: importing {', '.join(pkgs)} failed:\n{proc.stderr}")
    files: dict[str, str] = json.loads(proc.stdout)
    for pkg, file in files.items():
        if not Path(file).resolve().is_relative_to(root):
            ap.error(f"--baseline {path}: {pkg} was imported from {file}, not from {root}")
    git = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty"],
                         capture_output=True, text=True, timeout=30, check=False)
    commit = git.stdout.strip() if git.returncode == 0 else "?"
    return Baseline(root, commit, tuple(files.items()))


CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields from the 3rd (state) on; None once the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of one process so far (0 when unknown or gone)."""
    fields = proc_stat(pid) if pid is not None else None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK if fields else 0.0
