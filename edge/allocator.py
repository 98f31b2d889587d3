"""The C allocator under the edge, told to give memory back; and the cyclic GC's
oldest generation, collected on a schedule.

CPython keeps objects of up to 512 bytes in its own arenas and hands everything larger
(bodies, cached answers, header blocks) to the C library's malloc. glibc's malloc keeps
what is freed for reuse: a heap that bodies of every size come and go in ends up mostly
free and still resident, with one heap per thread that has allocated (eight per core).
Under `bench/soak.py` that showed as RSS growing a few MB a minute with the live data flat.

So, at start (`tune`): two heaps at most, and fixed thresholds: blocks from 1 MiB up get
their own mappings (megabyte bodies and images go back to the system when freed), smaller
ones come from the heaps, which keep up to 4 MiB free at their tops. Left to glibc, the
mmap threshold rises with every large block freed, up to 32 MiB, and megabyte bodies then
come from the heaps: the soak's RSS rose ~40 MB higher and swung 17% (heap free 42 MB
against 8). At 128 KiB, every request whose buffers pass it (orjson's for a 10 KB
document) mapped and unmapped them: a third of the uncached route's throughput
(bench/cache.py); at 1 MiB, bench/cache.py shows no cost against adaptive. An operator
who set `GLIBC_TUNABLES=glibc.malloc.*` keeps theirs: `tune` changes nothing then. Other
C libraries (musl) are left as they are.

Then every `TRIM_EVERY` seconds (`Trimmer`) `malloc_trim(0)`, which returns the free
pages inside the heaps as well as at their tops; and every `COLLECT_EVERY` seconds a full
cyclic collection before it. The edge freezes its start-up objects and collects young
objects rarely (cli.py: worth ~10% of throughput), so left to its thresholds the oldest
generation was collected once in hours, and whatever made a cycle (an event stream that
ended, a retired config generation: both fixed where they were made, tests/test_no_cycles.py)
stayed until then.

`heap()` reads the allocator's own figures for `/metrics` (edge_heap_bytes).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
import time

from .aio import stop

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # mallopt's parameters (malloc.h)
ARENA_MAX = 2
MMAP_THRESHOLD = 1024 * 1024  # bytes: blocks this large get their own mapping
TRIM_THRESHOLD = 4 * 1024 * 1024  # bytes kept free at a heap's top before it shrinks
TRIM_EVERY = 30.0  # seconds; one trim took 3-26 ms on a 300 MB heap in bench/soak.py
COLLECT_EVERY = 300.0  # seconds between full cyclic collections at most


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
        libc.mallinfo2.restype = _MallInfo2  # glibc 2.33+
        libc.malloc_trim, libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _glibc()


def tune() -> bool:
    """Two heaps at most, set before the process starts threads. False when the C
    library is not glibc, or when GLIBC_TUNABLES already says how malloc should behave."""
    if _LIBC is None or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    return all(_LIBC.mallopt(param, value) == 1 for param, value in (
        (M_ARENA_MAX, ARENA_MAX), (M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        (M_TRIM_THRESHOLD, TRIM_THRESHOLD)))


def trim() -> None:
    """Give the heaps' free pages back to the system."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def heap() -> dict[str, int]:
    """The allocator's bytes: `in_use` (live blocks), `free` (kept in the heaps for reuse),
    `mapped` (large blocks in their own mappings). Empty when not glibc."""
    if _LIBC is None:
        return {}
    info = _LIBC.mallinfo2()
    return {"in_use": info.uordblks, "free": info.fordblks, "mapped": info.hblkhd}


class Trimmer:
    """Every `every` seconds: a full cyclic collection when `collect_every` seconds have
    passed since the last (on the loop: the finalizers it runs may touch loop objects),
    then a trim in a thread (malloc_trim holds one heap's lock at a time; the event loop
    keeps running). Without glibc it only collects."""

    def __init__(self, every: float = TRIM_EVERY, collect_every: float = COLLECT_EVERY
                 ) -> None:
        self.every = every
        self.collect_every = collect_every
        self.trims = 0
        self.collections = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        collected_at = time.monotonic()
        while True:
            await asyncio.sleep(self.every)
            if time.monotonic() - collected_at >= self.collect_every:
                collected_at = time.monotonic()
                gc.collect()
                self.collections += 1
            if _LIBC is not None:
                await asyncio.to_thread(trim)
                self.trims += 1

    async def close(self) -> None:
        task, self._task = self._task, None
        await stop(task)
