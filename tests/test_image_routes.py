"""Image routes over real HTTP: sizes and formats per device, hints and Save-Data, signed
arbitrary sizes, hostile sources rejected cleanly, ETags and the cache."""

from __future__ import annotations

import asyncio
import io
import struct
import zlib
from typing import Any

import pytest
from aiohttp import web
from PIL import Image

from images import sign

from .conftest import catch_all, services_yaml

KEY = "image-signing-key-" + "k" * 20


def jpeg(width: int = 3000, height: int = 2000) -> bytes:
    img = Image.new("RGB", (width, height), (200, 120, 40))
    for x in range(0, width, 50):
        img.paste((x % 255, 80, 160), (x, 0, x + 25, height))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()


def bomb_png() -> bytes:
    """A valid PNG header claiming 40000 x 40000 pixels (1.6 G) over a few bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) \
        + chunk(b"IEND", b"")


SOURCES: dict[str, bytes] = {}


def image_app(hits: dict[str, int]) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        name = request.path.rsplit("/", 1)[1]
        hits[name] = hits.get(name, 0) + 1
        if name not in SOURCES:
            return web.json_response({"error": "no such image"}, status=404)
        etag = f'"{len(SOURCES[name])}"'
        if request.headers.get("If-None-Match") == etag:
            hits["304"] = hits.get("304", 0) + 1
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=SOURCES[name], content_type="image/jpeg",
                            headers={"ETag": etag})
    return catch_all(handler)


def png_with_alpha() -> bytes:
    img = Image.new("RGBA", (1200, 800), (0, 0, 0, 0))
    img.paste((255, 0, 0, 255), (300, 200, 900, 600))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (900, 600), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return out.getvalue()


def rotated_jpeg() -> bytes:
    """Stored 1200x800 (landscape) with EXIF orientation 6: shown 800x1200 (portrait)."""
    img = Image.new("RGB", (1200, 800), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    img.save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


ROUTES = {"r.yaml": """
routes:
  - route: GET /img/{name}
    source: {service: img, path: "/photos/{name}"}
    auth: {jwt: "off"}
    image:
      widths: [200, 480, 800, 1440]
      presets: {thumb: {width: 200, quality: 60}}
      by_device:
        phone: {width: 480, quality: 75}
        tablet: {width: 800, quality: 85}
        slow: {width: 200, quality: 60}
      default: {width: 800}
      signing_keys_env: [IMG_KEY]
      max_pixels: 30000000
  - route: GET /fast/{name}
    source: {service: img, path: "/photos/{name}"}
    auth: {jwt: "off"}
    image: {widths: [200, 480, 800, 1440], by_device: {phone: {width: 480, quality: 75}},
            effort: fast}
  - route: GET /slow/{name}
    source: {service: img, path: "/photos/{name}"}
    auth: {jwt: "off"}
    image: {timeout: 1ms}
  - route: GET /small/{name}
    source: {service: img, path: "/photos/{name}"}
    auth: {jwt: "off"}
    image: {effort: small, formats: [avif], default: {width: 1440}}
"""}
EXTRA = """
devices:
  user_agent:
    - {pattern: "iPhone", device: phone}
    - {pattern: "iPad", device: tablet}
"""


@pytest.fixture
async def setup(make_edge: Any, upstream: Any) -> tuple[Any, dict[str, int]]:
    SOURCES.update({
        "photo.jpg": jpeg(),
        "broken.jpg": jpeg()[:5000],
        "page.jpg": b"<html><body>not an image</body></html>",
        "bomb.png": bomb_png(),
    })
    SOURCES.update({"alpha.png": png_with_alpha(), "anim.gif": animated_gif(),
                    "rotated.jpg": rotated_jpeg()})
    tiff = io.BytesIO()
    Image.new("RGB", (64, 64)).save(tiff, "TIFF")
    SOURCES["scan.tif"] = tiff.getvalue()
    hits: dict[str, int] = {}
    url = await upstream(image_app(hits))
    edge = await make_edge(services_yaml({"img": url}, EXTRA), ROUTES, env={"IMG_KEY": KEY})
    return edge, hits


async def get(edge: Any, path: str, **headers: str) -> tuple[Any, Image.Image | None]:
    resp = await edge.get(path, headers=headers)
    body = await resp.read()
    if resp.status != 200:
        return resp, None
    return resp, Image.open(io.BytesIO(body))


@pytest.mark.parametrize("headers, width, fmt", [
    ({"User-Agent": "App iPhone", "Accept": "image/webp,*/*"}, 480, "WEBP"),
    ({"User-Agent": "App iPad", "Accept": "image/avif,image/webp"}, 800, "AVIF"),
    ({"User-Agent": "App iPhone", "Save-Data": "on"}, 200, "JPEG"),
    ({"Sec-CH-Viewport-Width": "400", "Sec-CH-DPR": "3", "Accept": "image/webp"}, 1440,
     "WEBP"),
    ({"Sec-CH-Width": "450"}, 480, "JPEG"),
    ({}, 800, "JPEG"),
])
async def test_sizes_and_formats_per_device(setup: Any, headers: dict[str, str], width: int,
                                            fmt: str) -> None:
    edge, _ = setup
    resp, img = await get(edge, "/img/photo.jpg", **headers)
    assert resp.status == 200, await resp.text()
    assert img is not None and img.format == fmt and img.width == width
    assert resp.headers["Accept-CH"] == ("Sec-CH-Width, Sec-CH-Viewport-Width, Sec-CH-DPR, "
                                         "ECT, Downlink, RTT")
    vary = resp.headers["Vary"].split(", ")
    assert "Accept" in vary
    for name in headers:
        if name != "Accept":
            assert name in vary, (name, vary)
    assert resp.headers["Cache-Control"].startswith("public, max-age=86400")
    assert resp.headers["ETag"].startswith('"')
    assert int(resp.headers["Content-Length"]) < len(SOURCES["photo.jpg"]) / 10


async def test_presets_and_signed_sizes(setup: Any) -> None:
    edge, _ = setup
    resp, img = await get(edge, "/img/photo.jpg?preset=thumb")
    assert img is not None and img.width == 200
    assert (await edge.get("/img/photo.jpg?preset=huge")).status == 400
    assert (await edge.get("/img/photo.jpg?w=300")).status == 403
    path = "/img/photo.jpg?w=300&h=300&fit=cover"
    signed = f"{path}&sig={sign(path, KEY.encode())}"
    resp, img = await get(edge, signed)
    assert img is not None and img.size == (300, 300)
    assert (await edge.get(signed.replace("w=300", "w=301"))).status == 403


async def test_hostile_and_broken_sources_are_rejected_cleanly(setup: Any) -> None:
    edge, _ = setup
    for name, status, reason in (("broken.jpg", 422, "corrupt"),
                                 ("page.jpg", 415, "unsupported-format"),
                                 ("bomb.png", 422, "too-many-pixels"),
                                 ("scan.tif", 415, "unsupported-format")):
        resp = await edge.get(f"/img/{name}")
        assert resp.status == status, (name, await resp.text())
        problem = await resp.json(content_type=None)
        assert problem["reason"] == reason, name
    assert (await edge.get("/img/missing.jpg")).status == 404
    # and the workers are still fine
    resp, img = await get(edge, "/img/photo.jpg?preset=thumb")
    assert img is not None


async def test_transformed_images_are_cached_and_validated(setup: Any) -> None:
    edge, hits = setup
    first = await edge.get("/img/photo.jpg", headers={"User-Agent": "iPhone"})
    second = await edge.get("/img/photo.jpg", headers={"User-Agent": "iPhone"})
    assert await first.read() == await second.read()
    assert second.headers["Cache-Status"].startswith("edge; hit")
    assert hits["photo.jpg"] == 1
    nm = await edge.get("/img/photo.jpg", headers={"User-Agent": "iPhone",
                                                   "If-None-Match": first.headers["ETag"]})
    assert nm.status == 304
    metrics = await (await edge.get("/metrics")).text()
    assert "edge_image_transform_seconds_count" in metrics


async def test_alpha_animation_and_orientation(setup: Any) -> None:
    edge, _ = setup
    resp, img = await get(edge, "/img/alpha.png?preset=thumb", Accept="image/webp")
    assert img is not None and img.format == "WEBP" and img.mode == "RGBA"
    assert img.getpixel((0, 0))[3] == 0  # still transparent
    resp, img = await get(edge, "/img/alpha.png?preset=thumb")
    assert img is not None and img.format == "JPEG"
    assert img.getpixel((0, 0)) == pytest.approx((255, 255, 255), abs=8)  # on white
    resp, img = await get(edge, "/img/anim.gif?preset=thumb", Accept="image/webp")
    assert img is not None and getattr(img, "n_frames", 1) == 1
    assert img.convert("RGB").getpixel((10, 10)) == pytest.approx((255, 0, 0), abs=12)
    resp, img = await get(edge, "/img/rotated.jpg?preset=thumb")
    assert img is not None and img.height > img.width  # upright
    assert not img.getexif()  # metadata stripped


async def test_sources_are_revalidated_not_refetched(setup: Any) -> None:
    edge, hits = setup
    await get(edge, "/img/photo.jpg?preset=thumb")
    await get(edge, "/img/photo.jpg", **{"User-Agent": "iPad"})  # another size: the source
    assert hits.get("304") == 1  # was asked for with its ETag, and was unchanged


async def test_refusals_are_counted_by_reason(setup: Any) -> None:
    edge, _ = setup
    await edge.get("/img/broken.jpg")
    metrics = await (await edge.get("/metrics")).text()
    assert 'edge_image_rejected_total{reason="corrupt",route="GET /img/{name}"} 1.0' in metrics


async def test_effort_fast_is_another_encoding_of_the_same_picture(setup: Any) -> None:
    edge, _ = setup
    phone = {"Accept": "image/webp", "User-Agent": "App iPhone"}
    balanced = await edge.get("/img/photo.jpg", headers=phone)
    fast = await edge.get("/fast/photo.jpg", headers=phone)
    assert balanced.status == fast.status == 200
    a, b = await balanced.read(), await fast.read()
    assert a != b and balanced.headers["ETag"] != fast.headers["ETag"]
    assert Image.open(io.BytesIO(a)).size == Image.open(io.BytesIO(b)).size == (480, 320)


async def test_a_transform_past_its_timeout_is_answered_and_its_worker_killed(
        setup: Any) -> None:
    edge, _ = setup
    assert (await edge.get("/img/photo.jpg")).status == 200  # a worker is up
    pool = edge.edge.state.images
    workers = pool.processes()
    assert workers and all(w.is_alive() for w in workers)
    resp = await edge.get("/slow/photo.jpg")
    assert resp.status == 422
    assert (await resp.json())["reason"] == "too-slow"
    for _ in range(100):  # the one that ran it is killed at once
        if any(not w.is_alive() for w in workers):
            break
        await asyncio.sleep(0.05)
    dead = [w for w in workers if not w.is_alive()]
    assert len(dead) == 1 and dead[0] not in pool.processes()
    # new work has a fresh worker, and the pool is no bigger than it was
    resp = await edge.get("/img/photo.jpg?preset=thumb")
    assert resp.status == 200
    assert len(pool.processes()) <= pool.workers


async def test_a_worker_that_dies_fails_only_its_own_transform(setup: Any) -> None:
    edge, _ = setup
    assert (await edge.get("/img/photo.jpg")).status == 200  # a worker is up
    pool = edge.edge.state.images
    (worker,) = pool.processes()
    # AVIF at its smallest takes about a second here: long enough to die in the middle
    slow = asyncio.ensure_future(edge.get("/small/photo.jpg", headers={"Accept": "image/avif"}))
    for _ in range(200):
        if pool.pending:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    worker.kill()  # as the kernel's OOM killer would
    resp = await slow
    assert resp.status == 422 and (await resp.json())["reason"] == "worker-died"
    assert (await edge.get("/img/photo.jpg?preset=thumb")).status == 200
    assert worker not in pool.processes()


async def test_work_sharing_a_pool_with_an_overrun_still_finishes(setup: Any) -> None:
    """The retired pool is stopped when the rest of its work is due, not at once."""
    edge, _ = setup
    assert (await edge.get("/img/photo.jpg")).status == 200  # the pool is up
    slow, other = await asyncio.gather(
        edge.get("/slow/photo.jpg"),
        edge.get("/img/photo.jpg?preset=thumb", headers={"Accept": "image/webp"}))
    assert slow.status == 422
    assert other.status == 200, await other.text()


def test_image_policy_offers_exactly_what_images_accepts() -> None:
    """edge/config.py spells the image knobs' values out (so loading config doesn't import
    Pillow); they must stay the images package's own."""
    from typing import get_args

    from edge.config import ImagePolicy
    from images.formats import OUTPUT_FORMATS, SOURCE_FORMATS
    from images.transform import CROPS, EFFORTS, FITS

    def values(name: str) -> set[str]:
        annotation = ImagePolicy.model_fields[name].annotation
        while get_args(annotation) and not isinstance(get_args(annotation)[0], str):
            annotation = get_args(annotation)[0]  # list[Literal[...]] / dict[Literal, int]
        return set(get_args(annotation))

    assert values("fit") == FITS
    assert values("crop") == CROPS
    assert values("effort") == EFFORTS
    assert values("formats") == OUTPUT_FORMATS
    assert values("sources") == SOURCE_FORMATS
    assert values("quality") == OUTPUT_FORMATS - {"png"}  # lossless
