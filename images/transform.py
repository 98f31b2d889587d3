"""Resize, crop and re-encode one image: source bytes and a Spec in, a Result out.

A pure function so the edge can run it in a worker pool: no I/O, no HTTP, nothing kept
between calls. Work is bounded before it starts: the byte count is checked before parsing
and the pixel count from the header before anything is decoded, and a JPEG that is being
shrunk is decoded at 1/2, 1/4 or 1/8 size (``Image.draft``), which is most of the speed.

What comes out: the first frame only (animated GIF, WebP and AVIF become stills), turned
upright from its EXIF orientation, converted to sRGB, and with no metadata at all (EXIF, XMP,
ICC profile, comments). Never larger than the source. Every failure is an ImageError.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, get_args

from PIL import Image, ImageCms, ImageFile, ImageOps, UnidentifiedImageError

from images.errors import ImageError
from images.formats import (
    CONTENT_TYPES,
    OUTPUT_FORMATS,
    SOURCE_FORMATS,
    OutputFormat,
    encodable,
    sniff,
)

__all__ = [
    "DEFAULT_QUALITY", "MAX_DIMENSION", "Crop", "Effort", "Fit", "Limits", "Master", "Result",
    "Spec", "decode_master", "render", "transform",
]  # fmt: skip

Fit = Literal["contain", "cover"]
Crop = Literal["center", "top", "bottom", "left", "right", "entropy"]
Effort = Literal["fast", "balanced", "small"]
FITS: frozenset[str] = frozenset(get_args(Fit))
CROPS: frozenset[str] = frozenset(get_args(Crop))
EFFORTS: frozenset[str] = frozenset(get_args(Effort))

# Equal quality numbers don't mean equal quality across codecs. These give files of similar
# visual quality for photos; AVIF's scale is the harshest.
DEFAULT_QUALITY: dict[str, int] = {"avif": 55, "webp": 75, "jpeg": 80, "png": 100}
# WebP can't store a side over 16383 px; one cap for every format keeps outputs portable.
MAX_DIMENSION = 16383
# One encoder thread: the worker pool is the parallelism.
_AVIF_THREADS = 1
_REDUCING_GAP = 3.0  # box-reduce first when shrinking 3x+; Pillow: indistinguishable at >= 3
_ENTROPY_SIDE = 128  # px on the long side of the grey copy the entropy crop looks at
_ENTROPY_STEPS = 8
_PIL_FORMAT = {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WEBP", "avif": "AVIF"}
_EXIF_ORIENTATION = 0x0112
_SWAPS_AXES = frozenset({5, 6, 7, 8})  # orientations that turn the image by 90 degrees
_GRAVITY: dict[str, tuple[float, float]] = {
    "center": (0.5, 0.5),
    "top": (0.5, 0.0),
    "bottom": (0.5, 1.0),
    "left": (0.0, 0.5),
    "right": (1.0, 0.5),
}
_MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class _Effort:
    resample: Image.Resampling
    webp_method: int  # libwebp 0 (fast) - 6 (small)
    avif_speed: int  # libavif 0 (small) - 10 (fast)
    jpeg_optimize: bool  # optimised Huffman tables and progressive scans
    png_level: int  # zlib 0-9


# Measured on a 3000x2000 photo-like JPEG -> 400 px (bench/images.py's source), where the
# decode alone takes ~21 ms: `balanced` resizes with Lanczos and encodes WebP in 12.7 ms
# (method 4, what thumbor does); `fast` resizes with bicubic (41 dB PSNR from Lanczos)
# and encodes in 4.8 ms (method 1: 0.2% fewer bytes, 0.13 dB lower PSNR on that image);
# `small` spends 39 ms for 2% fewer bytes. AVIF speed 8 took 7 ms against 26 ms at speed 6
# on a 400x267 photo, for 10% more bytes.
_EFFORTS: dict[str, _Effort] = {
    "fast": _Effort(Image.Resampling.BICUBIC, 1, 10, False, 3),
    "balanced": _Effort(Image.Resampling.LANCZOS, 4, 8, True, 6),
    "small": _Effort(Image.Resampling.LANCZOS, 6, 6, True, 9),
}


@dataclass(frozen=True, slots=True)
class Spec:
    """What to make of a source image.

    ``contain`` fits the image inside width x height keeping its shape; ``cover`` fills
    exactly width x height, cutting off what sticks out at the side ``crop`` names
    (``entropy``: keeps the busiest part). ``cover`` needs both sides; with one it acts as
    ``contain``. Neither side given: the source size. Never upscales: a ``cover`` box larger
    than the source shrinks to the largest box of the same shape that fits. ``quality`` is
    1-100, None for the format's default; PNG is lossless and ignores it. ``effort`` trades
    encoder time for bytes: ``fast``, ``balanced`` (the default) or ``small``.
    """

    width: int | None = None
    height: int | None = None
    fit: Fit = "contain"
    crop: Crop = "center"
    format: OutputFormat = "jpeg"
    quality: int | None = None
    effort: Effort = "balanced"

    def __post_init__(self) -> None:
        for name, side in (("width", self.width), ("height", self.height)):
            if side is not None and (_not_int(side) or not 1 <= side <= MAX_DIMENSION):
                raise ValueError(f"{name} must be 1-{MAX_DIMENSION}, got {side!r}")
        if self.fit not in FITS:
            raise ValueError(f"fit must be one of {_names(FITS)}, got {self.fit!r}")
        if self.crop not in CROPS:
            raise ValueError(f"crop must be one of {_names(CROPS)}, got {self.crop!r}")
        if self.format not in OUTPUT_FORMATS:
            raise ValueError(f"format must be one of {_names(OUTPUT_FORMATS)}, got {self.format!r}")
        if self.quality is not None and (_not_int(self.quality) or not 1 <= self.quality <= 100):
            raise ValueError(f"quality must be 1-100, got {self.quality!r}")
        if self.effort not in EFFORTS:
            raise ValueError(f"effort must be one of {_names(EFFORTS)}, got {self.effort!r}")


@dataclass(frozen=True, slots=True)
class Limits:
    """The most work one transformation may do; checked before the work is done.

    ``max_pixels`` is read from the header, before decoding. It may not exceed Pillow's
    decompression-bomb threshold (``Image.MAX_IMAGE_PIXELS``), so Pillow's own check never
    lets through what ours would refuse. The default allows 48 MP phone photos (8064x6048);
    a decoded image takes up to 4 bytes a pixel. ``accept_formats`` are the source formats
    that may be decoded at all (names from SOURCE_FORMATS).
    """

    max_source_bytes: int = 25 * _MIB
    max_pixels: int = 50_000_000
    max_output_bytes: int = 5 * _MIB
    accept_formats: frozenset[str] = SOURCE_FORMATS

    def __post_init__(self) -> None:
        for name in ("max_source_bytes", "max_pixels", "max_output_bytes"):
            value = getattr(self, name)
            if _not_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        bomb = Image.MAX_IMAGE_PIXELS
        if bomb is not None and self.max_pixels > bomb:
            raise ValueError(
                f"max_pixels must be at most Pillow's MAX_IMAGE_PIXELS ({bomb}), "
                f"got {self.max_pixels}"
            )
        accept = frozenset(self.accept_formats)
        if not accept or not accept <= SOURCE_FORMATS:
            raise ValueError(
                f"accept_formats must be a non-empty subset of {_names(SOURCE_FORMATS)}, "
                f"got {_names(accept) or 'nothing'}"
            )
        object.__setattr__(self, "accept_formats", accept)


@dataclass(frozen=True, slots=True)
class Result:
    """An encoded image and what the response needs to describe it."""

    body: bytes
    content_type: str
    width: int
    height: int
    format: OutputFormat


@dataclass(frozen=True, slots=True)
class _Plan:
    """Output size, and the part of the upright source that fills it (fractions of each side)."""

    width: int
    height: int
    region: tuple[float, float]


def transform(source: bytes, spec: Spec, limits: Limits) -> Result:
    """``source`` resized, cropped and encoded as ``spec`` says, within ``limits``.

    Raises ImageError: too-large, too-many-pixels (neither decodes anything),
    unsupported-format, corrupt (truncated files included), output-too-large, encode-failed.
    """
    _check_source(source, limits)
    _check_format(spec)
    with _decoded(source, limits, spec) as (im, icc, upright):
        image = _finish(_resize(_normalize_mode(im), _plan(upright, spec), spec.crop,
                                _EFFORTS[spec.effort].resample), icc, spec.format)
    return _result(image, spec, limits)


def _check_source(source: bytes, limits: Limits) -> None:
    if len(source) > limits.max_source_bytes:
        raise ImageError(
            "too-large",
            f"source is {len(source)} bytes, over the limit of {limits.max_source_bytes}",
        )


def _check_format(spec: Spec) -> None:
    if spec.format not in encodable():
        raise ImageError("unsupported-format", f"this Pillow build can't write {spec.format}")


def _result(image: Image.Image, spec: Spec, limits: Limits) -> Result:
    """The finished pixels encoded, within the output limit."""
    body = _encode(image, spec)
    if len(body) > limits.max_output_bytes:
        raise ImageError(
            "output-too-large",
            f"{spec.format} output is {len(body)} bytes, over the limit of "
            f"{limits.max_output_bytes}",
        )
    return Result(body=body, content_type=CONTENT_TYPES[spec.format], width=image.width,
                  height=image.height, format=spec.format)


@dataclass(frozen=True, slots=True)
class Master:
    """A source decoded once for many outputs: upright, in sRGB, as L, RGB or RGBA pixels
    (``mode``, ``size``, rows top to bottom, no padding), at most as reduced as the
    largest width it is made for allows. ``upright`` is the source's own size, upright:
    outputs are planned on it, so they come out the size they would from the source."""

    mode: str
    size: tuple[int, int]
    upright: tuple[int, int]

    @property
    def nbytes(self) -> int:
        return self.size[0] * self.size[1] * len(self.mode)


def decode_master(source: bytes, limits: Limits, width: int) -> tuple[Image.Image, Master]:
    """``source`` decoded for outputs up to ``width`` px wide (contain): a JPEG reduced by
    libjpeg's draft, any other format box-reduced by a power of two, never below what a
    ``width`` output needs. Raises ImageError as ``transform`` does."""
    _check_source(source, limits)
    with _decoded(source, limits, Spec(width=width)) as (im, icc, upright):
        image = _normalize_mode(im)
        plan = _plan(upright, Spec(width=width))
        factor = _reduction(image.size, (plan.width, plan.height))
        if factor > 1:
            image = image.reduce(factor)
        if icc is not None and image.mode in ("RGB", "RGBA", "CMYK"):
            image = _to_srgb(image, icc)
        if image.mode == "CMYK":
            image = image.convert("RGB")
        if image is im:
            image = im.copy()
    image.info = {}
    return image, Master(image.mode, image.size, upright)


def render(pixels: Image.Image, master: Master, spec: Spec, limits: Limits) -> Result | None:
    """``spec`` made from a master's pixels, as ``transform`` would make it from the source
    (sizes equal; pixels as from a draft decode, which is what a reduced master is); None
    when the master is too small for it (a larger size than it was made for)."""
    _check_format(spec)
    plan = _plan(master.upright, spec)
    # the whole image's size at which the plan's region is at least the output's size
    # (what a draft decode asks libjpeg for)
    need = (math.ceil(plan.width / plan.region[0]), math.ceil(plan.height / plan.region[1]))
    if master.size != master.upright and (need[0] > master.size[0]
                                          or need[1] > master.size[1]):
        return None
    factor = _reduction(master.size, need)
    image = pixels.reduce(factor) if factor > 1 else pixels
    image = _finish(_resize(image, plan, spec.crop, _EFFORTS[spec.effort].resample), None,
                    spec.format)
    return _result(image, spec, limits)


def _reduction(size: tuple[int, int], need: tuple[int, int]) -> int:
    """The largest power of two (up to 8, as libjpeg's draft) an image of ``size`` can be
    box-reduced by and still be at least ``need`` on both sides."""
    factor = 1
    while factor < 8 and (size[0] // (factor * 2) >= need[0]
                          and size[1] // (factor * 2) >= need[1]):
        factor *= 2
    return factor


@contextmanager
def _decoded(source: bytes, limits: Limits, spec: Spec
             ) -> Iterator[tuple[ImageFile.ImageFile, bytes | None, tuple[int, int]]]:
    """The source decoded for `spec` (reduced by libjpeg's draft when a JPEG is shrunk),
    turned upright; with its ICC profile and upright size. Every failure inside, the
    caller's work on the pixels included, is an ImageError."""
    # Pillow raises a zoo of types on bad input (OSError, SyntaxError, ValueError,
    # struct.error, EOFError, zlib.error, ...); anything but ours means the file is bad.
    try:
        with _open(source, limits) as im:
            icc = im.info.get("icc_profile")
            orientation = _orientation(im)
            swapped = orientation in _SWAPS_AXES
            upright = (im.height, im.width) if swapped else (im.width, im.height)
            if im.format in ("JPEG", "MPO"):
                _draft(im, _plan(upright, spec), swapped=swapped)
            im.load()
            if orientation not in (None, 1):
                ImageOps.exif_transpose(im, in_place=True)
            yield im, icc if isinstance(icc, bytes) else None, upright
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Past our own check only when warnings are errors; a bomb all the same.
        raise ImageError("too-many-pixels", str(exc)) from exc
    except Exception as exc:
        found = sniff(source) or "source"
        raise ImageError("corrupt", f"can't decode the {found} image: {exc}") from exc


@contextmanager
def _open(source: bytes, limits: Limits) -> Iterator[ImageFile.ImageFile]:
    """The image with its header read and nothing decoded, or ImageError."""
    formats = [_PIL_FORMAT[name] for name in sorted(limits.accept_formats)]
    try:
        im = Image.open(io.BytesIO(source), formats=formats)
    except UnidentifiedImageError as exc:
        found = sniff(source)
        if found in limits.accept_formats:
            raise ImageError("corrupt", f"not a readable {found} image") from exc
        accepted = _names(limits.accept_formats)
        if found is None:
            raise ImageError(
                "unsupported-format", f"not an image in a known format (accepted: {accepted})"
            ) from exc
        raise ImageError(
            "unsupported-format", f"{found} images are not accepted (accepted: {accepted})"
        ) from exc
    with im:
        width, height = im.size
        if width * height > limits.max_pixels:
            raise ImageError(
                "too-many-pixels",
                f"{width}x{height} is {width * height} pixels, over the limit of "
                f"{limits.max_pixels}",
            )
        yield im


def _orientation(im: Image.Image) -> int | None:
    """The EXIF orientation (1-8), or None. Broken EXIF is no reason to refuse the pixels."""
    try:
        value = im.getexif().get(_EXIF_ORIENTATION)
    except Exception:
        return None
    return value if isinstance(value, int) and 1 <= value <= 8 else None


def _plan(size: tuple[int, int], spec: Spec) -> _Plan:
    src_w, src_h = size
    if spec.fit == "cover" and spec.width is not None and spec.height is not None:
        width, height = spec.width, spec.height
        scale = max(width / src_w, height / src_h)
        if scale > 1:  # would upscale: the same shape, as large as the source allows
            width, height = max(1, round(width / scale)), max(1, round(height / scale))
            scale = 1.0
        region = (min(1.0, width / scale / src_w), min(1.0, height / scale / src_h))
        return _Plan(width, height, region)
    scales = [1.0, MAX_DIMENSION / src_w, MAX_DIMENSION / src_h]
    if spec.width is not None:
        scales.append(spec.width / src_w)
    if spec.height is not None:
        scales.append(spec.height / src_h)
    scale = min(scales)
    return _Plan(max(1, round(src_w * scale)), max(1, round(src_h * scale)), (1.0, 1.0))


def _draft(im: ImageFile.ImageFile, plan: _Plan, *, swapped: bool) -> None:
    """Have libjpeg decode at the smallest 1/2^n scale still at least the needed size."""
    need = (math.ceil(plan.width / plan.region[0]), math.ceil(plan.height / plan.region[1]))
    if swapped:
        need = (need[1], need[0])
    if need[0] < im.width and need[1] < im.height:
        im.draft(None, need)


def _normalize_mode(im: Image.Image) -> Image.Image:
    """The image as L, RGB, RGBA or CMYK (CMYK stays for its ICC profile), ready to resize."""
    if im.mode in ("L", "RGB", "RGBA", "CMYK") and "transparency" not in im.info:
        return im
    if im.mode.startswith("I;16"):
        # 16-bit grey: scale to 8 bits (convert("L") would clip everything above 255).
        return im.point(lambda value: value / 257).convert("L")
    if im.has_transparency_data:
        return im.convert("RGBA")
    if im.mode == "1":
        return im.convert("L")
    return im.convert("RGB")


def _resize(im: Image.Image, plan: _Plan, crop: Crop, resample: Image.Resampling
            ) -> Image.Image:
    width, height = im.size
    region_w, region_h = plan.region[0] * width, plan.region[1] * height
    if crop == "entropy":
        left, top = _entropy_offset(im, (region_w, region_h))
    else:
        gravity_x, gravity_y = _GRAVITY[crop]
        left, top = (width - region_w) * gravity_x, (height - region_h) * gravity_y
    box = (left, top, left + region_w, top + region_h)
    return im.resize((plan.width, plan.height), resample, box=box, reducing_gap=_REDUCING_GAP)


def _entropy_offset(im: Image.Image, region: tuple[float, float]) -> tuple[float, float]:
    """Top-left corner of the region-sized window with the most detail (grey entropy)."""
    factor = max(1, max(im.size) // _ENTROPY_SIDE)
    small = im.reduce(factor).convert("L")
    scale_x, scale_y = small.width / im.width, small.height / im.height
    window_w = max(1, round(region[0] * scale_x))
    window_h = max(1, round(region[1] * scale_y))
    free_x, free_y = small.width - window_w, small.height - window_h
    # Candidates from the middle outwards, so a tie keeps the centre.
    steps = sorted(range(_ENTROPY_STEPS + 1), key=lambda step: abs(2 * step - _ENTROPY_STEPS))
    best, best_entropy = (0, 0), -1.0
    for step in steps:
        x = round(free_x * step / _ENTROPY_STEPS)
        y = round(free_y * step / _ENTROPY_STEPS)
        entropy = small.crop((x, y, x + window_w, y + window_h)).entropy()
        if entropy > best_entropy:
            best, best_entropy = (x, y), entropy
    left = min(best[0] / scale_x, im.width - region[0])
    top = min(best[1] / scale_y, im.height - region[1])
    return max(0.0, left), max(0.0, top)


def _finish(im: Image.Image, icc: bytes | None, fmt: OutputFormat) -> Image.Image:
    """Pixels in sRGB, in a mode ``fmt`` can store, with no metadata left in ``info``."""
    if icc and im.mode in ("RGB", "RGBA", "CMYK"):
        im = _to_srgb(im, icc)
    if im.mode == "CMYK":
        im = im.convert("RGB")
    if im.mode == "RGBA":
        low, _ = im.getchannel("A").getextrema()
        if fmt == "jpeg" or low == 255:
            # JPEG has no alpha: composite on white. An alpha that is all opaque is dropped.
            background = Image.new("RGB", im.size, (255, 255, 255))
            background.paste(im, mask=im.getchannel("A"))
            im = background
    if im.mode == "L" and fmt in ("webp", "avif"):
        im = im.convert("RGB")
    # Plugins read icc_profile, exif and friends from info when save() isn't given them.
    im.info = {}
    return im


def _to_srgb(im: Image.Image, icc: bytes) -> Image.Image:
    """The pixels converted from the embedded profile to sRGB; unchanged if it's unusable.

    Converting rather than keeping the profile: wide-gamut (Display P3) photos look right in
    every viewer, and there is no profile to ship (0.5-3 KB, far more from some cameras).
    """
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if ImageCms.getProfileDescription(profile).strip().startswith("sRGB"):
            return im
        mode = "RGBA" if im.mode == "RGBA" else "RGB"
        converted = ImageCms.profileToProfile(
            im, profile, ImageCms.createProfile("sRGB"), outputMode=mode
        )
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return im  # a broken profile: treat the pixels as sRGB, as browsers do
    return converted if converted is not None else im


def _encode(im: Image.Image, spec: Spec) -> bytes:
    quality = spec.quality if spec.quality is not None else DEFAULT_QUALITY[spec.format]
    effort = _EFFORTS[spec.effort]
    options: dict[str, Any]
    if spec.format == "jpeg":
        options = {"quality": quality, "optimize": effort.jpeg_optimize,
                   "progressive": effort.jpeg_optimize}
    elif spec.format == "webp":
        options = {"quality": quality, "method": effort.webp_method}
    elif spec.format == "avif":
        options = {"quality": quality, "speed": effort.avif_speed, "max_threads": _AVIF_THREADS}
    else:
        options = {"compress_level": effort.png_level}
    out = io.BytesIO()
    try:
        im.save(out, format=_PIL_FORMAT[spec.format], **options)
    except Exception as exc:
        raise ImageError("encode-failed", f"{spec.format} encoder failed: {exc}") from exc
    return out.getvalue()


def _not_int(value: object) -> bool:
    return not isinstance(value, int) or isinstance(value, bool)


def _names(names: frozenset[str]) -> str:
    return ", ".join(sorted(names))
