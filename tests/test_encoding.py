from __future__ import annotations

import time
import tracemalloc
import zlib

import brotli
import orjson
import pytest
import zstandard

from edge.encoding import (
    DEFAULT_BROTLI_QUALITY,
    DecodeError,
    NotAcceptable,
    StreamCompressor,
    TooLarge,
    _choose_coding,
    choose_coding,
    choose_format,
    compress,
    decode,
    is_compressible,
    parse_qlist,
)

DOC = orjson.dumps(
    [{"id": f"CLM-{i:05d}", "status": "approved", "amount": i * 12.5} for i in range(200)]
)
MB = 1024 * 1024


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("", []),
        ("gzip", [("gzip", 1.0)]),
        ("GZIP ; Q=0.5 ,  Br", [("gzip", 0.5), ("br", 1.0)]),
        ("gzip;q=abc, br;q=2, zstd;q=-1, deflate;q=nan, identity;q=", []),
        ("gzip;q=0.5;foo=bar, br;foo=bar;q=0", [("gzip", 0.5), ("br", 0.0)]),
        ("text/html;level=1;q=0.7, */*", [("text/html", 0.7), ("*/*", 1.0)]),
        (",, ;q=1, g zip, br", [("br", 1.0)]),
        (", ".join(f"c{i}" for i in range(40)), [(f"c{i}", 1.0) for i in range(32)]),
        ("gzip, " + "x" * 2000, [("gzip", 1.0)]),  # cut at 1 KiB, at an item boundary
    ],
)
def test_parse_qlist(header: str, expected: list[tuple[str, float]]) -> None:
    assert parse_qlist(header) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("identity", None),
        ("gzip", "gzip"),
        ("x-gzip", "gzip"),
        ("br", "br"),
        ("gzip, br", "br"),  # tie: our order
        ("br;q=0, gzip", "gzip"),
        ("gzip;q=0.5, br;q=0.9", "br"),
        ("gzip;q=0.9, br;q=0.5", "gzip"),
        ("*", "br"),
        ("*;q=0.5, br;q=0", "zstd"),
        ("*;q=0.5, br;q=0, zstd;q=0", "gzip"),
        ("gzip;q=0, *", "br"),
        ("*;q=0, identity", None),
        ("*;q=0, gzip", "gzip"),
        ("identity;q=0, gzip", "gzip"),
        ("identity;q=1, gzip;q=0.5", None),  # the client prefers identity
        ("identity, gzip", "gzip"),
        ("deflate, zstd", "zstd"),
        ("gzip, deflate, br, zstd", "br"),  # Chromium's: br first among equals
        ("zstd;q=1, br;q=0.9", "zstd"),
        ("deflate", None),
        ("gzip;q=0, br;q=0", None),
        ("gzip;q=abc, br;q=1.5", None),  # garbage q: items skipped
        ("GZIP;Q=0.8,  BR ;q=0.4", "gzip"),
        ("gzip;q=0, gzip", None),  # a repeated token: the first counts
        ("gzip;q=0.001", "gzip"),
    ],
)
def test_choose_coding(header: str | None, expected: str | None) -> None:
    assert choose_coding(header) == expected


@pytest.mark.parametrize(
    ("header", "offered", "expected"),
    [
        ("gzip, br", ("gzip", "br"), "gzip"),
        ("br", ("gzip",), None),
        ("*", ("gzip",), "gzip"),
    ],
)
def test_choose_coding_offered(header: str, offered: tuple[str, ...], expected: str) -> None:
    assert choose_coding(header, offered) == expected


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("*;q=0", "no acceptable content coding (offered br, zstd, gzip, identity) "
                  "for Accept-Encoding '*;q=0'"),
        ("identity;q=0", "no acceptable content coding (offered br, zstd, gzip, identity) "
                         "for Accept-Encoding 'identity;q=0'"),
        ("br;q=0, gzip;q=0, identity;q=0", "no acceptable content coding (offered br, zstd, "
                                           "gzip, identity) for Accept-Encoding "
                                           "'br;q=0, gzip;q=0, identity;q=0'"),
        ("deflate, *;q=0", "no acceptable content coding (offered br, zstd, gzip, identity) "
                           "for Accept-Encoding 'deflate, *;q=0'"),
    ],
)  # fmt: skip
def test_choose_coding_not_acceptable(header: str, message: str) -> None:
    with pytest.raises(NotAcceptable) as info:
        choose_coding(header)
    assert str(info.value) == message


def test_choose_coding_is_cached_per_header() -> None:
    header = "gzip;q=0.3, br;q=0.2, cached-test"
    choose_coding(header)
    hits = _choose_coding.cache_info().hits
    assert choose_coding(header) == "gzip"
    assert _choose_coding.cache_info().hits == hits + 1
    with pytest.raises(NotAcceptable):
        choose_coding("*;q=0, cached-test")
    hits = _choose_coding.cache_info().hits
    with pytest.raises(NotAcceptable):
        choose_coding("*;q=0, cached-test")
    assert _choose_coding.cache_info().hits == hits + 1


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "json"),
        ("", "json"),
        ("*/*", "json"),
        ("application/*", "json"),
        ("application/json", "json"),
        ("application/json; charset=utf-8", "json"),
        ("APPLICATION/JSON", "json"),
        ("application/msgpack", "msgpack"),
        ("application/x-msgpack", "msgpack"),
        ("application/msgpack, application/json", "json"),  # tie: our order
        ("application/json;q=0.5, application/msgpack", "msgpack"),
        ("application/json;q=0, */*", "msgpack"),
        ("application/json;q=0, application/*;q=0.1", "msgpack"),
        ("application/msgpack;q=0, application/*", "json"),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "json"),
        ("application/problem+json, */*;q=0.1", "json"),
        ("application/x-msgpack;q=0.9, application/json;q=0.8", "msgpack"),
        ("application/json;q=bad, application/msgpack", "msgpack"),
        ("garbage;;;", "json"),  # nothing readable: as if missing
    ],
)
def test_choose_format(header: str | None, expected: str) -> None:
    assert choose_format(header) == expected


def test_choose_format_offered() -> None:
    assert choose_format("*/*", ("msgpack",)) == "msgpack"
    assert choose_format(None, ("msgpack", "json")) == "msgpack"
    with pytest.raises(ValueError, match="^unknown format 'xml'; expected one of json, msgpack$"):
        choose_format("*/*", ("xml",))


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("text/html", "none of application/json, application/msgpack is acceptable for "
                      "Accept 'text/html'"),
        ("application/json;q=0", "none of application/json, application/msgpack is "
                                 "acceptable for Accept 'application/json;q=0'"),
        ("application/problem+json", "none of application/json, application/msgpack is "
                                     "acceptable for Accept 'application/problem+json'"),
        ("*/*;q=0", "none of application/json, application/msgpack is acceptable for "
                    "Accept '*/*;q=0'"),
        ("text/*, application/msgpack;q=0, application/json;q=0",
         "none of application/json, application/msgpack is acceptable for Accept "
         "'text/*, application/msgpack;q=0, application/json;q=0'"),
    ],
)  # fmt: skip
def test_choose_format_not_acceptable(header: str, message: str) -> None:
    with pytest.raises(NotAcceptable) as info:
        choose_format(header)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        (None, False),
        ("", False),
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("Application/JSON", True),
        ("application/problem+json", True),
        ("application/atom+xml", True),
        ("application/xml", True),
        ("application/javascript", True),
        ("application/msgpack", True),
        ("application/x-msgpack", True),
        ("text/plain", True),
        ("text/html; charset=utf-8", True),
        ("text/css", True),
        ("image/svg+xml", True),
        ("text/event-stream", False),
        ("image/jpeg", False),
        ("image/png", False),
        ("image/webp", False),
        ("video/mp4", False),
        ("audio/mpeg", False),
        ("application/zip", False),
        ("application/gzip", False),
        ("application/x-brotli", False),
        ("application/octet-stream", False),
        ("application/pdf", False),
        ("font/woff2", False),
    ],
)
def test_is_compressible(content_type: str | None, expected: bool) -> None:
    assert is_compressible(content_type) is expected


def _gunzip(data: bytes) -> bytes:
    return zlib.decompress(data, wbits=31)


def _unzstd(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompressobj().decompress(data)


UNDO = {"br": brotli.decompress, "gzip": _gunzip, "zstd": _unzstd}


@pytest.mark.parametrize("coding", ["br", "gzip", "zstd"])
@pytest.mark.parametrize("quality", [None, 1, 9])
@pytest.mark.parametrize("data", [b"", b"x", DOC])
def test_compress_round_trip(coding: str, quality: int | None, data: bytes) -> None:
    encoded = compress(data, coding, quality=quality)
    assert UNDO[coding](encoded) == data
    assert decode(encoded, coding, max_size=len(data)) == data


def test_compress_shrinks_and_is_deterministic() -> None:
    assert len(compress(DOC, "br")) < len(DOC) / 4
    assert compress(DOC, "gzip") == compress(DOC, "gzip")  # no timestamp: stable ETags
    assert compress(DOC, "zstd") == compress(DOC, "zstd")
    assert len(compress(DOC, "zstd")) < len(DOC) / 4
    assert compress(DOC, "br", text=False) != b""
    assert 0 <= DEFAULT_BROTLI_QUALITY <= 11


@pytest.mark.parametrize(
    ("coding", "quality", "message"),
    [
        ("br", 12, "brotli quality must be 0-11, got 12"),
        ("gzip", 10, "gzip level must be 0-9, got 10"),
        ("gzip", -1, "gzip level must be 0-9, got -1"),
        ("zstd", 20, "zstd level must be 1-19, got 20"),
        ("zstd", 0, "zstd level must be 1-19, got 0"),
        ("deflate", None, "can only compress with 'br', 'zstd' or 'gzip', got 'deflate'"),
    ],
)
def test_compress_errors(coding: str, quality: int | None, message: str) -> None:
    with pytest.raises(ValueError) as info:
        compress(b"x", coding, quality=quality)
    assert str(info.value) == message
    with pytest.raises(ValueError) as info:
        StreamCompressor(coding, quality)
    assert str(info.value) == message


class _Incremental:
    """The client side: decodes what has arrived so far."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self.br = brotli.Decompressor()
        self.gz = zlib.decompressobj(31)
        self.zstd = zstandard.ZstdDecompressor().decompressobj()

    def feed(self, data: bytes) -> bytes:
        if self.coding == "zstd":
            return self.zstd.decompress(data)
        return bytes(self.br.process(data)) if self.coding == "br" else self.gz.decompress(data)


@pytest.mark.parametrize("coding", ["br", "gzip", "zstd"])
def test_stream_compressor_flushes_are_decodable(coding: str) -> None:
    stream = StreamCompressor(coding)
    client = _Incremental(coding)
    sent = received = b""
    wire = b""
    for i in range(50):
        chunk = orjson.dumps({"event": i, "data": "x" * (i % 7)}) + b"\n"
        sent += chunk
        part = stream.compress(chunk)
        if i % 5 == 4:
            part += stream.flush()
            received += client.feed(part)
            assert received == sent  # everything so far reached the client
        else:
            received += client.feed(part)
        wire += part
    assert stream.flush() == b""  # nothing new since the last flush
    tail = stream.finish()
    received += client.feed(tail)
    wire += tail
    assert received == sent
    assert UNDO[coding](wire) == sent
    assert decode(wire, coding, max_size=len(sent)) == sent


def test_stream_compressor_after_finish() -> None:
    stream = StreamCompressor("gzip")
    assert _gunzip(stream.finish()) == b""
    with pytest.raises(ValueError, match=r"^StreamCompressor used after finish\(\)$"):
        stream.compress(b"x")


def _zstd_streamed(data: bytes) -> bytes:
    stream = zstandard.ZstdCompressor().compressobj()
    return stream.compress(data) + stream.flush()


def _raw_deflate(data: bytes) -> bytes:
    deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
    return deflater.compress(data) + deflater.flush()


@pytest.mark.parametrize(
    ("encoded", "coding"),
    [
        (DOC, None),
        (DOC, ""),
        (DOC, "identity"),
        (zlib.compress(DOC, wbits=31), "gzip"),
        (zlib.compress(DOC, wbits=31), "x-gzip"),
        (zlib.compress(DOC, wbits=31), " GZIP "),
        (zlib.compress(DOC), "deflate"),
        (_raw_deflate(DOC), "deflate"),
        (brotli.compress(DOC), "br"),
        (brotli.compress(zlib.compress(DOC, wbits=31)), "gzip, br"),
        (zlib.compress(brotli.compress(DOC), wbits=31), "br,gzip"),
        (zlib.compress(DOC, wbits=31), "identity, gzip"),
        (zlib.compress(DOC[:100], wbits=31) + zlib.compress(DOC[100:], wbits=31), "gzip"),
        (zstandard.ZstdCompressor().compress(DOC), "zstd"),
        (zstandard.ZstdCompressor().compress(DOC[:100])
         + zstandard.ZstdCompressor().compress(DOC[100:]), "zstd"),  # two frames, one body
        (_zstd_streamed(DOC), "zstd"),  # no content size in the frame
        (zstandard.ZstdCompressor().compress(brotli.compress(DOC)), "br, zstd"),
    ],
)
def test_decode(encoded: bytes, coding: str | None) -> None:
    assert decode(encoded, coding, max_size=len(DOC)) == DOC


def test_decode_empty_body() -> None:
    assert decode(b"", "gzip, br", max_size=0) == b""


@pytest.mark.parametrize(
    ("encoded", "coding", "message"),
    [
        (DOC, "compress", "unsupported content coding 'compress'"),
        (zstandard.ZstdCompressor().compress(DOC)[:-10], "zstd", "truncated zstd data"),
        (_zstd_streamed(DOC)[:-3], "zstd", "truncated zstd data"),
        (zstandard.ZstdCompressor().compress(DOC) + b"junk", "zstd",
         "invalid zstd data: zstd decompressor error: Unknown frame descriptor"),
        (DOC, "gzip, compress", "unsupported content coding 'compress'"),
        (DOC, "gzip,gzip,gzip,gzip,gzip",
         "too many content codings (5, at most 4)"),
        (b"not gzip at all", "gzip",
         "invalid gzip data: Error -3 while decompressing data: incorrect header check"),
        (zlib.compress(DOC, wbits=31)[:-20], "gzip", "truncated gzip data"),
        (zlib.compress(DOC, wbits=31) + b"junk", "gzip",
         "unexpected data after the end of the gzip stream"),
        (zlib.compress(DOC) + b"junk", "deflate",
         "unexpected data after the end of the deflate stream"),
        (zlib.compress(DOC)[:-20], "deflate", "truncated deflate data"),
        (b"\x78\x9cgarbage", "deflate",
         "invalid deflate data: Error -3 while decompressing data: invalid stored block lengths"),
        (brotli.compress(DOC)[:-10], "br", "truncated br data"),
        (b"\xff" * 20, "br", "invalid br data: brotli: decoder failed"),
    ],
)  # fmt: skip
def test_decode_errors(encoded: bytes, coding: str, message: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode(encoded, coding, max_size=len(DOC))
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("encoded", "coding"),
    [
        (DOC, None),
        (zlib.compress(DOC, wbits=31), "gzip"),
        (zlib.compress(DOC), "deflate"),
        (_raw_deflate(DOC), "deflate"),
        (brotli.compress(DOC), "br"),
        (brotli.compress(zlib.compress(DOC, wbits=31)), "gzip, br"),
        (zstandard.ZstdCompressor().compress(DOC), "zstd"),
        (_zstd_streamed(DOC), "zstd"),
    ],
)
def test_decode_too_large(encoded: bytes, coding: str | None) -> None:
    with pytest.raises(TooLarge) as info:
        decode(encoded, coding, max_size=len(DOC) - 1)
    assert str(info.value) == f"decoded body exceeds the limit of {len(DOC) - 1} bytes"


def _gzip_zeros(size: int) -> bytes:
    deflater = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(64 * 1024)
    return b"".join(deflater.compress(block) for _ in range(size // len(block))) + deflater.flush()


def _br_zeros(size: int) -> bytes:
    encoder = brotli.Compressor(quality=5)
    block = bytes(64 * 1024)
    return b"".join(encoder.process(block) for _ in range(size // len(block))) + encoder.finish()


@pytest.mark.parametrize(
    ("bomb", "coding"),
    [
        (_gzip_zeros(10 * MB), "gzip"),
        (_br_zeros(10 * MB), "br"),
        (brotli.compress(_gzip_zeros(10 * MB)), "gzip, br"),
        (zstandard.ZstdCompressor(level=19).compress(bytes(10 * MB)), "zstd"),
        (_zstd_streamed(bytes(10 * MB)), "zstd"),
    ],
)
def test_decode_bomb_stops_at_max_size(bomb: bytes, coding: str) -> None:
    assert len(bomb) < 20_000
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(TooLarge):
            decode(bomb, coding, max_size=MB)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MB  # the 10 MB are never materialized
    assert elapsed < 1.0


@pytest.mark.parametrize("coding", ["gzip", "br", "deflate", "zstd"])
def test_decode_limit_is_inclusive(coding: str) -> None:
    data = bytes(MB)
    encoded = compress(data, coding) if coding != "deflate" else zlib.compress(data)
    assert decode(encoded, coding, max_size=MB) == data
    with pytest.raises(TooLarge):
        decode(encoded, coding, max_size=MB - 1)
