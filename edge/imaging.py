"""Image routes at serving time: what this request asks for, and a pool of worker
processes that does the Pillow work, so the event loop never waits on a transform.

The transformation itself lives in the top-level `images` package (no HTTP there).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
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
    transform,
    verify,
)

from .config import ImagePolicy
from .context import DeviceProfile
from .errors import Problem
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
             device: DeviceProfile) -> tuple[Spec, list[str]]:
        """What to make for this request, and the request headers that decided it."""
        p = self.policy
        used = ["Accept"]
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
            used += [h for h in HINT_HEADERS if h in headers]
        slow = device.network == "slow" or save_data(headers)
        variant = (p.by_device.get("slow") if slow else None) or p.by_device.get(
            device.device) or p.default
        if width is None and height is None:
            width = variant.width
            used += list(device.used_headers)
        if quality is None:
            quality = variant.quality
        if save_data(headers):
            used.append("Save-Data")
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
        return spec, list(dict.fromkeys(used))


def _int(raw: str | None, name: str) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 5:
        raise Problem("bad-request", f"{name} is a whole number")
    return int(raw)


class ImagePool:
    """Worker processes for transforms, started on first use; at most `queue` transforms
    waiting or running (429 beyond, so a burst can't pile up unbounded work).

    A transform past its timeout can't be stopped inside its worker, so the pool is
    retired instead: new work goes to a fresh pool at once, and the old one's processes
    are killed once every transform it was given has had its own time (and its callers
    their answers)."""

    def __init__(self, metrics: Any = None, workers: int | None = None,
                 queue: int | None = None) -> None:
        self.metrics = metrics
        self.workers = workers or max(1, os.cpu_count() or 1)
        self.queue = queue or self.workers * 8
        self.pending = 0
        self._executor: ProcessPoolExecutor | None = None
        self._retiring: dict[asyncio.Task[None], ProcessPoolExecutor] = {}
        # transforms on their way: which pool runs each, and by when (loop time) it is due
        self._running: dict[object, tuple[ProcessPoolExecutor, float]] = {}

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("forkserver"))
        return self._executor

    async def run(self, source: bytes, spec: Spec, limits: Limits, route: str = "",
                  timeout: float = 30.0) -> Result:
        if self.pending >= self.queue:
            raise Problem("rate-limited", "the image workers are busy; retry shortly",
                          headers={"Retry-After": "1"})
        self.pending += 1
        pool = self._pool()
        loop = asyncio.get_running_loop()
        token = object()
        self._running[token] = (pool, loop.time() + timeout)
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(pool, transform, source, spec, limits), timeout)
        except ImageError as e:
            self._rejected(route, e.kind)
            raise Problem(_STATUS.get(e.kind, "bad-image"), f"{e.kind}: {e.detail}",
                          reason=e.kind) from None
        except TimeoutError:
            self._retire(pool)
            self._rejected(route, "too-slow")
            raise Problem("bad-image", "too-slow: the image took too long to process",
                          reason="too-slow") from None
        except BrokenProcessPool:
            if self._executor is pool:  # a worker died (a hostile image?): a fresh pool
                self._executor = None
            self._rejected(route, "worker-died")
            raise Problem("bad-image", "the image could not be processed",
                          reason="worker-died") from None
        finally:
            self.pending -= 1
            del self._running[token]

    def _rejected(self, route: str, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.image_rejected.labels(route, reason).inc()

    def _retire(self, pool: ProcessPoolExecutor) -> None:
        if self._executor is not pool:
            return  # already retired by another transform that overran
        self._executor = None
        now = asyncio.get_running_loop().time()
        due = max((at for p, at in self._running.values() if p is pool), default=now)
        grace = max(0.0, due - now)
        log.warning("an image transform overran its timeout: its worker pool is replaced "
                    "and stopped in %.1fs, when the rest of its work is due", grace)

        async def kill_later() -> None:
            await asyncio.sleep(grace)
            _kill(pool)

        task = asyncio.ensure_future(kill_later())
        self._retiring[task] = pool
        task.add_done_callback(lambda done: self._retiring.pop(done, None))

    def close(self) -> None:
        for task, pool in list(self._retiring.items()):
            task.cancel()
            _kill(pool)
        self._retiring.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def _kill(pool: ProcessPoolExecutor) -> None:
    """Stop a pool whose worker may be stuck: shutdown() alone would wait for it."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.kill()
