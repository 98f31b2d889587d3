"""What to send a client: output format and width, from request header strings.

Pure functions on strings and mappings, so they cost nothing on the request path. What
they read must be in the response's Vary: ``Accept`` for choose_format, the hint names for
client_width and ``Save-Data`` for save_data. Hints only arrive after the edge has asked
for them with ``Accept-CH``.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Mapping, Sequence, Set

from images.formats import encodable

__all__ = [
    "DPR_STEPS", "HINT_HEADERS", "MAX_WIDTH", "bounded", "choose_format", "client_width", "dpr",
    "parse_qlist", "save_data", "snap_width",
]  # fmt: skip

# The client hint headers, each new name before its legacy one; the edge's Vary names them.
WIDTH_HINTS = ("Sec-CH-Width", "Width")
VIEWPORT_HINTS = ("Sec-CH-Viewport-Width", "Viewport-Width")
DPR_HINTS = ("Sec-CH-DPR", "DPR")
HINT_HEADERS = (*WIDTH_HINTS, *VIEWPORT_HINTS, *DPR_HINTS)
DPR_STEPS = (1.0, 1.5, 2.0, 3.0)  # beyond 3x nobody sees the difference; it only costs bytes
MAX_WIDTH = 16383  # a hint wider than any image we make is capped here
_MAX_HEADER = 1024
_MAX_ITEMS = 32
# Structured-field integer or decimal (RFC 8941), non-negative, with sane bounds.
# An Accept-style item: a token, or a media type's type/subtype.
_QTOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+(?:/[!#$%&'*+.^_`|~0-9a-z-]+)?")
_NUMBER = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,3})?")
# Only formats a client names count: browsers that can't decode AVIF still send image/*.
_MODERN = ("avif", "webp")  # preferred first when q-values tie


def choose_format(accept: str | None, source_format: str, supported: Set[str]) -> str:
    """The output format for a client sending ``accept``.

    AVIF or WebP when the client lists ``image/avif`` / ``image/webp`` with q > 0, the format
    is in ``supported`` and this Pillow build can write it; the higher q wins, AVIF on a
    tie. Otherwise the source format if it is JPEG or PNG (and supported), PNG for a GIF
    source (keeps transparency), else JPEG, which every client decodes and so is the
    fallback even when not in ``supported``.
    """
    offered = supported & encodable()
    qs = _image_qs(accept or "")
    best, best_q = None, 0.0
    for fmt in _MODERN:
        q = qs.get(fmt, 0.0)
        if fmt in offered and q > best_q:
            best, best_q = fmt, q
    if best is not None:
        return best
    if source_format in ("jpeg", "png") and source_format in supported:
        return source_format
    if source_format == "gif" and "png" in supported:
        return "png"
    return "jpeg"


def _image_qs(accept: str) -> dict[str, float]:
    """q of each ``image/<subtype>`` listed explicitly; the first listing counts."""
    qs: dict[str, float] = {}
    for media, q in parse_qlist(accept):
        if media.startswith("image/"):
            qs.setdefault(media.removeprefix("image/"), q)
    return qs


def bounded(header: str) -> str:
    """The header cut to _MAX_HEADER characters, at an item boundary."""
    if len(header) <= _MAX_HEADER:
        return header
    cut = header.rfind(",", 0, _MAX_HEADER + 1)
    return header[:cut] if cut > 0 else ""


def parse_qlist(header: str) -> list[tuple[str, float]]:
    """``(token, q)`` pairs of a q-list header, in header order.

    Tokens are lower-cased and stripped of parameters other than q. Items with a bad token
    or a q-value that isn't a number in [0, 1] are skipped; only the first _MAX_ITEMS items
    of the first _MAX_HEADER characters are read.
    """
    items: list[tuple[str, float]] = []
    for item in bounded(header).split(",")[:_MAX_ITEMS]:
        token, *params = item.split(";")
        token = token.strip().lower()
        if not _QTOKEN.fullmatch(token):
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = -1.0
                break
        if 0.0 <= q <= 1.0:  # also false for nan
            items.append((token, q))
    return items


def snap_width(requested: int, buckets: Sequence[int]) -> int:
    """The smallest bucket at least ``requested`` wide, or the largest bucket.

    Snapping up keeps images sharp and bounds the variants a cache holds to one per bucket.
    """
    if not buckets:
        raise ValueError("snap_width needs at least one bucket")
    ordered = sorted(set(buckets))
    return ordered[min(bisect.bisect_left(ordered, requested), len(ordered) - 1)]


def client_width(headers: Mapping[str, str]) -> int | None:
    """The width in device pixels the client will show the image at, if it says.

    ``Sec-CH-Width`` (or legacy ``Width``) is that width already. Failing that, the
    viewport: ``Sec-CH-Viewport-Width`` (or ``Viewport-Width``, CSS pixels) times the
    device pixel ratio from ``Sec-CH-DPR`` (or ``DPR``) quantised to DPR_STEPS. Capped at
    MAX_WIDTH; None when there is no usable hint.
    """
    width = _number(_header(headers, *WIDTH_HINTS))
    if not width:
        viewport = _number(_header(headers, *VIEWPORT_HINTS))
        if not viewport:
            return None
        width = viewport * dpr(headers)
    return min(math.ceil(width), MAX_WIDTH)


def dpr(headers: Mapping[str, str]) -> float:
    """The device pixel ratio hint rounded to the nearest of DPR_STEPS (ties up); 1 if none."""
    ratio = _number(_header(headers, *DPR_HINTS))
    if not ratio:
        return 1.0
    return min(DPR_STEPS, key=lambda step: (abs(step - ratio), -step))


def save_data(headers: Mapping[str, str]) -> bool:
    """Whether the client asked for reduced data use (``Save-Data: on``)."""
    value = _header(headers, "Save-Data")
    return value is not None and value.split(";")[0].strip().lower() == "on"


def _header(headers: Mapping[str, str], *names: str) -> str | None:
    """The first of ``names`` present; exact or lower-case, for plain dicts as well."""
    for name in names:
        value = headers.get(name)
        if value is None:
            value = headers.get(name.lower())
        if value is not None:
            return value
    return None


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    value = value.strip()
    return float(value) if _NUMBER.fullmatch(value) else None
