"""Deterministic provider logos, photos and document scans drawn with Pillow.

The ``render_*`` functions are CPU-bound and synchronous: call them in a thread
(``ImageCache.get`` does). Output depends only on the arguments.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import random
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

LOGO_SIZE = (512, 512)
PHOTO_SIZE = (1600, 1200)
DOCUMENT_SIZE = (1200, 1600)

Color = tuple[int, int, int]


def _rng(*parts: object) -> random.Random:
    # crc32, unlike hash(), is stable across processes.
    return random.Random(zlib.crc32("/".join(map(str, parts)).encode()))


def _color(rng: random.Random, low: int = 30, high: int = 225) -> Color:
    return (rng.randint(low, high), rng.randint(low, high), rng.randint(low, high))


def _gradient(size: tuple[int, int], top: Color, bottom: Color) -> Image.Image:
    mask = Image.linear_gradient("L").resize(size)
    return Image.composite(Image.new("RGB", size, bottom), Image.new("RGB", size, top), mask)


def _grain(image: Image.Image, rng: random.Random, strength: float) -> Image.Image:
    """Blend in seeded noise so JPEGs have a photo-like size and texture."""
    noise = Image.frombytes("L", image.size, rng.randbytes(image.width * image.height))
    return Image.blend(image, Image.merge("RGB", (noise, noise, noise)), strength)


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.save(buffer, "JPEG", quality=85)
    else:
        image.save(buffer, fmt)
    return buffer.getvalue()


def _initials(name: str) -> str:
    words = [word for word in name.split() if word[:1].isalpha()]
    return "".join(word[0] for word in words[-2:]).upper() or "?"


def render_logo(provider_id: str, name: str) -> bytes:
    """A 512x512 RGBA PNG: a coloured badge with the provider's initials."""
    rng = _rng("logo", provider_id)
    image = Image.new("RGBA", LOGO_SIZE, (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    color = _color(rng, 20, 180)
    draw.ellipse((16, 16, 496, 496), fill=(*color, 255))
    draw.ellipse((48, 48, 464, 464), outline=(255, 255, 255, 230), width=12)
    draw.rectangle((238, 84, 274, 196), fill=(255, 255, 255, 255))
    draw.rectangle((200, 122, 312, 158), fill=(255, 255, 255, 255))
    font = ImageFont.load_default(size=150)
    draw.text((256, 320), _initials(name), font=font, fill=(255, 255, 255, 255), anchor="mm")
    return _encode(image, "PNG")


def render_photo(provider_id: str, number: int) -> bytes:
    """A 1600x1200 JPEG "photo": sky, ground, a building with windows, a sun."""
    rng = _rng("photo", provider_id, number)
    width, height = PHOTO_SIZE
    image = _gradient(PHOTO_SIZE, _color(rng, 90, 200), _color(rng, 200, 255))
    draw = ImageDraw.Draw(image)
    horizon = rng.randint(height // 2, height * 3 // 4)
    draw.rectangle((0, horizon, width, height), fill=_color(rng, 40, 120))
    sun_x, sun_r = rng.randint(100, width - 100), rng.randint(40, 90)
    draw.ellipse((sun_x - sun_r, 80, sun_x + sun_r, 80 + 2 * sun_r), fill=(255, 230, 140))
    for _ in range(rng.randint(2, 4)):
        left = rng.randint(0, width - 400)
        right, top = left + rng.randint(250, 500), rng.randint(200, horizon - 150)
        draw.rectangle((left, top, right, horizon), fill=_color(rng, 150, 240))
        for y in range(top + 30, horizon - 60, 70):
            for x in range(left + 25, right - 50, 60):
                draw.rectangle((x, y, x + 32, y + 40), fill=_color(rng, 40, 110))
    return _encode(_grain(image, rng, 0.07), "JPEG")


def render_document(doc_id: str, kind: str, lines: list[str]) -> bytes:
    """A 1200x1600 JPEG "scan" of a claim document: header, text lines, table, stamp."""
    rng = _rng("document", doc_id)
    width, height = DOCUMENT_SIZE
    image = Image.new("RGB", DOCUMENT_SIZE, (246, 244, 236))
    draw = ImageDraw.Draw(image)
    title_font, text_font = ImageFont.load_default(size=56), ImageFont.load_default(size=30)
    draw.rectangle((80, 80, width - 80, 200), fill=_color(rng, 20, 90))
    title = kind.replace("_", " ").upper()
    draw.text((110, 140), title, font=title_font, fill="white", anchor="lm")
    y = 260
    for line in [doc_id, *lines]:
        draw.text((110, y), line, font=text_font, fill=(40, 40, 40))
        y += 50
    for row in range(rng.randint(6, 12)):
        top = y + 40 + row * 60
        draw.rectangle((110, top, width - 110, top + 2), fill=(150, 150, 150))
        draw.rectangle((130, top + 18, 130 + rng.randint(300, 700), top + 36), fill=(90, 90, 90))
        draw.rectangle((width - 360, top + 18, width - 140, top + 36), fill=(90, 90, 90))
    stamp_x, stamp_y = rng.randint(700, 950), rng.randint(1250, 1400)
    draw.ellipse((stamp_x - 120, stamp_y - 120, stamp_x + 120, stamp_y + 120),
                 outline=(40, 70, 170), width=10)  # fmt: skip
    scanned = image.rotate(rng.uniform(-1.5, 1.5), fillcolor=(60, 60, 60))
    return _encode(_grain(scanned, rng, 0.05), "JPEG")


@dataclass(frozen=True)
class RenderedImage:
    """Encoded image bytes with their validators."""

    body: bytes
    content_type: str
    etag: str


class ImageCache:
    """Rendered images by key, least recently used first out past ``max_bytes``.

    Rendering runs in a worker thread; the cache itself is only touched on the event
    loop. Two concurrent misses for one key may both render: harmless, output is equal.
    """

    def __init__(self, *, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._max_bytes = max_bytes
        self._size = 0
        self._items: OrderedDict[str, RenderedImage] = OrderedDict()

    async def get(self, key: str, content_type: str, render: Callable[[], bytes]) -> RenderedImage:
        """The cached image for ``key``, rendering it with ``render`` on a miss."""
        cached = self._items.get(key)
        if cached is not None:
            self._items.move_to_end(key)
            return cached
        body = await asyncio.to_thread(render)
        image = RenderedImage(body, content_type, hashlib.sha256(body).hexdigest()[:32])
        if key not in self._items:
            self._items[key] = image
            self._size += len(body)
        while self._size > self._max_bytes and len(self._items) > 1:
            _, evicted = self._items.popitem(last=False)
            self._size -= len(evicted.body)
        return image
