"""Brotli quality vs gzip level on realistic JSON: size, ratio and time to compress.

    .venv/bin/python bench/brotli_quality.py

Two documents from the demo data, orjson-serialized: a member plus 10 of their claims
(~10 KB, a typical API response) and a member plus 100 claims (~100 KB, a big list page).
Times are the median of several timeit repeats, in µs per call; one CPU core, no I/O.
The msgpack rows show what compressing our msgpack output buys (see edge.encoding).
Used to choose ``edge.encoding.DEFAULT_BROTLI_QUALITY``; takes about 10 s.
"""

from __future__ import annotations

import statistics
import sys
import timeit
import zlib
from collections.abc import Callable
from functools import partial
from pathlib import Path

import brotli
import msgpack
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.demo.data import get_dataset  # noqa: E402

REPEATS = 7
TARGET_SECONDS = 0.02  # per repeat, so fast codecs are timed over many calls


def documents() -> dict[str, object]:
    data = get_dataset()
    member_id = max(data.claims_by_member, key=lambda m: len(data.claims_by_member[m]))
    member = data.members[member_id]
    claims = data.claims_by_member[member_id]
    return {
        "10KB": {"member": member, "claims": claims[:10]},
        "100KB": {"member": member, "claims": claims[:100]},
    }


def median_us(fn: Callable[[], object]) -> float:
    timer = timeit.Timer(fn)
    once = min(timer.repeat(repeat=3, number=1))  # also warms up
    number = max(1, int(TARGET_SECONDS / max(once, 1e-9)))
    return statistics.median(timer.repeat(repeat=REPEATS, number=number)) / number * 1e6


def codecs() -> list[tuple[str, Callable[[bytes], bytes]]]:
    rows: list[tuple[str, Callable[[bytes], bytes]]] = [
        (f"br q{q}", partial(brotli.compress, mode=brotli.MODE_TEXT, quality=q)) for q in range(12)
    ]
    for level in (1, 6, 9):
        rows.append((f"gzip {level}", partial(zlib.compress, level=level, wbits=31)))
    return rows


def main() -> None:
    docs = documents()
    bodies = {name: orjson.dumps(doc) for name, doc in docs.items()}
    header = f"{'codec':<10}" + "".join(
        f" | {name + f' ({len(body):,} B)':>30}" for name, body in bodies.items()
    )
    print(header)
    print(f"{'':<10}" + " | {:>9} {:>7} {:>12}".format("bytes", "ratio", "µs") * len(bodies))
    print("-" * len(header))
    for label, fn in codecs():
        cells = []
        for body in bodies.values():
            size = len(fn(body))
            us = median_us(partial(fn, body))
            cells.append(f" | {size:>9,} {len(body) / size:>6.2f}x {us:>12,.1f}")
        print(f"{label:<10}" + "".join(cells))

    print()
    print("msgpack of the same documents (brotli MODE_GENERIC):")
    for name, doc in docs.items():
        packed = msgpack.packb(doc)
        for q in (4, 5):
            size = len(brotli.compress(packed, quality=q))
            us = median_us(partial(brotli.compress, packed, quality=q))
            print(
                f"  {name:<6} {len(packed):>7,} B -> br q{q} {size:>7,} B "
                f"({len(packed) / size:.2f}x) {us:>8,.1f} µs"
            )


if __name__ == "__main__":
    main()
