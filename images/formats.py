"""Format names, media types and magic-byte sniffing shared by the rest of the package.

Formats are lower-case names everywhere in this package ("jpeg", "webp"); only the
transform maps them to Pillow's plugin names.
"""

from __future__ import annotations

from typing import Literal, get_args

from PIL import features

__all__ = [
    "CONTENT_TYPES", "OUTPUT_FORMATS", "OutputFormat", "SOURCE_FORMATS", "SourceFormat",
    "encodable", "sniff",
]  # fmt: skip

OutputFormat = Literal["avif", "webp", "jpeg", "png"]
SourceFormat = Literal["jpeg", "png", "gif", "webp", "avif"]
OUTPUT_FORMATS: frozenset[str] = frozenset(get_args(OutputFormat))
# Decoders we let Image.open try. Pillow has ~40 more (PSD, TGA, PCX, ...) with a long CVE
# history and no use on the web; they are never reachable from a source image.
SOURCE_FORMATS: frozenset[str] = frozenset(get_args(SourceFormat))

CONTENT_TYPES: dict[str, str] = {
    "avif": "image/avif",
    "webp": "image/webp",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
}

_AVIF_BRANDS = (b"avif", b"avis")
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1")


def encodable() -> frozenset[str]:
    """The output formats this Pillow build can write (WebP and AVIF are optional)."""
    found = {"jpeg", "png"}
    if features.check("webp"):
        found.add("webp")
    if features.check("avif"):
        found.add("avif")
    return frozenset(found)


def sniff(data: bytes) -> str | None:
    """The format named by the first bytes of ``data``, or None if not a known image.

    Only a hint from the magic bytes, for choosing an output format before decoding and for
    error messages; names outside SOURCE_FORMATS ("heic", "tiff", "bmp") are never decoded.
    """
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "webp"
    if data[4:8] == b"ftyp":
        # ISO-BMFF: the major brand, then compatible brands up to the end of the ftyp box.
        end = min(int.from_bytes(data[:4], "big"), 256, len(data))
        brands = [data[8:12]] + [data[i : i + 4] for i in range(16, end - 3, 4)]
        if any(brand in _AVIF_BRANDS for brand in brands):
            return "avif"
        if any(brand in _HEIF_BRANDS for brand in brands):
            return "heic"
        return None
    if data.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if data.startswith(b"BM"):
        return "bmp"
    return None
