"""Image routes at serving time: what this request asks for, and a pool of worker
processes that does the Pillow work, so the event loop never waits on a transform.

The transformation itself lives in the top-level `images` package (no HTTP there).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import tempfile
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from images import (
    ImageError,
    Limits,
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

from .config import ImagePolicy
from .context import DeviceProfile
from .errors import Problem
from .imageworker import serve
from .inputs import HINT_HEADERS

log = logging.getLogger("edge.images")

# Request headers that may change the answer (besides the device's): sent in Vary.
ACCEPT_CH = ", ".join(h for h in HINT_HEADERS if h.startswith("Sec-CH-"))
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

    @classmethod
    def build(cls, policy: ImagePolicy, env: Mapping[str, str]) -> ImageRoute:
        keys = tuple(env[n].encode() for n in policy.signing_keys_env if env.get(n))
        limits = Limits(max_source_bytes=policy.max_source, max_pixels=policy.max_pixels,
                        max_output_bytes=policy.max_output,
                        accept_formats=frozenset(policy.sources))
        return cls(policy, keys, limits, frozenset(policy.formats) & encodable())

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

    def exchange(self, job: tuple[bytes, Spec, Limits]) -> tuple[bool, Any]:
        """In a thread: one transform's outcome."""
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
            self.conn.send(job)
            outcome: tuple[bool, Any] = self.conn.recv()
            return outcome
        except (EOFError, OSError):
            raise WorkerDied from None

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
                 queue: int | None = None) -> None:
        self.metrics = metrics
        self.workers = workers or available_cpus()
        self.queue = queue or self.workers * 8
        self.pending = 0
        self._ctx = multiprocessing.get_context("forkserver")
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._all: set[_Worker] = set()  # made (at most `workers`) and not yet retired
        self._busy: set[_Worker] = set()
        self._threads: ThreadPoolExecutor | None = None
        self._closed = False

    def processes(self) -> list[multiprocessing.process.BaseProcess]:
        """The worker processes started and not killed, idle or busy."""
        return [w.process for w in self._all if w.started and not w.killed]

    async def _acquire(self) -> _Worker:
        if self._idle.empty() and len(self._all) < self.workers:
            worker = _Worker(self._ctx)
            self._all.add(worker)
            return worker
        return await self._idle.get()

    def _release(self, worker: _Worker, done: Future[tuple[bool, Any]]) -> None:
        """Its thread is done with it (answered or not): idle again, or replaced."""
        self._busy.discard(worker)
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
        if self.pending >= self.queue:
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
                done = self._threads.submit(worker.exchange, (source, spec, limits))
                done.add_done_callback(partial(_in_loop, loop, self._release, worker))
                ok, value = await asyncio.wrap_future(done)
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
        if not ok:
            if isinstance(value, ImageError):
                self._rejected(route, value.kind)
                raise Problem(_STATUS.get(value.kind, "bad-image"),
                              f"{value.kind}: {value.detail}", reason=value.kind)
            raise value
        result: Result = value
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


def _in_loop(loop: asyncio.AbstractEventLoop, callback: Any, *args: Any) -> None:
    """From a thread: call back in the loop, unless it is gone already (shutdown)."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:
        pass
