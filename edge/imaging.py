"""Image routes at serving time: what this request asks for, and a pool of worker
processes that does the Pillow work, so the event loop never waits on a transform.

The transformation itself lives in the top-level `images` package (no HTTP there).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import multiprocessing
import os
import tempfile
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from multiprocessing.reduction import recv_handle, send_handle
from typing import Any

from images import (
    ImageError,
    Limits,
    Master,
    Result,
    Spec,
    choose_format,
    client_width,
    encodable,
    save_data,
    signature_of,
    snap_width,
    verify,
)

from .config import ImagePolicy, ImageSettings
from .context import DeviceProfile
from .errors import Problem
from .imageworker import Job, masters_supported, memory_file, serve
from .inputs import HINT_HEADERS, NETWORK_HINTS
from .stores import StoreSize

log = logging.getLogger("edge.images")

# Request headers that may change the answer (besides the device's): sent in Vary.
ACCEPT_CH = ", ".join([*(h for h in HINT_HEADERS if h.startswith("Sec-CH-")),
                       *NETWORK_HINTS])
_EXPLICIT = ("w", "h", "q", "fit")
_SCALE = {"avif": 0.7, "webp": 0.95}  # JPEG quality → about the same look
_STATUS = {"too-large": "bad-image", "too-many-pixels": "bad-image", "corrupt": "bad-image",
           "output-too-large": "bad-image", "encode-failed": "bad-image",
           "unsupported-format": "unsupported-image"}


@dataclass(frozen=True, slots=True)
class ImageRoute:
    """A route's `image` block, compiled."""

    policy: ImagePolicy
    keys: tuple[bytes, ...]
    limits: Limits
    formats: frozenset[str]
    master_width: int
    """The widest output asked for without a signature (widths, presets, defaults): a
    source's master is decoded for it."""

    @classmethod
    def build(cls, policy: ImagePolicy, env: Mapping[str, str]) -> ImageRoute:
        keys = tuple(env[n].encode() for n in policy.signing_keys_env if env.get(n))
        limits = Limits(max_source_bytes=policy.max_source, max_pixels=policy.max_pixels,
                        max_output_bytes=policy.max_output,
                        accept_formats=frozenset(policy.sources))
        variants = [policy.default, *policy.presets.values(), *policy.by_device.values()]
        widest = max([*policy.widths, *(v.width or 0 for v in variants)])
        return cls(policy, keys, limits, frozenset(policy.formats) & encodable(), widest)

    def spec(self, raw_path: str, query: Mapping[str, str], headers: Mapping[str, str],
             device: DeviceProfile) -> Spec:
        """What to make for this request (the route's Vary names every header it reads:
        runtime.image_vary)."""
        p = self.policy
        explicit = any(k in query for k in _EXPLICIT)
        if explicit:
            sig = signature_of(raw_path)
            if not self.keys or sig is None or not verify(raw_path, sig, self.keys):
                raise Problem("forbidden", "w, h, q and fit need a signed URL (sig); "
                              "presets and device sizes don't")
        width = _int(query.get("w"), "w")
        height = _int(query.get("h"), "h")
        quality = _int(query.get("q"), "q")
        preset = query.get("preset")
        if preset is not None:
            chosen = p.presets.get(preset)
            if chosen is None:
                raise Problem("bad-request", f"no preset {preset[:40]!r} here (presets: "
                              f"{', '.join(sorted(p.presets)) or 'none'})")
            width = width or chosen.width
            quality = quality or chosen.quality
        hinted = client_width(headers) if width is None and height is None else None
        if hinted is not None:
            width = hinted
        slow = device.network == "slow" or save_data(headers)
        variant = (p.by_device.get("slow") if slow else None) or p.by_device.get(
            device.device) or p.default
        if width is None and height is None:
            width = variant.width
        if quality is None:
            quality = variant.quality
        if save_data(headers):
            quality = max(30, int((quality or 75) * 0.7))
        if width is not None and not explicit:
            width = snap_width(width, p.widths)
        fit = query.get("fit", p.fit)
        if fit not in ("contain", "cover"):
            raise Problem("bad-request", "fit is contain or cover")
        fmt = choose_format(headers.get("Accept"), "jpeg", self.formats)
        if quality is None:
            quality = p.quality.get(fmt)  # type: ignore[call-overload]
        elif fmt in _SCALE and "q" not in query:
            # presets and device classes speak JPEG quality; AVIF and WebP look the same
            # at lower numbers
            quality = max(1, round(quality * _SCALE[fmt]))
        try:
            spec = Spec(width=width, height=height, fit=fit,  # type: ignore[arg-type]
                        crop=p.crop, format=fmt, quality=quality,  # type: ignore[arg-type]
                        effort=p.effort)
        except ValueError as e:
            raise Problem("bad-request", str(e)) from None
        return spec


def _int(raw: str | None, name: str) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 5:
        raise Problem("bad-request", f"{name} is a whole number")
    return int(raw)


def available_cpus(cgroup: str = "/sys/fs/cgroup/cpu.max") -> int:
    """The CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota (a
    container's `resources.limits.cpu`), not the whole machine's count."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:
        with open(cgroup) as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            n = min(n, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


BY_FILE = 256 * 1024  # a source this large goes to a worker in a memory file, not the pipe


class WorkerDied(Exception):
    """The worker process ended before it answered (killed, or crashed on an image)."""


class _Worker:
    """One worker process and the pipe to it, started by its first transform. A thread
    talks to it (sending, then waiting for the outcome, both block); the loop kills it."""

    def __init__(self, ctx: Any) -> None:
        self.conn, self._child = ctx.Pipe()
        self.process = ctx.Process(target=serve, args=(self._child,), daemon=True,
                                   name="edge-image")
        self.started = False
        self.killed = False

    def exchange(self, job: Job, lent: int) -> tuple[bool, Any, Master | None, int]:
        """In a thread: one job's outcome, and the memory file of a master it made (else
        -1). `lent`: the master's memory file the job uses (else -1), closed here."""
        try:
            if not self.started:
                try:
                    self.process.start()
                except OSError as e:  # e.g. no writable TMPDIR for the forkserver's socket
                    log.error("an image worker could not start: %s (the workers need a "
                              "writable TMPDIR, now %s)", e, tempfile.gettempdir())
                    raise
                self.started = True
                self._child.close()  # only its end left open: its death is our EOF
            source = -1
            if job.source is not None and len(job.source) >= BY_FILE and masters_supported():
                try:
                    source = memory_file(job.source, "edge-image-source")
                    job = replace(job, source=None, source_file=len(job.source))
                except OSError:  # no memory file to be had: through the pipe, then
                    source = -1
            try:
                self.conn.send(job)
                if lent >= 0:
                    send_handle(self.conn, lent, self.process.pid)
                if source >= 0:
                    send_handle(self.conn, source, self.process.pid)
            finally:
                if source >= 0:
                    os.close(source)
            ok, value, made = self.conn.recv()
            return ok, value, made, recv_handle(self.conn) if made is not None else -1
        except (EOFError, OSError):
            raise WorkerDied from None
        finally:
            if lent >= 0:
                os.close(lent)

    def kill(self) -> None:
        """Stop it now, idle or mid-transform (its thread then sees EOF)."""
        self.killed = True
        if self.started:
            try:
                self.process.kill()
            except (ValueError, OSError):  # already gone
                pass

    def retire(self) -> None:
        """Once no thread uses it: killed (again: it may have started after a kill) and
        its pipe closed. The forkserver, its parent, reaps it."""
        self.kill()
        self.conn.close()
        self._child.close()


@dataclass(slots=True)
class _Held:
    master: Master
    fd: int
    source: str


SEEN = 4096  # sources asked for once, remembered so that their second output makes a master


class Masters:
    """Sources decoded once for every further output (a family of sizes and formats):
    sealed memory files, each a master's pixels, held here and lent to whichever worker
    makes an output; keyed by the source and its upstream validators, so a changed source
    is never rendered from an old master. At most `bound` bytes, least recently used out
    first; a master over a quarter of the bound is not kept. The `sources` index gives the
    validators of the master a source has, for the conditional fetch that confirms it.
    A master is made for the second output of a source (`second`), not the first: a photo
    asked for once costs what it would without masters (a decode at the size it needs)."""

    def __init__(self, bound: int, metrics: Any = None) -> None:
        self.bound = bound if masters_supported() else 0
        self.metrics = metrics
        self.bytes = 0
        self.evictions = 0
        self._held: OrderedDict[str, _Held] = OrderedDict()
        self.sources: dict[str, tuple[str, str | None, str | None]] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._gauges()

    def seen_size(self) -> StoreSize:
        return StoreSize(len(self._seen), SEEN)

    def second(self, key: str) -> bool:
        """Is this the second time (or later) a master is wanted for `key`? (The first is
        noted: at most SEEN keys, the oldest forgotten first.)"""
        if key in self._seen:
            return True
        self._seen[key] = None
        if len(self._seen) > SEEN:
            self._seen.popitem(last=False)
        return False

    def __len__(self) -> int:
        return len(self._held)

    @staticmethod
    def key(source: str, etag: str | None, modified: str | None) -> str:
        return hashlib.blake2b(f"{source}\n{etag}\n{modified}".encode(),
                               digest_size=16).hexdigest()

    def lend(self, key: str) -> tuple[Master, int] | None:
        """The master kept under `key` and a duplicate of its file descriptor (the
        borrower's to close), counted as a hit; or None, a miss."""
        held = self._held.get(key)
        if held is not None:
            self._held.move_to_end(key)
        if self.metrics is not None:
            self.metrics.image_masters_lookups.labels(
                "miss" if held is None else "hit").inc()
        return None if held is None else (held.master, os.dup(held.fd))

    def keep(self, key: str, source: str, validators: tuple[str | None, str | None],
             master: Master, fd: int) -> None:
        """Keep a master a worker made (its file descriptor is ours from now on)."""
        if master.nbytes > self.bound // 4:
            os.close(fd)
            return
        self._drop(key)
        stale = self.sources.get(source)
        if stale is not None:  # the source changed: its old master is no use
            self._drop(stale[0])
        self._held[key] = _Held(master, fd, source)
        self.sources[source] = (key, *validators)
        self.bytes += master.nbytes
        while self.bytes > self.bound:
            self._drop(next(iter(self._held)), evicted=True)
        self._gauges()

    def _drop(self, key: str, evicted: bool = False) -> None:
        held = self._held.pop(key, None)
        if held is None:
            return
        os.close(held.fd)
        self.bytes -= held.master.nbytes
        if self.sources.get(held.source, ("",))[0] == key:
            del self.sources[held.source]
        if evicted:
            self.evictions += 1
            if self.metrics is not None:
                self.metrics.image_masters_evictions.inc()

    def _gauges(self) -> None:
        if self.metrics is not None:
            self.metrics.image_masters_bytes.set(self.bytes)
            self.metrics.image_masters_count.set(len(self._held))
            self.metrics.image_masters_bound.set(self.bound)

    def size(self) -> StoreSize:
        return StoreSize(len(self._held), None, self.bytes, self.bound, self.evictions)

    def resize(self, bound: int) -> None:
        """A new bound (a reload): masters beyond it go now."""
        self.bound = bound if masters_supported() else 0
        while self.bytes > self.bound:
            self._drop(next(iter(self._held)), evicted=True)
        self._gauges()

    def close(self) -> None:
        for key in list(self._held):
            self._drop(key)
        self._gauges()


class ImagePool:
    """Worker processes for transforms, started on first use; at most `queue` transforms
    waiting or running (429 beyond, so a burst can't pile up unbounded work).

    The processes are the pool's own (multiprocessing, forkserver), each doing one
    transform at a time while a thread here waits on its pipe. So a transform past its
    timeout — which can't be stopped inside Pillow — is stopped by killing exactly the
    process running it, and a fresh one takes its place; a worker that dies (a hostile
    image?) fails its own transform only, at once. A transform whose caller went away
    runs to its end (or its timeout) and frees its worker then."""

    def __init__(self, metrics: Any = None, workers: int | None = None,
                 queue: int | None = None, masters: int = 0) -> None:
        self.metrics = metrics
        self.masters = Masters(masters, metrics)
        # a master being decoded, by its key; a source being fetched, by route, path and
        # request headers (edge/pipeline/images.py)
        self.making: dict[str, asyncio.Future[None]] = {}
        self.fetching: dict[Any, Any] = {}
        self.workers = workers or available_cpus()
        self.queue = queue or self.workers * 8
        self.pending = 0
        self._ctx = multiprocessing.get_context("forkserver")
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._all: set[_Worker] = set()  # made (at most `workers`) and not yet retired
        self._busy: set[_Worker] = set()
        self._threads: ThreadPoolExecutor | None = None
        self._closed = False

    def configure(self, settings: ImageSettings) -> None:
        """A reload: the masters' new bound. (A new worker count waits for a restart.)"""
        self.masters.resize(settings.masters)

    def processes(self) -> list[multiprocessing.process.BaseProcess]:
        """The worker processes started and not killed, idle or busy."""
        return [w.process for w in self._all if w.started and not w.killed]

    async def _acquire(self) -> _Worker:
        if self._idle.empty() and len(self._all) < self.workers:
            worker = _Worker(self._ctx)
            self._all.add(worker)
            return worker
        return await self._idle.get()

    def _release(self, worker: _Worker, keep: tuple[str, str, Any] | None,
                 done: Future[tuple[bool, Any, Master | None, int]]) -> None:
        """Its thread is done with it (answered or not): idle again, or replaced. A master
        it made is kept (even when whoever asked has gone)."""
        self._busy.discard(worker)
        if not done.cancelled() and done.exception() is None:
            _, _, made, fd = done.result()
            if made is not None:
                if keep is not None and not self._closed:
                    self.masters.keep(keep[0], keep[1], keep[2], made, fd)
                else:
                    os.close(fd)
        if not (self._closed or worker.killed
                or (not done.cancelled() and done.exception() is not None)):
            self._idle.put_nowait(worker)
            return
        worker.retire()
        self._all.discard(worker)
        if not self._closed:
            fresh = _Worker(self._ctx)
            self._all.add(fresh)
            self._idle.put_nowait(fresh)

    async def run(self, source: bytes, spec: Spec, limits: Limits, route: str = "",
                  timeout: float = 30.0) -> Result:
        """`spec` made from the source's bytes."""
        result = await self.job(Job(spec, limits, source), route, timeout)
        assert result is not None
        return result

    async def job(self, job: Job, route: str = "", timeout: float = 30.0, *, lent: int = -1,
                  keep: tuple[str, str, Any] | None = None) -> Result | None:
        """One job's output (None: the lent master was too small for it). `lent`: a file
        descriptor of the master the job names, ours to close; `keep`: the key, source and
        validators to keep a master the job makes under."""
        if self.pending >= self.queue:
            if lent >= 0:
                os.close(lent)
            raise Problem("rate-limited", "the image workers are busy; retry shortly",
                          headers={"Retry-After": "1"})
        self.pending += 1
        loop = asyncio.get_running_loop()
        worker: _Worker | None = None
        try:
            async with asyncio.timeout(timeout):  # waiting for a worker counts too
                worker = await self._acquire()
                if self._threads is None:
                    # a killed worker's thread takes a moment to see EOF: room for those
                    self._threads = ThreadPoolExecutor(self.workers * 2, "edge-image")
                self._busy.add(worker)
                done = self._threads.submit(worker.exchange, job, lent)
                lent = -1  # the thread's now
                done.add_done_callback(partial(_in_loop, loop, self._release, worker, keep))
                ok, value, _, _ = await asyncio.wrap_future(done)
        except TimeoutError:
            if worker is not None:
                worker.kill()
                log.warning("an image transform overran its timeout (%gs): its worker is "
                            "killed and replaced", timeout)
            self._rejected(route, "too-slow")
            raise Problem("bad-image", "too-slow: the image took too long to process",
                          reason="too-slow") from None
        except WorkerDied:
            self._rejected(route, "worker-died")
            raise Problem("bad-image", "the image could not be processed",
                          reason="worker-died") from None
        finally:
            self.pending -= 1
            if lent >= 0:
                os.close(lent)
        if not ok:
            if isinstance(value, ImageError):
                self._rejected(route, value.kind)
                raise Problem(_STATUS.get(value.kind, "bad-image"),
                              f"{value.kind}: {value.detail}", reason=value.kind)
            try:
                raise value
            finally:  # the traceback holds this frame: not the exception too (a cycle)
                value = None
        result: Result | None = value
        return result

    def _rejected(self, route: str, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.image_rejected.labels(route, reason).inc()

    def close(self) -> None:
        """Kill every worker; the threads waiting on busy ones see EOF and end."""
        self._closed = True
        for worker in list(self._all):
            if worker in self._busy:
                worker.kill()  # retired by _release once its thread is done
            else:
                worker.retire()
                self._all.discard(worker)
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None
        self.masters.close()


def _in_loop(loop: asyncio.AbstractEventLoop, callback: Any, *args: Any) -> None:
    """From a thread: call back in the loop, unless it is gone already (shutdown)."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:
        pass
