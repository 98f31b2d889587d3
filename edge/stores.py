"""What each in-memory store holds, against its bound: read at scrape time (so keeping
count costs the hot paths nothing but an eviction counter), exported as `edge_store_*`
by metrics.StoreSizes. Every store that can grow with traffic is listed here, with the
setting (or constant) that bounds it; README's operations section adds them up."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .runtime import State


@dataclass(frozen=True, slots=True)
class StoreSize:
    """One store: entries (and bytes, where they are known) now, its bounds, and how many
    entries it has dropped to stay within them since the start."""

    entries: int
    max_entries: int | None = None
    bytes: int | None = None
    max_bytes: int | None = None
    evictions: int = 0


def right_sized(data: bytes) -> bytes:
    """`data` in an allocation of its own length, for a store to keep. orjson (3.12 on)
    and zstandard return bytes in a buffer sized for the worst case and never shrink it:
    a 60-byte event payload from orjson.dumps holds 4 KB, a 1.4 KB document 8 KB, a
    184-byte zstd body 1.5 KB (tracemalloc). A store that kept them as they came would
    hold many times what it counts (bench/soak.py: the event history grew ~4 KB an event
    while its gauge said 60 B). What is only sent on is not copied."""
    return bytes(memoryview(data))


def store_sizes(state: State) -> Iterator[tuple[str, StoreSize]]:
    """Every bounded in-memory store of this instance, by name."""
    cache = getattr(state, "cache", None)
    if cache is not None:
        yield "cache_memory", cache.store.memory.size()
        yield "ready_answers", cache.ready.size()
        yield "purged_tags", cache.invalidations.size()
    backend = getattr(state, "backend", None)
    if backend is not None and hasattr(backend, "sizes"):
        yield from backend.sizes()
    runtime = getattr(state, "runtime", None)
    if runtime is not None:
        yield "device_profiles", runtime.devices.size()
        verifier = getattr(runtime, "verifier", None)
        if verifier is not None:
            yield "verified_tokens", verifier.size()
    images = getattr(state, "images", None)
    if images is not None:
        yield "image_masters", images.masters.size()
        yield "image_sources_seen", images.masters.seen_size()
    hub = getattr(state, "hub", None)
    if hub is not None:
        yield "event_streams", hub.size()
    push = getattr(state, "push", None)
    if push is not None:
        yield "push_queue", push.size()
