"""Image families: a source is fetched and decoded once (its master, kept in sealed memory
files the workers share), and every further size and format of it is a resize and an
encode. Unit tests of images.decode_master/render, then over real HTTP: the upstream's
fetches and 304s, the master metrics, the bound, shared fetches and decodes, changed
sources, and sizes the master is too small for."""

from __future__ import annotations

import asyncio
import io
import math
import re
from typing import Any

import pytest
from aiohttp import web
from PIL import Image, ImageChops, ImageStat

from images import Limits, Spec, decode_master, render, sign, transform

from .conftest import catch_all, services_yaml

KEY = "image-signing-key-" + "k" * 20
LIMITS = Limits()


def photo(width: int = 3000, height: int = 2000, colour: tuple[int, int, int] = (200, 120, 40),
          fmt: str = "JPEG", mode: str = "RGB", exif: Image.Exif | None = None) -> bytes:
    img = Image.new(mode, (width, height), colour if mode == "RGB" else (*colour, 255))
    for x in range(0, width, 60):
        img.paste((x % 255, 80, 160) + (() if mode == "RGB" else (128,)),
                  (x, 0, x + 30, height))
    out = io.BytesIO()
    img.save(out, fmt, **({"quality": 85} if fmt == "JPEG" else {}),
             **({"exif": exif.tobytes()} if exif is not None else {}))
    return out.getvalue()


def psnr(a: Image.Image, b: Image.Image) -> float:
    diff = ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB")))
    mse = sum(diff.sum2) / (3 * a.width * a.height)
    return 99.0 if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    return photo(1200, 800, exif=exif)


# ------------------------------------------------------------------------ images package


@pytest.mark.parametrize("source, width, specs", [
    (photo(), 1200, [Spec(width=200, format="webp"), Spec(width=400),
                     Spec(width=1200, format="webp"), Spec(width=300, height=300, fit="cover"),
                     Spec(width=300, height=200, fit="cover", crop="entropy"),
                     Spec(height=150, format="png")]),
    (rotated(), 480, [Spec(width=200), Spec(width=480, format="webp")]),
    (photo(1200, 800, fmt="PNG", mode="RGBA"), 480,
     [Spec(width=200, format="webp"), Spec(width=480, format="jpeg")]),
])
def test_outputs_from_a_master_are_the_outputs_from_the_source(
        source: bytes, width: int, specs: list[Spec]) -> None:
    pixels, master = decode_master(source, LIMITS, width)
    assert master.size[0] >= min(width, master.upright[0])
    assert len(pixels.tobytes()) == master.nbytes
    for spec in specs:
        direct = transform(source, spec, LIMITS)
        made = render(pixels, master, spec, LIMITS)
        assert made is not None, spec
        assert (made.width, made.height, made.format) == (direct.width, direct.height,
                                                          direct.format), spec
        a, b = (Image.open(io.BytesIO(r.body)) for r in (direct, made))
        assert a.mode == b.mode, spec
        assert psnr(a, b) > 30, spec  # the same picture (a box-reduced master vs a draft)
        assert abs(len(made.body) - len(direct.body)) <= 0.05 * len(direct.body) + 200, spec


def test_a_master_is_as_small_as_its_widest_output_allows() -> None:
    pixels, master = decode_master(photo(), LIMITS, 400)
    assert master.upright == (3000, 2000)
    assert master.size == (750, 500)  # libjpeg's 1/4 draft: the smallest still >= 400 wide
    assert pixels.mode == master.mode == "RGB"
    _, png = decode_master(photo(1600, 1200, fmt="PNG"), LIMITS, 300)
    assert png.size == (400, 300)  # box-reduced by 4, no further


def test_a_master_too_small_for_a_spec_says_so() -> None:
    pixels, master = decode_master(photo(), LIMITS, 400)
    assert render(pixels, master, Spec(width=1000), LIMITS) is None
    assert render(pixels, master, Spec(width=1000, height=100, fit="cover"), LIMITS) is None
    assert render(pixels, master, Spec(width=700), LIMITS) is not None  # 750 is enough


# ---------------------------------------------------------------------------- over HTTP


SOURCES: dict[str, bytes] = {}
ETAGS: dict[str, str] = {}


def image_app(hits: dict[str, int], delay: float = 0.0) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        name = request.path.rsplit("/", 1)[1]
        if name.startswith("slow"):
            await asyncio.sleep(delay)
        if name not in SOURCES:
            return web.json_response({"error": "no such image"}, status=404)
        tenant = request.headers.get("X-Tenant", "")
        hits[tenant + name] = hits.get(tenant + name, 0) + 1
        etag = ETAGS.get(name)
        if etag is None:  # no validators: nothing can be kept of it
            return web.Response(body=SOURCES[name], content_type="image/jpeg")
        if request.headers.get("If-None-Match") == etag:
            hits["304"] = hits.get("304", 0) + 1
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=SOURCES[name], content_type="image/jpeg",
                            headers={"ETag": etag})
    return catch_all(handler)


ROUTES = {"r.yaml": """
routes:
  - route: GET /img/{name}
    source: {service: img, path: "/photos/{name}"}
    auth: {jwt: "off"}
    image:
      widths: [200, 400, 800, 1200]
      presets: {w200: {width: 200}, w400: {width: 400}, w800: {width: 800},
                w1200: {width: 1200}}
      formats: [webp, jpeg]
      signing_keys_env: [IMG_KEY]
"""}
FAMILY = [(f"w{w}", accept) for w in (200, 400, 800, 1200)
          for accept in ("image/webp", "image/jpeg")]


@pytest.fixture
def sources() -> None:
    SOURCES.clear()
    ETAGS.clear()
    SOURCES["photo.jpg"] = photo()
    ETAGS["photo.jpg"] = '"v1"'


async def edge_with(make_edge: Any, upstream: Any, hits: dict[str, int], extra: str = "",
                    delay: float = 0.0) -> Any:
    url = await upstream(image_app(hits, delay))
    return await make_edge(services_yaml({"img": url}, extra), ROUTES, env={"IMG_KEY": KEY})


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def family(edge: Any, name: str) -> dict[tuple[str, str], bytes]:
    out = {}
    for preset, accept in FAMILY:
        resp = await edge.get(f"/img/{name}?preset={preset}", headers={"Accept": accept})
        assert resp.status == 200, await resp.text()
        out[(preset, accept)] = await resp.read()
    return out


async def test_a_family_fetches_and_decodes_its_source_once(
        sources: None, make_edge: Any, upstream: Any) -> None:
    hits: dict[str, int] = {}
    edge = await edge_with(make_edge, upstream, hits)
    made = await family(edge, "photo.jpg")
    assert hits["photo.jpg"] == 8 and hits["304"] == 7  # one 200, then confirmations
    text = await (await edge.get("/metrics")).text()
    # the first output is made from the source as it would be without masters; the
    # second makes the master (a photo asked for once never costs one)
    assert metric(text, 'edge_image_master_lookups_total{result="hit"}') == 6
    assert metric(text, 'edge_image_master_lookups_total{result="miss"}') == 2
    assert metric(text, "edge_image_masters") == 1
    assert metric(text, "edge_image_masters_bytes") == 1500 * 1000 * 3
    assert metric(text, "edge_image_masters_max_bytes") == 128 * 1024 * 1024
    # the same pictures an edge that keeps nothing makes
    plain = await edge_with(make_edge, upstream, {}, "images: {masters: 0}")
    for (preset, accept), body in (await family(plain, "photo.jpg")).items():
        a, b = Image.open(io.BytesIO(body)), Image.open(io.BytesIO(made[(preset, accept)]))
        assert (a.size, a.format) == (b.size, b.format)
        assert psnr(a, b) > 30
    text = await (await plain.get("/metrics")).text()
    assert metric(text, 'edge_image_master_lookups_total{result="miss"}') == 0


async def test_a_changed_source_is_never_made_from_its_old_master(
        sources: None, make_edge: Any, upstream: Any) -> None:
    def solid(colour: tuple[int, int, int]) -> bytes:
        out = io.BytesIO()
        Image.new("RGB", (1600, 1200), colour).save(out, "JPEG")
        return out.getvalue()

    SOURCES["photo.jpg"] = solid((220, 30, 30))
    edge = await edge_with(make_edge, upstream, {})
    await edge.get("/img/photo.jpg?preset=w800")
    resp = await edge.get("/img/photo.jpg?preset=w200")  # made from its master
    red = Image.open(io.BytesIO(await resp.read())).convert("RGB")
    assert red.getpixel((100, 75)) == pytest.approx((220, 30, 30), abs=12)
    SOURCES["photo.jpg"] = solid((30, 200, 30))
    ETAGS["photo.jpg"] = '"v2"'
    await edge.get("/img/photo.jpg?preset=w400")  # (w800 and w200 are in the result cache)
    resp = await edge.get("/img/photo.jpg?preset=w1200")  # from the new master
    green = Image.open(io.BytesIO(await resp.read())).convert("RGB")
    assert green.getpixel((600, 450)) == pytest.approx((30, 200, 30), abs=12)
    text = await (await edge.get("/metrics")).text()
    assert metric(text, "edge_image_masters") == 1  # the old one is gone
    assert metric(text, 'edge_image_master_lookups_total{result="miss"}') == 4


async def test_the_bound_holds_and_evictions_are_counted(
        sources: None, make_edge: Any, upstream: Any) -> None:
    for n in range(8):  # 800x600 asked for at most 1200 wide: full size, 1.44 MB each
        SOURCES[f"p{n}.jpg"] = photo(800, 600)
        ETAGS[f"p{n}.jpg"] = f'"p{n}"'
    edge = await edge_with(make_edge, upstream, {}, "images: {masters: 6MB}")
    for n in range(8):  # a second size makes a master
        for preset in ("w200", "w400"):
            assert (await edge.get(f"/img/p{n}.jpg?preset={preset}")).status == 200
    pool = edge.edge.state.images
    assert pool.masters.bytes <= 6_000_000 and len(pool.masters) == 4
    text = await (await edge.get("/metrics")).text()
    assert metric(text, "edge_image_master_evictions_total") == 4
    assert metric(text, "edge_image_masters_bytes") == pool.masters.bytes
    assert metric(text, "edge_image_masters_max_bytes") == 6_000_000
    # the most recently used are the ones kept
    assert (await edge.get("/img/p7.jpg?preset=w800")).status == 200
    text = await (await edge.get("/metrics")).text()
    assert metric(text, 'edge_image_master_lookups_total{result="hit"}') == 1


async def test_concurrent_variants_share_one_fetch_and_one_decode(
        sources: None, make_edge: Any, upstream: Any) -> None:
    SOURCES["slow.jpg"] = photo()
    ETAGS["slow.jpg"] = '"s1"'
    hits: dict[str, int] = {}
    edge = await edge_with(make_edge, upstream, hits, delay=0.3)
    answers = await asyncio.gather(*(
        edge.get(f"/img/slow.jpg?preset={preset}", headers={"Accept": accept})
        for preset, accept in FAMILY))
    assert [a.status for a in answers] == [200] * 8
    sizes = {Image.open(io.BytesIO(await a.read())).width for a in answers}
    assert sizes == {200, 400, 800, 1200}
    assert hits["slow.jpg"] == 1  # one fetch for all eight
    text = await (await edge.get("/metrics")).text()
    # one decode: asked for together, the first output makes the master at once
    assert metric(text, 'edge_image_master_lookups_total{result="miss"}') == 1
    assert metric(text, 'edge_image_master_lookups_total{result="hit"}') == 7


async def test_only_identical_upstream_requests_share_a_fetch(
        sources: None, make_edge: Any, upstream: Any) -> None:
    SOURCES["slow.jpg"] = photo(600, 400)
    hits: dict[str, int] = {}
    edge = await edge_with(make_edge, upstream, hits, delay=0.3)
    answers = await asyncio.gather(*(
        edge.get(f"/img/slow.jpg?preset={preset}", headers={"X-Tenant": tenant})
        for preset, tenant in (("w200", "a"), ("w400", "b"), ("w800", "a"), ("w1200", "b"))))
    assert [a.status for a in answers] == [200] * 4
    assert hits["aslow.jpg"] == 1 and hits["bslow.jpg"] == 1


async def test_sizes_beyond_the_master_and_sources_without_validators_still_work(
        sources: None, make_edge: Any, upstream: Any) -> None:
    hits: dict[str, int] = {}
    edge = await edge_with(make_edge, upstream, hits)
    for preset in ("w200", "w400"):  # a master, 1500 px wide
        assert (await edge.get(f"/img/photo.jpg?preset={preset}")).status == 200
    path = "/img/photo.jpg?w=2400"
    resp = await edge.get(f"{path}&sig={sign(path, KEY.encode())}")
    assert resp.status == 200, await resp.text()
    assert Image.open(io.BytesIO(await resp.read())).width == 2400
    SOURCES["plain.jpg"] = photo(900, 600)  # no ETag, no Last-Modified
    for preset in ("w200", "w400"):
        resp = await edge.get(f"/img/plain.jpg?preset={preset}")
        assert resp.status == 200
    assert hits["plain.jpg"] == 2
    assert len(edge.edge.state.images.masters) == 1  # only photo.jpg's


async def test_a_photo_asked_for_once_makes_no_master(
        sources: None, make_edge: Any, upstream: Any) -> None:
    edge = await edge_with(make_edge, upstream, {})
    for n in range(3):
        SOURCES[f"once{n}.jpg"] = photo(900, 600)
        ETAGS[f"once{n}.jpg"] = f'"o{n}"'
        assert (await edge.get(f"/img/once{n}.jpg?preset=w400")).status == 200
    assert len(edge.edge.state.images.masters) == 0
