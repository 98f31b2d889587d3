"""The C allocator under the edge, told to give memory back.

CPython keeps objects of up to 512 bytes in its own arenas and hands everything larger
(bodies, cached answers, header blocks) to the C library's malloc. glibc's malloc keeps
what is freed for reuse: a heap that bodies of every size come and go in ends up mostly
free and still resident, and it keeps one heap per thread that has allocated (eight per
core), and raises its own threshold for serving large blocks from mmap each time one is
freed, so in time even megabyte bodies come from the heap. Under `bench/soak.py` that
showed as RSS growing a few MB a minute with the live data flat.

So, at start (`tune`): two heaps at most; and every `TRIM_EVERY` seconds (`Trimmer`)
`malloc_trim(0)`, which returns the free pages inside the heaps as well as at their tops.
The mmap and trim thresholds stay glibc's own, which adapt: fixing the mmap threshold at
128 KiB made every request whose buffers pass it (orjson's for a 10 KB document) map and
unmap them, a third of the uncached route's throughput (bench/cache.py). An operator who
set `GLIBC_TUNABLES=glibc.malloc.*` keeps them: `tune` changes nothing then. Other C
libraries (musl) are left as they are.

`heap()` reads the allocator's own figures for `/metrics` (edge_heap_bytes).
"""

from __future__ import annotations

import asyncio
import ctypes
import os

from .aio import stop

M_ARENA_MAX = -8  # mallopt's parameter (malloc.h)
ARENA_MAX = 2
TRIM_EVERY = 30.0  # seconds; one trim took 3-26 ms on a 300 MB heap in bench/soak.py


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
    return bool(_LIBC.mallopt(M_ARENA_MAX, ARENA_MAX) == 1)


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
    """Trims every `every` seconds, in a thread (malloc_trim holds one heap's lock at a
    time; the event loop keeps running)."""

    def __init__(self, every: float = TRIM_EVERY) -> None:
        self.every = every
        self.trims = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if _LIBC is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            await asyncio.to_thread(trim)
            self.trims += 1

    async def close(self) -> None:
        task, self._task = self._task, None
        await stop(task)
