"""The C allocator gives freed memory back (allocator.py): a fragmented heap's free pages
leave the process's RSS when trimmed, and an operator's GLIBC_TUNABLES win over ours."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edge import allocator

pytestmark = pytest.mark.skipif(allocator.heap() == {}, reason="not glibc")


def rss_anon() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon")


def test_trim_returns_the_free_pages_inside_a_heap() -> None:
    # 60 MB in 3 KB blocks (under the mmap threshold: they come from the heap), then every
    # block but one in ten freed: the survivors pin the heap, so only a trim that looks
    # inside it (malloc_trim(0)) can give the freed pages back
    blocks = [bytes(3000) + n.to_bytes(4, "little") for n in range(20_000)]
    kept = blocks[::10]
    del blocks
    freed = allocator.heap()["free"]
    before = rss_anon()
    allocator.trim()
    after = rss_anon()
    assert freed > 40_000_000
    assert before - after > 30_000_000, (before, after)
    assert len(kept) == 2000


def test_an_operators_glibc_tunables_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=4")
    assert allocator.tune() is False


async def test_the_trimmer_trims_until_closed() -> None:
    trimmer = allocator.Trimmer(every=0.01)
    trimmer.start()
    for _ in range(200):
        if trimmer.trims >= 2:
            break
        await asyncio.sleep(0.01)
    await trimmer.close()
    done = trimmer.trims
    assert done >= 2
    await asyncio.sleep(0.05)
    assert trimmer.trims == done
