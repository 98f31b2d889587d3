"""Content negotiation, compression and bounded decoding of bodies.

Pure functions on header strings and bytes, so the request path can call them cheaply:
``choose_coding`` / ``choose_format`` pick what to answer from Accept-Encoding / Accept
(RFC 9110 §12.5), ``compress`` and ``StreamCompressor`` encode, and ``decode`` undoes an
upstream's Content-Encoding without ever holding more than ``max_size`` (plus one
decoder block, 2 MB for zstd) of output, so a decompression bomb costs at most that.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from functools import lru_cache

import brotli
import zstandard

from images.negotiate import bounded, parse_qlist  # one q-list parser, edge and images

__all__ = [
    "CODINGS", "COMPRESSIBLE", "DEFAULT_BROTLI_QUALITY", "DEFAULT_GZIP_LEVEL",
    "DEFAULT_ZSTD_LEVEL", "FORMATS", "DecodeError",
    "NotAcceptable", "StreamCompressor", "TooLarge", "UnsupportedCoding", "choose_coding",
    "choose_format", "compress", "decode", "is_compressible", "parse_qlist",
]  # fmt: skip

# bench/brotli_quality.py: on a 10 KB JSON document q5 takes ~0.08-0.13 ms and is 7% smaller
# than q4 (11% at 100 KB); q6-q8 gain nothing more and q9+ cost 3-10 ms (q10/11 only pay
# off for bodies compressed once and cached). q5 is the knee and fits the 0.3 ms budget.
DEFAULT_BROTLI_QUALITY = 5
DEFAULT_GZIP_LEVEL = 6
DEFAULT_ZSTD_LEVEL = 3
CODINGS = ("br", "zstd", "gzip")  # offered, best first (config: compression.prefer)
# RFC 9659: zstd in HTTP keeps its window within 8 MB, and a decoder may refuse more
ZSTD_MAX_WINDOW = 8 * 1024 * 1024

MAX_CODINGS = 4  # stacked Content-Encodings; each layer costs up to max_size of work
_CACHE_SIZE = 1024

FORMATS = {"json": "application/json", "msgpack": "application/msgpack"}
_MEDIA_FORMAT = {
    "application/json": "json",
    "application/msgpack": "msgpack",
    "application/x-msgpack": "msgpack",
}

# msgpack is included: our documents repeat the same keys in every record, so brotli still
# shrinks msgpack output 3.7-8x (bench/brotli_quality.py), about as much as the JSON.
COMPRESSIBLE = frozenset({
    "application/json", "application/javascript", "application/x-javascript",
    "application/ecmascript", "application/xml", "application/msgpack",
    "application/x-msgpack", "application/x-ndjson", "application/x-www-form-urlencoded",
    "image/svg+xml",
})  # fmt: skip

_ALIASES = {"x-gzip": "gzip"}
_GZIP = zlib.MAX_WBITS | 16
_ZLIB = zlib.MAX_WBITS
_RAW = -zlib.MAX_WBITS


class NotAcceptable(Exception):
    """Nothing the edge can send is acceptable to the client (answer 406)."""


class DecodeError(ValueError):
    """An upstream body can't be decoded: unknown coding or corrupt data."""


class UnsupportedCoding(DecodeError):
    """A content coding the edge can't undo (or too many stacked)."""


class TooLarge(ValueError):
    """A decoded body would exceed the allowed size."""


def _first_q(items: list[tuple[str, float]]) -> dict[str, float]:
    # A token listed twice: the first entry counts.
    qs: dict[str, float] = {}
    for token, q in items:
        qs.setdefault(_ALIASES.get(token, token), q)
    return qs


def _shown(header: str) -> str:
    return repr(header if len(header) <= 200 else header[:200] + "...")


def choose_coding(
    accept_encoding: str | None, offered: Sequence[str] = CODINGS
) -> str | None:
    """The content coding to answer with, or None for identity.

    Highest client q wins, ties go to the earlier coding in ``offered``; an explicit
    ``identity`` with a higher q than every offered coding wins too. Raises NotAcceptable
    when no offered coding is acceptable and identity is excluded (``identity;q=0``, or
    ``*;q=0`` without identity listed).
    """
    if accept_encoding is None:
        return None
    header = bounded(accept_encoding)
    ok, coding = _choose_coding(header, tuple(offered))
    if not ok:
        raise NotAcceptable(
            f"no acceptable content coding (offered {', '.join(offered)}, identity) "
            f"for Accept-Encoding {_shown(header)}"
        )
    return coding


@lru_cache(maxsize=_CACHE_SIZE)
def _choose_coding(header: str, offered: tuple[str, ...]) -> tuple[bool, str | None]:
    # Returns (acceptable, coding) rather than raising, so refusals are cached too.
    qs = _first_q(parse_qlist(header))
    star = qs.get("*")
    best: str | None = None
    best_q = 0.0
    for coding in offered:
        q = qs.get(coding, star if star is not None else 0.0)
        if q > best_q:
            best, best_q = coding, q
    identity = qs.get("identity")
    if identity is None:
        # Unlisted identity is a fallback, never preferred over a coding the client listed.
        return (True, best) if best is not None else (star != 0.0, None)
    if best is not None and best_q >= identity:
        return True, best
    return identity > 0.0, None


def choose_format(accept: str | None, offered: Sequence[str] = ("json", "msgpack")) -> str:
    """The key of FORMATS to answer with.

    The most specific matching range sets a format's q (``application/json`` over
    ``application/*`` over ``*/*``); highest q wins, ties go to the earlier format in
    ``offered``. Media-type parameters (``charset``) are ignored. ``+json`` types such as
    ``application/problem+json`` don't match: they promise a different document. A missing
    header, or one with no readable media range, means ``*/*``. Raises NotAcceptable when no
    offered format has q > 0.
    """
    for name in offered:
        if name not in FORMATS:
            raise ValueError(f"unknown format {name!r}; expected one of {', '.join(FORMATS)}")
    header = "*/*" if accept is None else bounded(accept)
    chosen = _choose_format(header, tuple(offered))
    if chosen is None:
        types = ", ".join(FORMATS[name] for name in offered)
        raise NotAcceptable(f"none of {types} is acceptable for Accept {_shown(header)}")
    return chosen


@lru_cache(maxsize=_CACHE_SIZE)
def _choose_format(header: str, offered: tuple[str, ...]) -> str | None:
    items = [(media, q) for media, q in parse_qlist(header) if "/" in media]
    if not items:
        items = [("*/*", 1.0)]
    exact: dict[str, float] = {}
    any_application: float | None = None
    any_type: float | None = None
    for media, q in items:
        if media in _MEDIA_FORMAT:
            name = _MEDIA_FORMAT[media]
            # application/msgpack and application/x-msgpack are equally specific.
            exact[name] = max(q, exact.get(name, 0.0))
        elif media == "application/*" and any_application is None:
            any_application = q
        elif media == "*/*" and any_type is None:
            any_type = q
    best: str | None = None
    best_q = 0.0
    for name in offered:
        fallback = any_application if any_application is not None else any_type
        format_q = exact.get(name, fallback)
        if format_q is not None and format_q > best_q:
            best, best_q = name, format_q
    return best


@lru_cache(maxsize=256)  # a fleet's answers have a handful of Content-Types
def is_compressible(content_type: str | None) -> bool:
    """Whether a body of this Content-Type is worth compressing.

    Text, JSON, XML, JavaScript and msgpack are; images, audio, video, fonts, archives
    and application/octet-stream are not, nor anything unknown. ``text/event-stream`` is
    never compressed: events must reach the client as they are sent.
    """
    if not content_type:
        return False
    media = content_type.partition(";")[0].strip().lower()
    if media.startswith("text/"):
        return media != "text/event-stream"
    return media in COMPRESSIBLE or media.endswith(("+json", "+xml"))


def _brotli_quality(quality: int | None) -> int:
    if quality is None:
        return DEFAULT_BROTLI_QUALITY
    if not 0 <= quality <= 11:
        raise ValueError(f"brotli quality must be 0-11, got {quality}")
    return quality


def _gzip_level(quality: int | None) -> int:
    if quality is None:
        return DEFAULT_GZIP_LEVEL
    if not 0 <= quality <= 9:
        raise ValueError(f"gzip level must be 0-9, got {quality}")
    return quality


def _zstd_level(quality: int | None) -> int:
    if quality is None:
        return DEFAULT_ZSTD_LEVEL
    if not 1 <= quality <= 19:
        raise ValueError(f"zstd level must be 1-19, got {quality}")
    return quality


@lru_cache(maxsize=32)
def _zstd(level: int) -> zstandard.ZstdCompressor:
    # one compressor per level, reused (it holds its context; not thread-safe, and the
    # edge compresses on its event loop only)
    return zstandard.ZstdCompressor(level=level)


def _unknown_coding(coding: str) -> ValueError:
    return ValueError(f"can only compress with 'br', 'zstd' or 'gzip', got {coding!r}")


def compress(data: bytes, coding: str, *, quality: int | None = None, text: bool = True) -> bytes:
    """``data`` encoded with ``coding`` ("br", "zstd" or "gzip").

    ``quality`` is the brotli quality (0-11), zstd level (1-19) or gzip level (0-9);
    ``text`` hints brotli that the data is UTF-8 text. Neither the gzip header nor the zstd
    frame carries a timestamp, so equal input gives equal output.
    """
    if coding == "br":
        mode = brotli.MODE_TEXT if text else brotli.MODE_GENERIC
        return bytes(brotli.compress(data, mode=mode, quality=_brotli_quality(quality)))
    if coding == "zstd":
        return _zstd(_zstd_level(quality)).compress(data)
    if coding == "gzip":
        return zlib.compress(data, level=_gzip_level(quality), wbits=_GZIP)
    raise _unknown_coding(coding)


class StreamCompressor:
    """Compresses a body chunk by chunk; ``flush()`` pushes out what is buffered so far."""

    def __init__(self, coding: str, quality: int | None = None, *, text: bool = True) -> None:
        self.coding = coding
        if coding == "br":
            mode = brotli.MODE_TEXT if text else brotli.MODE_GENERIC
            self._br = brotli.Compressor(mode=mode, quality=_brotli_quality(quality))
        elif coding == "zstd":
            self._zstd = zstandard.ZstdCompressor(level=_zstd_level(quality)).compressobj()
        elif coding == "gzip":
            self._gz = zlib.compressobj(_gzip_level(quality), zlib.DEFLATED, _GZIP)
        else:
            raise _unknown_coding(coding)
        self._pending = False  # input since the last flush
        self._finished = False

    def compress(self, chunk: bytes) -> bytes:
        """Compressed bytes ready so far; often empty, the encoder buffers."""
        self._check()
        if not chunk:
            return b""
        self._pending = True
        if self.coding == "br":
            return bytes(self._br.process(chunk))
        if self.coding == "zstd":
            return self._zstd.compress(chunk)
        return self._gz.compress(chunk)

    def flush(self) -> bytes:
        """Everything compressed so far, decodable by the client without what follows."""
        self._check()
        if not self._pending:
            return b""  # a sync flush of nothing still costs bytes on the wire
        self._pending = False
        if self.coding == "br":
            return bytes(self._br.flush())
        if self.coding == "zstd":
            return self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        return self._gz.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        """The end of the stream; the compressor can't be used afterwards."""
        self._check()
        self._finished = True
        if self.coding == "br":
            return bytes(self._br.finish())
        if self.coding == "zstd":
            return self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)
        return self._gz.flush(zlib.Z_FINISH)

    def _check(self) -> None:
        if self._finished:
            raise ValueError("StreamCompressor used after finish()")


def decode(data: bytes, content_encoding: str | None, *, max_size: int) -> bytes:
    """``data`` with its Content-Encoding undone, at most ``max_size`` bytes.

    Handles identity, gzip/x-gzip, deflate (zlib-wrapped or raw), br and zstd (frames of
    at most an 8 MB window, RFC 9659), and lists of them
    (``gzip, br`` was gzipped, then brotli'd). Raises DecodeError for an unknown coding or
    corrupt data, TooLarge as soon as the output passes ``max_size`` (every layer is held
    to it). An empty body decodes to an empty body whatever the coding.
    """
    if max_size < 0:
        raise ValueError(f"max_size must be >= 0, got {max_size}")
    codings = [
        _ALIASES.get(c, c)
        for c in (part.strip().lower() for part in (content_encoding or "").split(","))
        if c and c != "identity"
    ]
    for coding in codings:
        if coding not in ("gzip", "deflate", "br", "zstd"):
            raise UnsupportedCoding(f"unsupported content coding {coding!r}")
    if len(codings) > MAX_CODINGS:
        raise UnsupportedCoding(f"too many content codings ({len(codings)}, "
                                f"at most {MAX_CODINGS})")
    for coding in reversed(codings):
        if not data:
            break
        if coding == "br":
            data = _unbrotli(data, max_size)
        elif coding == "zstd":
            data = _unzstd(data, max_size)
        elif coding == "gzip":
            data = _inflate(data, _GZIP, max_size, "gzip")
        else:
            data = _inflate(data, _ZLIB if _looks_zlib(data) else _RAW, max_size, "deflate")
    if len(data) > max_size:
        raise _too_large(max_size)
    return data


def _too_large(max_size: int) -> TooLarge:
    return TooLarge(f"decoded body exceeds the limit of {max_size} bytes")


def _looks_zlib(data: bytes) -> bool:
    # RFC 1950 header: compression method 8 and a check bits multiple of 31. Servers that
    # send raw deflate as "deflate" are common enough that both are accepted.
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


def _inflate(data: bytes, wbits: int, max_size: int, name: str) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            # max_length stops inflating one byte past the limit, whatever the input holds.
            chunk = inflater.decompress(data, max_size - size + 1)
        except zlib.error as e:
            if wbits == _ZLIB:  # raw deflate whose first bytes happen to pass the check
                return _inflate(data, _RAW, max_size, name)
            raise DecodeError(f"invalid {name} data: {e}") from e
        size += len(chunk)
        if size > max_size:
            raise _too_large(max_size)
        parts.append(chunk)
        if not inflater.eof:
            raise DecodeError(f"truncated {name} data")
        data = inflater.unused_data
        if not data:
            return b"".join(parts)
        if wbits != _GZIP or not data.startswith(b"\x1f\x8b"):
            raise DecodeError(f"unexpected data after the end of the {name} stream")
        # Concatenated gzip members (RFC 1952 §2.2) form one body.


def _unbrotli(data: bytes, max_size: int) -> bytes:
    decoder = brotli.Decompressor()
    parts: list[bytes] = []
    size = 0
    try:
        # The output buffer stops growing at the limit (rounded up to a decoder block);
        # the decoder keeps the rest of the input until asked again with b"".
        chunk = decoder.process(data, output_buffer_limit=max_size + 1)
        while True:
            size += len(chunk)
            if size > max_size:
                raise _too_large(max_size)
            parts.append(chunk)
            if decoder.can_accept_more_data():
                break
            chunk = decoder.process(b"", output_buffer_limit=max_size - size + 1)
    except brotli.error as e:
        raise DecodeError(f"invalid br data: {e}") from e
    if not decoder.is_finished():
        raise DecodeError("truncated br data")
    return b"".join(parts)


def _unzstd(data: bytes, max_size: int) -> bytes:
    """Frame after frame, fed a slice at a time: one slice can't decode to more than about
    2 MB whatever it holds (a block is at most 128 KiB of output and takes at least 4
    bytes), so the output is checked against `max_size` long before a bomb goes off; and
    a frame cut short is an error, not a shorter body."""
    decoder = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
    view = memoryview(data)
    parts: list[bytes] = []
    size = pos = 0
    try:
        while pos < len(view):
            frame = decoder.decompressobj()
            while not frame.eof:
                if pos >= len(view):
                    raise DecodeError("truncated zstd data")
                end = min(pos + _ZSTD_SLICE, len(view))
                chunk = frame.decompress(view[pos:end])
                pos = end
                size += len(chunk)
                if size > max_size:
                    raise _too_large(max_size)
                parts.append(chunk)
            pos -= len(frame.unused_data)  # the next frame's first bytes
    except zstandard.ZstdError as e:
        raise DecodeError(f"invalid zstd data: {e}") from e
    return b"".join(parts)


_ZSTD_SLICE = 64  # input bytes per step of a zstd decode (see _unzstd)
