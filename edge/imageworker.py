"""An image worker process's loop, in a module of its own: a worker imports only this and
the `images` package, not the edge (aiohttp, pydantic, the config models).

A job makes one output, from the source's bytes or from a master: the source decoded once
(images.decode_master) into a sealed memory file (memfd) that the edge holds and hands to
whichever worker needs it, so a family of sizes and formats of one photo costs one decode.
A large source goes to the worker the same way, in a memory file rather than through the
pipe (a copy fewer on each side, and no pickling of megabytes). File descriptors travel
beside the pickled messages on the pipe's Unix socket (SCM_RIGHTS).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import pickle
import signal
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from multiprocessing.reduction import recv_handle, send_handle
from typing import Any

from PIL import Image

from images import Limits, Master, Result, Spec, decode_master, render, transform

# A master is sealed once written: no process holding it, the edge included, can change it.
_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL


def masters_supported() -> bool:
    """Masters need memfd_create and file sealing (Linux)."""
    return hasattr(os, "memfd_create") and hasattr(fcntl, "F_ADD_SEALS")


@dataclass(frozen=True, slots=True)
class Job:
    """One output. With `master` set, its memory file follows the job on the pipe and the
    source is not sent; `keep` (a width) asks the worker to decode a master for outputs up
    to that width from `source`, make the output from it and send the master back."""

    spec: Spec
    limits: Limits
    source: bytes | None = None
    master: Master | None = None
    keep: int = 0
    source_file: int = 0  # the source's length, when it follows as a memory file instead


def memory_file(data: bytes, name: str) -> int:
    """A sealed memory file holding `data` (its descriptor: the caller's to close)."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, len(data))
        view, written = memoryview(data), 0
        while written < len(data):
            written += os.pwrite(fd, view[written:], written)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd


def serve(conn: Connection) -> None:
    """Jobs, one at a time, until the pipe closes. Out: `(True, Result | None, Master |
    None)` — None for a master too small for the spec, and a new master's memory file
    follows — or `(False, exception, None)`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the edge's; it ends us
    while True:
        try:
            job: Job = conn.recv()
            held = recv_handle(conn) if job.master is not None else -1
            if job.source_file:
                source = recv_handle(conn)
                try:
                    with mmap.mmap(source, job.source_file, prot=mmap.PROT_READ) as mm:
                        job = replace(job, source=mm[:], source_file=0)
                finally:
                    os.close(source)
        except EOFError:
            return
        made: tuple[Master, int] | None = None
        try:
            if job.master is not None:
                outcome: tuple[bool, Any, Master | None] = (
                    True, _from_master(held, job.master, job), None)
            elif job.keep:
                result, made = _with_master(job)
                outcome = (True, result, made[0] if made is not None else None)
            else:
                assert job.source is not None
                outcome = (True, transform(job.source, job.spec, job.limits), None)
        except Exception as e:  # ImageError, or a bug: the edge raises it
            outcome = (False, e, None)
        finally:
            if held >= 0:
                os.close(held)
        try:
            conn.send(outcome)
        except (TypeError, AttributeError, pickle.PicklingError):  # an unpicklable error
            conn.send((False, RuntimeError(repr(outcome[1])[:500]), None))
        if made is not None:
            send_handle(conn, made[1], os.getppid())
            os.close(made[1])


def _from_master(fd: int, master: Master, job: Job) -> Result | None:
    with mmap.mmap(fd, master.nbytes, prot=mmap.PROT_READ) as mm:
        pixels = Image.frombuffer(master.mode, master.size, mm,  # type: ignore[arg-type]
                                  "raw", master.mode, 0, 1)
        try:
            return render(pixels, master, job.spec, job.limits)
        finally:
            pixels.close()
            del pixels  # no view of the map left: it can close


def _with_master(job: Job) -> tuple[Result, tuple[Master, int] | None]:
    assert job.source is not None
    pixels, master = decode_master(job.source, job.limits, job.keep)
    result = render(pixels, master, job.spec, job.limits)
    if result is None:  # asked for more than the routes' widths (a signed size)
        result = transform(job.source, job.spec, job.limits)
    try:
        fd = memory_file(pixels.tobytes(), "edge-image-master")
    except OSError:  # out of memory or file descriptors: the output all the same
        return result, None
    return result, (master, fd)
