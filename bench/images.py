"""Image transforms per second: the edge's image route against thumbor, same source, same box.

    .venv/bin/python bench/images.py [--rounds 3] [--duration 10] [--connections 8]
                                     [--thumbor-venv /tmp/thumbor-venv] [--no-thumbor]
                                     [--thumbor-mode reuseport|processes|threads]
                                     [--quick] [--json]

Source: a 3000x2000 photo-like JPEG (quality 85) made here with Pillow, from a fixed seed:
smooth colour fields, a sky gradient, soft-edged shapes, mid-scale texture and fine grain, so
the decoder and encoders do real work. bench/_images_upstream.py serves it for every
GET /photos/{name}, so each distinct name is a new source to every server, with validators
as a real image store sends them (a strong ETag from the name and the bytes, Last-Modified;
a matching If-None-Match gets a 304): the edge revalidates a source it holds with a
conditional GET, and thumbor's HTTP loader fetches whole. It counts its 200s and 304s, in
all and per name.

Two workloads, each target in its own process(es) on 127.0.0.1:

Single variant, cold: every request names a new photo (a Lua counter in the path), so every
answer is a cache miss and one transform of the one variant:

    edge     `edge serve` on a temp config (access log off), route
             GET /img/{name} -> /photos/{name} with image: {widths: [400, 800],
             presets: {bench: {width: 400, quality: 75}}}; wrk asks
             /img/<run>-<n>.jpg?preset=bench with Accept: image/webp -> 400 px WebP.
             Its transforms run in its pool of worker processes (one per CPU).
    edge-fast  the same edge, route GET /fast/{name}: the same image policy with
             `effort: fast` (bicubic resize, WebP method 1; the default `balanced` is
             Lanczos and method 4, as thumbor).
    thumbor  thumbor from PyPI in its own venv (installed there on first use unless
             --no-thumbor), unsafe URLs, the HTTP loader onto the same upstream, no storage,
             no result storage; one single-process instance per CPU, each on its own
             SO_REUSEPORT listening socket on one port (--fd), so the kernel spreads the
             connections (--thumbor-mode processes: `--processes N` on a shared socket;
             threads: one process with ENGINE_THREADPOOL_SIZE N). wrk asks
             /unsafe/400x0/filters:format(webp):quality(Q)/http://<upstream>/photos/<run>-<n>.jpg
             with Q = the WebP quality the edge's route uses for that preset.

Family: a device-aware app asks for each photo in several variants. Blocks of 40 new
sources (<run>-b<block>-s<0..39>.jpg), each asked once for each of 8 variants: widths 200
(watch), 400 (phone), 800 (phone 2x, tablet), 1200 (tablet 2x, desktop) x WebP
(Accept: image/webp) and JPEG (Accept: image/jpeg). A block's 320 requests go in an order
the wrk script shuffles (MINSTD from a fixed seed: the same sequence for every run and
target); then the next block, 40 new names. No (source, variant) is asked twice, so every
answer is a transform; what a server can reuse is the source: its bytes, by revalidating
(the 304s per source), or more.

    edge family    the same edge, route GET /fam/{name} -> /photos/{name} with image:
                   {widths: [200, 400, 800, 1200], formats: [webp, jpeg], presets w200..w1200
                   (width, quality 75)}, default effort (balanced); wrk asks
                   /fam/<name>?preset=w<width> with the Accept header.
    thumbor family the same thumbor, /unsafe/<width>x0/filters:format(webp|jpeg):quality(Q)/
                   http://<upstream>/photos/<name>, Q = the quality the edge's own code
                   (ImageRoute.spec) picks for that preset and format: 75 for JPEG, 71 for
                   WebP (the preset's JPEG quality, scaled).

wrk: -t1, `--connections` 8, --timeout 30s, `--duration` per run. Rounds rotate the order
of the targets; medians are reported, ratios are medians of same-round ratios. For
reference, `images.transform` of the same JPEG with the route's Spec, in this process,
and the JPEG decode alone (reduced by draft() as the transform does): the part of every
transform that no setting changes. Before the load one answer per target (and one source's
8 variants per family target) is checked for format and size, and their bytes compared.

Goals (issue): edge transforms/s >= 2x thumbor's, single variant and family (SKIPPED
without thumbor); the edge's 400 px WebP within 2% of thumbor's bytes for the same request,
and <= 10% of the source's bytes.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import random
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import PIL
from PIL import Image, ImageChops, ImageDraw, ImageFilter, features

# This file is bench/images.py: while bench/ is on sys.path (it is sys.path[0] when a bench
# script runs) `import images` would find it instead of the project's images package. So
# the package is imported with bench/ off the path; and should a bench script import
# edge.imaging and so this file as `images`, the package takes its place in sys.modules
# (the import system hands out what sys.modules holds once this file has run).
HERE = Path(__file__).resolve().parent
_PATH = sys.path[:]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
if __name__ == "images":
    del sys.modules["images"]
from images import Limits, Spec, transform  # noqa: E402

sys.path[:] = _PATH
from _common import CLK_TCK, EDGE_BIN, preflight, proc_stat, settle_rounds  # noqa: E402
from proxy import (  # noqa: E402
    fmt_row,
    free_port,
    parse_wrk,
    rotated,
    stop,
    wait_ready,
    write_config,
)

if TYPE_CHECKING:
    from edge.imaging import ImageRoute

ROOT = Path(__file__).resolve().parent.parent
SOURCE_SIZE = (3000, 2000)
SOURCE_QUALITY = 85
PRESET_WIDTH = 400
PRESET_QUALITY = 75
ACCEPT = "image/webp"
PILLOW_RUNS = 10
TARGET_VS_THUMBOR = 2.0
TARGET_OUTPUT_SHARE = 0.10
IMG_KEY = "bench-image-signing-key-" + "k" * 24
WRK_TIMEOUT = "30s"
SETTLE_S = 1.0
# The family workload: each source asked for every width x format, as a device-aware app
# does: a watch, a phone, a phone at 2x or a tablet, a tablet at 2x or a desktop.
FAMILY_WIDTHS = (200, 400, 800, 1200)
FAMILY_FORMATS = ("webp", "jpeg")  # asked with Accept: image/<format>
FAMILY_SOURCES = 40  # per block: 40 x 8 = 320 requests, shuffled, then 40 new names
FAMILY_SEED = 20_240_601  # the shuffles' seed (MINSTD in the wrk script: reproducible)
FAMILY_VARIANTS = tuple((w, f) for w in FAMILY_WIDTHS for f in FAMILY_FORMATS)
TARGET_FAMILY_VS_THUMBOR = 2.0
TARGET_BYTES_VS_THUMBOR = 0.02  # the same request's answer within 2% of thumbor's bytes


# ------------------------------------------------------------------------------ source


def _noise(rng: random.Random, size: tuple[int, int], mode: str) -> Image.Image:
    return Image.frombytes(mode, size, rng.randbytes(size[0] * size[1] * len(mode)))


def _signed(layer: Image.Image, amount: float) -> Image.Image:
    """An L layer as a +/- offset around 128, scaled, for ImageChops.add(..., offset=-128)."""
    return Image.merge("RGB", [layer.point(lambda v: 128 + (v - 128) * amount)] * 3)


def photo_like(size: tuple[int, int] = SOURCE_SIZE, seed: int = 8) -> Image.Image:
    """Deterministic, photo-like: smooth colour fields and a sky gradient, soft-edged
    objects, mid-scale texture and sensor-like grain, so JPEG and WebP have work to do."""
    w, h = size
    rng = random.Random(seed)
    field_ = _noise(rng, (6, 4), "RGB").resize(size, Image.Resampling.BICUBIC)
    grad = Image.linear_gradient("L").resize(size)
    sky = Image.merge("RGB", [grad.point(lambda v: 90 + v * 0.4),
                              grad.point(lambda v: 140 + v * 0.3),
                              grad.point(lambda v: 230 - v * 0.5)])
    img = Image.blend(field_, sky, 0.45)
    shapes = img.copy()
    draw = ImageDraw.Draw(shapes)
    for _ in range(60):
        x, y = rng.randrange(w), rng.randrange(h // 3, h)
        rx, ry = rng.randrange(40, 500), rng.randrange(30, 300)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        if rng.random() < 0.5:
            draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=colour)
        else:
            draw.polygon([(x + rng.randrange(-rx, rx), y + rng.randrange(-ry, ry))
                          for _ in range(5)], fill=colour)
    img = Image.blend(img, shapes.filter(ImageFilter.GaussianBlur(1.5)), 0.8)
    texture = _noise(rng, (w // 6, h // 6), "L").resize(size, Image.Resampling.BICUBIC)
    img = ImageChops.add(img, _signed(texture, 0.35), offset=-128)
    grain = _noise(rng, size, "L").filter(ImageFilter.GaussianBlur(0.6))
    return ImageChops.add(img, _signed(grain, 0.45), offset=-128)


def make_source(path: Path) -> bytes:
    out = io.BytesIO()
    photo_like().save(out, "JPEG", quality=SOURCE_QUALITY)
    path.write_bytes(out.getvalue())
    return out.getvalue()


# ------------------------------------------------------------------------------ configs


def _image_route(prefix: str, extra: str) -> str:
    """GET /<prefix>/{name} → the upstream's photo, with the bench preset and `extra`."""
    return (f"  - route: GET /{prefix}/{{name}}\n"
            '    source: {service: img, path: "/photos/{name}"}\n'
            '    auth: {jwt: "off"}\n'
            "    image:\n"
            f"      widths: [{PRESET_WIDTH}, 800]\n"
            f"      presets: {{bench: {{width: {PRESET_WIDTH}, quality: {PRESET_QUALITY}}}}}\n"
            f"      {extra}\n")


def _family_route() -> str:
    """GET /fam/{name} → the upstream's photo: the family's widths and formats, a preset
    per width (quality 75, a JPEG quality the edge scales for WebP), default effort."""
    presets = ", ".join(f"w{w}: {{width: {w}, quality: {PRESET_QUALITY}}}"
                        for w in FAMILY_WIDTHS)
    return ("  - route: GET /fam/{name}\n"
            '    source: {service: img, path: "/photos/{name}"}\n'
            '    auth: {jwt: "off"}\n'
            "    image:\n"
            f"      widths: [{', '.join(map(str, FAMILY_WIDTHS))}]\n"
            f"      formats: [{', '.join(FAMILY_FORMATS)}]\n"
            f"      presets: {{{presets}}}\n")


ROUTES_YAML = ("routes:\n" + _image_route("img", "signing_keys_env: [IMG_KEY]")
               + _image_route("fast", "effort: fast") + _family_route())


# Decoded sources the edge keeps (a master is 1500x1000 RGB, 4.5 MB, for the family's
# widest 1200 px): room for a block's 40 sources, above the 128 MiB default.
EDGE_YAML = "images: {masters: 256MiB}\n"


def edge_config(root: Path, upstream: str) -> Path:
    return write_config(root, {"img": upstream}, ROUTES_YAML, extra=EDGE_YAML)


def route_specs(root: Path) -> tuple[Spec, ImageRoute, dict[tuple[int, str], Spec]]:
    """The Specs the edge makes for wrk's requests, by the edge's own code on the same
    config: the single run's, its route, and the family's per (width, format)."""
    from edge.config import load_config
    from edge.context import DeviceClassifier
    from edge.imaging import ImageRoute

    env = {"IMG_KEY": IMG_KEY}
    config = load_config(root, env)
    classify = DeviceClassifier(config.edge.devices).profile

    def route(line: str) -> ImageRoute:
        policy = next(r.model.image for r in config.routes if r.model.route == line)
        assert policy is not None
        return ImageRoute.build(policy, env)

    def spec(r: ImageRoute, path: str, preset: str, accept: str) -> Spec:
        headers = {"Accept": accept, "Host": "127.0.0.1"}
        return r.spec(f"{path}?preset={preset}", {"preset": preset}, headers, classify(headers))

    single = route("GET /img/{name}")
    fam = route("GET /fam/{name}")
    family = {(w, f): spec(fam, "/fam/p1.jpg", f"w{w}", f"image/{f}")
              for w, f in FAMILY_VARIANTS}
    for (w, f), s in family.items():
        if (s.width, s.format) != (w, f):
            raise RuntimeError(f"edge: /fam/?preset=w{w} with Accept: image/{f} makes {s}")
    return spec(single, "/img/p1.jpg", "bench", ACCEPT), single, family


def thumbor_conf(path: Path, mode: str, workers: int) -> Path:
    lines = [
        "ALLOW_UNSAFE_URL = True",
        "LOADER = 'thumbor.loaders.http_loader'",
        "STORAGE = 'thumbor.storages.no_storage'",  # no copy of each source on disk
        "RESULT_STORAGE = None",  # no result storage: every request transforms
        "NON_BLOCKING_SOCKETS = True",  # the --fd sockets
    ]
    if mode == "threads":
        lines.append(f"ENGINE_THREADPOOL_SIZE = {workers}")
    path.write_text("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------------------ thumbor


def find_thumbor(venv: Path, install: bool) -> tuple[Path | None, str]:
    """thumbor's executable in `venv` (installed there with pip if missing and allowed),
    or None and why not."""
    exe, python = venv / "bin" / "thumbor", venv / "bin" / "python"
    if not exe.exists():
        if not install:
            return None, f"{exe} not found (--no-thumbor-install)"
        print(f"installing thumbor into {venv} (once; pip install thumbor)...",
              file=sys.stderr, flush=True)
        base = shutil.which("python3") or sys.executable
        for cmd in ([base, "-m", "venv", str(venv)],
                    [str(venv / "bin" / "pip"), "install", "--quiet", "thumbor"]):
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                                      check=False)
            except (OSError, subprocess.TimeoutExpired) as e:
                return None, f"`{' '.join(cmd)}` failed: {e}"
            if proc.returncode != 0:
                tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-4:])
                return None, f"`{' '.join(cmd)}` exited {proc.returncode}: {tail}"
    proc = subprocess.run([str(python), "-c", "import thumbor, PIL; "
                           "print(thumbor.__version__, PIL.__version__)"],
                          capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        return None, f"thumbor in {venv} does not import: {tail}"
    version, pil = proc.stdout.split()
    return exe, f"thumbor {version} (Pillow {pil}) from {venv}"


def reuseport_sockets(count: int) -> list[socket.socket]:
    """`count` listening sockets on one free port, SO_REUSEPORT: the kernel hashes each new
    connection to one of them."""
    socks: list[socket.socket] = []
    port = 0
    try:
        for _ in range(count):
            s = socket.socket()
            socks.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(("127.0.0.1", port))
            port = s.getsockname()[1]
            s.listen(1024)
            s.setblocking(False)
    except OSError:
        for s in socks:
            s.close()
        raise
    return socks


# ---------------------------------------------------------------------------- processes


_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # ignore *_proxy env


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    with _HTTP.open(req, timeout=30) as r:
        return r.status, dict(r.headers.items()), r.read()


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := proc_stat(int(entry))) is not None and int(st[2]) == pgid:
            pids.append(int(entry))
    return pids


def cpu_seconds(pgids: Sequence[int]) -> tuple[float, float]:
    """User + system CPU of every live process in these process groups, and of their
    leaders alone."""
    total = lead = 0
    for pgid in pgids:
        for pid in group_pids(pgid):
            if (st := proc_stat(pid)) is not None:
                total += int(st[11]) + int(st[12])
                lead += (int(st[11]) + int(st[12])) if pid == pgid else 0
    return total / CLK_TCK, lead / CLK_TCK


@dataclass(slots=True)
class Group:
    """Processes started by this bench, each the leader of its own process group."""

    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def pgids(self) -> list[int]:
        return [p.pid for p in self.procs]


@contextmanager
def spawn(group: Group, cmd: Sequence[str], log: Path, *, env: dict[str, str] | None = None,
          pass_fds: Sequence[int] = ()) -> Iterator[subprocess.Popen[bytes]]:
    """One server process in a new session (so Ctrl-C reaches only us); on the way out it
    gets SIGTERM, then its whole process group (workers it forked) SIGTERM, then SIGKILL."""
    with log.open("ab") as err:
        proc = subprocess.Popen(list(cmd), cwd=ROOT, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err, env=env,
                                pass_fds=tuple(pass_fds), start_new_session=True)
    group.procs.append(proc)
    try:
        yield proc
    finally:
        stop_group(proc)


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    stop(proc)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not group_pids(proc.pid):
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 3
        while group_pids(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)


def ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    try:
        wait_ready(proc, url, timeout=30)
    except RuntimeError:
        sys.stderr.write(log.read_text(errors="replace")[-3000:])
        raise


# --------------------------------------------------------------------------------- load


@dataclass(frozen=True, slots=True)
class Target:
    key: str
    label: str
    base: str  # scheme://host:port
    path: tuple[str, str]  # the single run's request path: before and after the counter
    group: Group
    # the family workload's variants instead: per (width, format), the path before and
    # after the source's name, and the Accept header
    family: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    answers: int  # completed requests
    fetches: int  # source fetches (200s) the upstream served meanwhile
    not_modified: int  # and 304s
    cpu_s: float  # the target's processes, user + system
    cpu_lead_s: float  # of which the processes we started (not the workers they forked)
    # the family workload's sources (every source of the blocks wrk finished asking for, or
    # when it finished none, every source it asked for): the blocks it finished, how many
    # sources, the requests asked for them, and the upstream's 200s and 304s for them
    blocks: int = 0
    sources: int = 0
    asked: int = 0
    src_200: int = 0
    src_304: int = 0


@dataclass(slots=True)
class Series:
    runs: list[Run] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return float(statistics.median(getattr(r, attr) for r in self.runs))

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.runs)

    @property
    def cpu_ms(self) -> float:
        """Median over runs of the target's CPU per answer."""
        return float(statistics.median(r.cpu_s * 1000 / max(1, r.answers) for r in self.runs))

    @property
    def cpu_lead_ms(self) -> float:
        return float(statistics.median(r.cpu_lead_s * 1000 / max(1, r.answers)
                                       for r in self.runs))

    @property
    def fetch_ratio(self) -> float:
        return sum(r.fetches for r in self.runs) / max(1, sum(r.answers for r in self.runs))

    @property
    def whole_blocks(self) -> int:
        """The family workload: how many runs finished asking for at least one block."""
        return sum(r.blocks > 0 for r in self.runs)

    def per_source(self, attr: str) -> float:
        """The family workload: `asked`, `src_200` or `src_304` per source, over the runs
        that finished a block (over all runs when none did)."""
        whole = [r for r in self.runs if r.blocks > 0] or self.runs
        return float(sum(getattr(r, attr) for r in whole)
                     / max(1, sum(r.sources for r in whole)))


def _draft_scale(out_size: tuple[int, int]) -> int:
    """The 1/2^n scale draft() picks: the smallest still at least the output width."""
    scale = 1
    while scale < 8 and SOURCE_SIZE[0] // (scale * 2) >= out_size[0]:
        scale *= 2
    return scale


def _lua(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def counter_script(path: Path, before: str, after: str) -> Path:
    """A wrk script asking before<n>after, n = 1, 2, 3...: a new name every request."""
    path.write_text(
        "local n = 0\n"
        f"local headers = {{[\"Accept\"] = {_lua(ACCEPT)}}}\n"
        "request = function()\n"
        "  n = n + 1\n"
        f"  return wrk.format(\"GET\", {_lua(before)} .. n .. {_lua(after)}, headers)\n"
        "end\n")
    return path


def family_script(path: Path, tag: str, variants: Sequence[tuple[str, str, str]]) -> Path:
    """A wrk script (one thread) for the family workload: blocks of FAMILY_SOURCES new
    names (<tag>-b<block>-s<source>.jpg), each asked for every variant once, the block's
    requests in an order shuffled by MINSTD (Park-Miller; exact in LuaJIT's doubles) from
    FAMILY_SEED, so every run and every target gets the same sequence. done() prints how
    many requests were asked for, the blocks begun and the sources of the last block begun
    that were asked for."""
    rows = "".join(f"  {{{_lua(b)}, {_lua(a)}, {{[\"Accept\"] = {_lua(acc)}}}}},\n"
                   for b, a, acc in variants)
    path.write_text(
        f"local variants = {{\n{rows}}}\n"
        f"local nv, nsrc, tag = #variants, {FAMILY_SOURCES}, {_lua(tag)}\n"
        "local size = nv * nsrc\n"
        f"local state = {FAMILY_SEED}\n"
        "local function rand(n)  -- 0 .. n-1\n"
        "  state = (state * 48271) % 2147483647\n"
        "  return state % n\n"
        "end\n"
        "local order, seen, pos = {}, {}, size\n"
        "asked, block, touched = 0, 0, 0  -- globals: done() reads them with thread:get\n"
        "request = function()\n"
        "  if pos == size then  -- the next block: new names, a new order\n"
        "    block, pos, touched, seen = block + 1, 0, 0, {}\n"
        "    for i = 1, size do order[i] = i - 1 end\n"
        "    for i = size, 2, -1 do\n"
        "      local j = rand(i) + 1\n"
        "      order[i], order[j] = order[j], order[i]\n"
        "    end\n"
        "  end\n"
        "  pos, asked = pos + 1, asked + 1\n"
        "  local k = order[pos]\n"
        "  local src, v = math.floor(k / nv), variants[k % nv + 1]\n"
        "  if not seen[src] then seen[src], touched = true, touched + 1 end\n"
        "  local name = tag .. \"-b\" .. block .. \"-s\" .. src .. \".jpg\"\n"
        "  return wrk.format(\"GET\", v[1] .. name .. v[2], v[3])\n"
        "end\n"
        "local threads = {}\n"
        "function setup(thread) table.insert(threads, thread) end\n"
        "function done(summary, latency, requests)\n"
        "  for _, t in ipairs(threads) do\n"
        "    io.write(string.format(\"family: asked %d blocks %d touched %d\\n\",\n"
        "                           t:get(\"asked\"), t:get(\"block\"), t:get(\"touched\")))\n"
        "  end\n"
        "end\n")
    return path


def upstream_count(upstream: str, prefix: str = "") -> dict[str, Any]:
    """The upstream's {"200": n, "304": n} since it started; with `prefix`, also "names":
    {name: [200s, 304s]} for the names asked for that start with it."""
    query = f"?prefix={urllib.parse.quote(prefix)}" if prefix else ""
    counts: dict[str, Any] = json.loads(get(f"{upstream}/count{query}")[2])
    return counts


def family_sources(upstream: str, tag: str, out: str) -> tuple[int, int, int, int, int]:
    """(whole blocks, sources, requests asked for them, their 200s, their 304s) from wrk's
    `family:` line and the upstream's counts per name: the blocks wrk finished asking for,
    or with none finished, every source it asked for."""
    m = re.search(r"^family: asked (\d+) blocks (\d+) touched (\d+)$", out, re.M)
    if m is None:
        raise RuntimeError(f"no 'family:' line in wrk's output:\n{out}")
    asked, blocks, touched = map(int, m.groups())
    size = FAMILY_SOURCES * len(FAMILY_VARIANTS)
    whole = asked // size
    if blocks not in (whole, whole + 1):
        raise RuntimeError(f"wrk's family script: {asked} requests in {blocks} blocks?")
    names = upstream_count(upstream, tag + "-b")["names"]
    got = [0, 0]
    for name, (n200, n304) in names.items():
        b = re.search(r"-b(\d+)-s\d+\.jpg$", name)
        if b is not None and (not whole or int(b[1]) <= whole):
            got[0] += n200
            got[1] += n304
    if whole:
        return whole, whole * FAMILY_SOURCES, whole * size, got[0], got[1]
    return 0, touched, asked, got[0], got[1]


def load(t: Target, tmp: Path, tag: str, connections: int, duration: float,
         upstream: str) -> Run:
    if t.family:
        script = family_script(tmp / f"{t.key}.lua", tag, t.family)
    else:
        before, after = t.path
        script = counter_script(tmp / f"{t.key}.lua", before.replace("{run}", tag), after)
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
           "--timeout", WRK_TIMEOUT, "-s", str(script), t.base]
    counts, (cpu, lead) = upstream_count(upstream), cpu_seconds(t.group.pgids)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 90,
                          check=False)
    cpu_after, lead_after = cpu_seconds(t.group.pgids)
    after_counts = upstream_count(upstream)
    # Up to `connections` requests were cut off in flight: their transforms go on for a
    # moment, and shouldn't take CPU from the next run.
    time.sleep(SETTLE_S)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    res = parse_wrk(proc.stdout)
    answers = int(proc.stdout.split(" requests in ")[0].split()[-1])
    fetched, not_modified = (after_counts[k] - counts[k] for k in ("200", "304"))
    sources = family_sources(upstream, tag, proc.stdout) if t.family else (0, 0, 0, 0, 0)
    return Run(res.rps, res.p50_ms, res.p99_ms, res.errors, answers, fetched, not_modified,
               cpu_after - cpu, lead_after - lead, *sources)


def check_answer(label: str, url: str, want: tuple[int, int], fmt: str = "webp",
                 accept: str = ACCEPT) -> tuple[dict[str, str], bytes]:
    status, headers, body = get(url, {"Accept": accept})
    ctype = headers.get("Content-Type", "")
    if status != 200 or not ctype.startswith(f"image/{fmt}"):
        raise RuntimeError(f"{label}: {status} {ctype!r}, expected 200 image/{fmt}")
    with Image.open(io.BytesIO(body)) as im:
        if (im.format, im.size) != (fmt.upper(), want):
            raise RuntimeError(f"{label}: {im.format} {im.size}, expected {fmt.upper()} "
                               f"{want}")
    return headers, body


# --------------------------------------------------------------------------------- main


def pillow_alone(source: bytes, spec: Spec, route: ImageRoute) -> tuple[list[float], bytes]:
    transform(source, spec, route.limits)  # warm-up
    times, body = [], b""
    for _ in range(PILLOW_RUNS):
        t0 = time.perf_counter()
        body = transform(source, spec, route.limits).body
        times.append(time.perf_counter() - t0)
    return times, body


def decode_alone(source: bytes, spec: Spec) -> list[float]:
    """The JPEG decode of every transform: draft() to the smallest 1/2^n scale that still
    covers the output width, as images.transform does, then load()."""
    assert spec.width is not None
    want = (spec.width, math.ceil(spec.width * SOURCE_SIZE[1] / SOURCE_SIZE[0]))
    times = []
    for _ in range(PILLOW_RUNS + 1):
        t0 = time.perf_counter()
        with Image.open(io.BytesIO(source)) as im:
            im.draft("RGB", want)
            im.load()
        times.append(time.perf_counter() - t0)
    return times[1:]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    ap.add_argument("--duration", type=float, default=10.0,
                    help="seconds per wrk run (default 10)")
    ap.add_argument("--connections", type=int, default=8,
                    help="wrk connections (default 8: saturates 2 cores, no timeouts)")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per target")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round of 2 s")
    ap.add_argument("--json", action="store_true", help="also print the figures as JSON")
    ap.add_argument("--thumbor-venv", type=Path, default=Path("/tmp/thumbor-venv"),
                    help="venv holding thumbor (default /tmp/thumbor-venv)")
    ap.add_argument("--no-thumbor-install", action="store_true",
                    help="don't pip install thumbor into --thumbor-venv when it's missing")
    ap.add_argument("--no-thumbor", action="store_true", help="the edge alone")
    ap.add_argument("--thumbor-mode", choices=("reuseport", "processes", "threads"),
                    default="reuseport",
                    help="N thumbor instances on SO_REUSEPORT sockets (default), "
                    "--processes N on one socket, or one process with N engine threads "
                    "(N = CPUs)")
    args = ap.parse_args(argv)
    settle_rounds(ap, args)
    if args.connections < 1:
        ap.error("--connections must be at least 1")
    return args


def family_profile(source: bytes, specs: dict[tuple[int, str], Spec]) -> dict[str, float]:
    """Where a family's time goes, in this process: per variant (mean over the family, the
    median of 3 runs each), the decode as a transform from the source does it (a draft for
    that size), the resize, the encode, and a whole output made from a master (edge)."""
    from images import decode_master, render
    from images.transform import _EFFORTS, _encode, _finish, _plan, _resize

    def timed(fn: Callable[[], object]) -> float:
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t0)
        return statistics.median(runs) * 1000

    limits = Limits()
    pixels, master = decode_master(source, limits, max(FAMILY_WIDTHS))
    out: dict[str, list[float]] = {"decode": [], "resize": [], "encode": [], "render": []}
    for spec in specs.values():
        plan = _plan(master.upright, spec)
        need = (plan.width, plan.height)

        def decode(need: tuple[int, int] = need) -> Image.Image:
            im = Image.open(io.BytesIO(source))
            im.draft("RGB", need)
            im.load()
            return im

        drafted = decode()
        resize = partial(_resize, drafted, plan, spec.crop, _EFFORTS[spec.effort].resample)
        out["decode"].append(timed(decode))
        out["resize"].append(timed(resize))
        out["encode"].append(timed(partial(_encode, _finish(resize(), None, spec.format),
                                           spec)))
        out["render"].append(timed(partial(render, pixels, master, spec, limits)))
    return {k: statistics.mean(v) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if (code := preflight("images.py", wrk=True)) is not None:
        return code
    started = time.monotonic()
    cpus = os.cpu_count() or 1
    py = sys.executable
    try:
        with ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edge-img-")))
            source = make_source(tmp / "source.jpg")
            up_port, edge_port = free_port(), free_port()
            upstream = f"http://127.0.0.1:{up_port}"
            cfg = edge_config(tmp / "edge", upstream)
            spec, route, family_specs = route_specs(cfg)
            assert spec.width is not None and spec.quality is not None
            times, pillow_body = pillow_alone(source, spec, route)
            fast_times, _ = pillow_alone(source, replace(spec, effort="fast"), route)
            decode_times = decode_alone(source, spec)
            with Image.open(io.BytesIO(pillow_body)) as im:
                out_size = im.size

            thumbor_exe, thumbor_note = (None, "--no-thumbor") if args.no_thumbor else \
                find_thumbor(args.thumbor_venv, not args.no_thumbor_install)

            up_log = tmp / "upstream.err"
            up = stack.enter_context(spawn(Group(), [py, str(HERE / "_images_upstream.py"),
                                                     str(up_port), str(tmp / "source.jpg")],
                                           up_log))
            ready(up, f"{upstream}/count", up_log)
            targets: list[Target] = []

            edge_group, edge_log = Group(), tmp / "edge.err"
            edge = stack.enter_context(spawn(
                edge_group, [str(EDGE_BIN), "serve", "--config", str(cfg), "--host",
                             "127.0.0.1", "--port", str(edge_port)], edge_log,
                env={**os.environ, "IMG_KEY": IMG_KEY}))
            ready(edge, f"http://127.0.0.1:{edge_port}/health", edge_log)
            targets.append(Target("edge", "edge", f"http://127.0.0.1:{edge_port}",
                                  ("/img/{run}-", ".jpg?preset=bench"), edge_group))
            targets.append(Target("edge-fast", "edge-fast", f"http://127.0.0.1:{edge_port}",
                                  ("/fast/{run}-", ".jpg?preset=bench"), edge_group))
            targets.append(Target("edge-family", "edge family", f"http://127.0.0.1:{edge_port}",
                                  ("", ""), edge_group,
                                  tuple(("/fam/", f"?preset=w{w}", f"image/{f}")
                                        for w, f in FAMILY_VARIANTS)))

            thumbor_log = tmp / "thumbor.err"
            if thumbor_exe is not None:
                try:
                    targets += start_thumbor(stack, thumbor_exe, args.thumbor_mode, cpus,
                                             tmp, thumbor_log, upstream, spec, family_specs)
                except RuntimeError as e:
                    thumbor_note += f"; did not start: {e}"
                    thumbor_exe = None

            # Before the load: the answers are right, and the edge's are made per name.
            sample: dict[str, bytes] = {}
            family_sample: dict[str, dict[tuple[int, str], int]] = {}
            check_source: dict[str, tuple[int, int]] = {}
            for t in targets:
                if t.family:
                    family_sample[t.key], check_source[t.key] = check_family(t, upstream)
                    continue
                url = t.base + t.path[0].replace("{run}", "check") + "1" + t.path[1]
                headers, sample[t.key] = check_answer(t.label, url, out_size)
                if t.key.startswith("edge"):
                    if "miss" not in headers.get("Cache-Status", ""):
                        raise RuntimeError(f"edge: first request not a miss: {headers}")
                    again, _ = check_answer(t.label, url, out_size)
                    if "hit" not in again.get("Cache-Status", ""):
                        raise RuntimeError(f"edge: repeat not a cache hit: {again}")

            print(f"image transform benchmark: wrk -t1 -c{args.connections} --timeout "
                  f"{WRK_TIMEOUT}, {args.rounds} round(s) x {args.duration:g}s per target, "
                  f"{cpus} CPUs, Python {platform.python_version()}, Pillow "
                  f"{PIL.__version__} (libjpeg-turbo {features.version('libjpeg_turbo')}, "
                  f"libwebp {features.version('webp')})", flush=True)
            results = {t.key: Series() for t in targets}
            for t in targets:
                load(t, tmp, f"warm{secrets.token_hex(2)}", args.connections, args.warmup,
                     upstream)
            for rnd in range(args.rounds):
                for t in rotated(targets, rnd):
                    run = load(t, tmp, f"r{rnd}{secrets.token_hex(2)}", args.connections,
                               args.duration, upstream)
                    results[t.key].runs.append(run)
                    n = max(1, run.sources)
                    fam = (f"; {run.blocks} block(s) finished, {run.sources} sources asked "
                           f"{run.asked / n:.1f} times each: {run.src_200 / n:.2f} x 200 + "
                           f"{run.src_304 / n:.2f} x 304 per source" if t.family else "")
                    print(f"  round {rnd + 1}/{args.rounds}  {t.label:<14} {run.rps:7.1f}/s  "
                          f"p50 {run.p50_ms:7.1f} ms  p99 {run.p99_ms:7.1f} ms  "
                          f"{run.answers} answers, {run.fetches} fetches, "
                          f"{run.not_modified} 304s, "
                          f"CPU {run.cpu_s * 1000 / max(1, run.answers):.1f} ms/answer{fam}",
                          file=sys.stderr, flush=True)
            logs = {"edge": edge_log, "thumbor": thumbor_log, "upstream": up_log}
            warnings = [f"{name}: {line.strip()}" for name, log in logs.items()
                        if log.exists()
                        for line in log.read_text(errors="replace").splitlines()
                        if re.search(r"Traceback|\bERROR\b|CRITICAL", line)]
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130

    report(args, source, spec, out_size, (times, fast_times, decode_times), pillow_body, sample,
           results, thumbor_exe, thumbor_note, warnings, time.monotonic() - started,
           Family(family_specs, family_sample, check_source))
    return 0


def check_family(t: Target, upstream: str) -> tuple[dict[tuple[int, str], int], tuple[int, int]]:
    """One source (a name of its own) asked for each variant in turn: every answer the
    right format and size; its bytes per variant, and the upstream's (200s, 304s) for it."""
    tag = f"check-{t.key}"
    name = f"{tag}-b0-s0.jpg"
    out = {}
    for (w, f), (before, after, accept) in zip(FAMILY_VARIANTS, t.family, strict=True):
        want = (w, round(w * SOURCE_SIZE[1] / SOURCE_SIZE[0]))
        headers, body = check_answer(f"{t.label} w{w} {f}", t.base + before + name + after,
                                     want, f, accept)
        if t.key.startswith("edge") and "miss" not in headers.get("Cache-Status", ""):
            raise RuntimeError(f"{t.label}: first request for w{w} {f} not a miss: {headers}")
        out[w, f] = len(body)
    names = upstream_count(upstream, tag)["names"]
    n200, n304 = names.get(name, (0, 0))
    return out, (n200, n304)


def start_thumbor(stack: ExitStack, exe: Path, mode: str, n: int, tmp: Path, log: Path,
                  upstream: str, spec: Spec,
                  family_specs: dict[tuple[int, str], Spec]) -> list[Target]:
    """thumbor's instances, and its two targets: the single run's and the family's (each
    variant at the quality the edge uses for it)."""
    conf = thumbor_conf(tmp / "thumbor.conf", mode, n)
    group = Group()
    base_cmd = [str(exe), "-c", str(conf), "-l", "warning"]
    if mode == "reuseport":
        socks = reuseport_sockets(n)
        port = socks[0].getsockname()[1]
        try:
            procs = [stack.enter_context(spawn(group, [*base_cmd, "--fd", str(s.fileno())],
                                               log, pass_fds=[s.fileno()])) for s in socks]
        finally:
            for s in socks:  # each instance holds its own; ours would take connections too
                s.close()
    else:
        port = free_port()
        extra = ["--processes", str(n)] if mode == "processes" else []
        procs = [stack.enter_context(spawn(
            group, [*base_cmd, "-i", "127.0.0.1", "-p", str(port), *extra], log))]
    base = f"http://127.0.0.1:{port}"
    for proc in procs:
        ready(proc, f"{base}/healthcheck", log)
    def unsafe(s: Spec) -> str:
        return (f"/unsafe/{s.width}x0/filters:format({s.format}):quality({s.quality})/"
                f"{upstream}/photos/")

    family = tuple((unsafe(family_specs[w, f]), "", f"image/{f}") for w, f in FAMILY_VARIANTS)
    return [Target("thumbor", "thumbor", base, (unsafe(spec) + "{run}-", ".jpg"), group),
            Target("thumbor-family", "thumbor family", base, ("", ""), group, family)]


@dataclass(frozen=True, slots=True)
class Family:
    """What the report needs of the family workload besides the runs."""

    specs: dict[tuple[int, str], Spec]  # the edge's Spec per (width, format)
    sample: dict[str, dict[tuple[int, str], int]]  # per target: output bytes per variant
    check_source: dict[str, tuple[int, int]]  # per target: the check source's 200s, 304s


def _spread(rps: Sequence[float]) -> tuple[float, str]:
    med = statistics.median(rps)
    return med, (f"±{(max(rps) - min(rps)) / 2 / med * 100:.0f}%" if med else "-")


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return [fmt_row(head, widths), fmt_row(["-" * w for w in widths], widths),
            *(fmt_row(r, widths) for r in rows)]


def _vs(results: dict[str, Series], key: str, base: str) -> float | None:
    """The median of same-round ratios of transforms/s."""
    if key not in results or base not in results:
        return None
    pairs = [e.rps / t.rps for e, t in zip(results[key].runs, results[base].runs, strict=True)
             if t.rps]
    return statistics.median(pairs) if pairs else None


def _verdict(ok: bool) -> str:
    return "met" if ok else "missed"


def report(args: argparse.Namespace, source: bytes, spec: Spec, out_size: tuple[int, int],
           timings: tuple[list[float], list[float], list[float]], pillow_body: bytes,
           sample: dict[str, bytes],
           results: dict[str, Series], thumbor_exe: Path | None, thumbor_note: str,
           warnings: list[str], elapsed: float, family: Family) -> None:
    src_w, src_h = SOURCE_SIZE
    times, fast_times, decode_times = timings
    pillow_ms = statistics.median(times) * 1000
    fast_ms = statistics.median(fast_times) * 1000
    decode_ms = statistics.median(decode_times) * 1000
    cpus = os.cpu_count() or 1
    edge_body = sample["edge"]
    share = len(edge_body) / len(source)
    single = {k: s for k, s in results.items() if k not in family.sample}
    fam = {k: s for k, s in results.items() if k in family.sample}
    lines = [
        f"source: {src_w}x{src_h} photo-like JPEG, quality {SOURCE_QUALITY}, "
        f"{len(source):,} bytes; output: {out_size[0]}x{out_size[1]} WebP, quality "
        f"{spec.quality} (the route's preset: width {PRESET_WIDTH}, quality "
        f"{PRESET_QUALITY} for JPEG, which the edge scales for WebP; thumbor is asked for "
        f"the same)",
        f"thumbor: {thumbor_note}" + (f", mode {args.thumbor_mode} x{cpus}"
                                      if thumbor_exe is not None else ""),
        "",
    ]
    rows = []
    for key, s in single.items():
        med, spread = _spread([r.rps for r in s.runs])
        body = sample[key]
        rows.append([key, f"{med:,.1f}", spread, f"{s.median('p50_ms'):.0f}",
                     f"{s.median('p99_ms'):.0f}", str(s.errors), f"{s.fetch_ratio:.2f}",
                     f"{s.cpu_ms:.1f}", f"{len(body):,}",
                     f"{len(body) / len(source) * 100:.2f}%"])
    lines += [f"single variant, cold: {args.connections} connections, a new photo name every "
              "request (medians over rounds)"]
    lines += _table(["target", "transforms/s", "spread", "p50 ms", "p99 ms", "errors",
                     "fetches/answer", "CPU ms/transform", "output bytes", "of source"], rows)
    same = pillow_body == edge_body
    lines += [
        "",
        f"Pillow alone, in this process: images.transform -> {out_size[0]} px WebP "
        f"q{spec.quality}: median {pillow_ms:.1f} ms over {len(times)} runs (min "
        f"{min(times) * 1000:.1f}); {1000 / pillow_ms:.1f}/s per core, "
        f"{cpus * 1000 / pillow_ms:.1f}/s on {cpus} cores with nothing else running; "
        f"same bytes as the edge's answer: {'yes' if same else 'NO'}; with effort: fast "
        f"{fast_ms:.1f} ms",
        f"the JPEG decode alone (draft to 1/{_draft_scale(out_size)}): median "
        f"{decode_ms:.1f} ms: entropy decoding every coefficient, whatever the scale, so "
        f"no setting goes below it; at most {cpus * 1000 / decode_ms:.0f} transforms/s "
        f"on {cpus} cores even if resizing, encoding and HTTP took no time",
    ]
    edge_s = results["edge"]
    lines.append(f"edge CPU per transform: {edge_s.cpu_lead_ms:.1f} ms in the serving process "
                 "(HTTP, reading the source, handing it to a worker and back), "
                 f"{edge_s.cpu_ms - edge_s.cpu_lead_ms:.1f} ms in its image workers")
    bytes_ratio: float | None = None
    if "thumbor" in sample:
        tb = sample["thumbor"]
        bytes_ratio = len(edge_body) / len(tb)
        lines.append("thumbor's answer: " + ("the same bytes as the edge's" if tb == edge_body
                     else f"{len(tb):,} bytes vs the edge's {len(edge_body):,}"))
    ratio, fast_ratio = _vs(results, "edge", "thumbor"), _vs(results, "edge-fast", "thumbor")
    if "thumbor" in results:
        thumbor_ms = results["thumbor"].cpu_ms
        lines.append(f"thumbor CPU per transform: {thumbor_ms:.1f} ms; 2x its throughput "
                     f"means at most {thumbor_ms / 2:.1f} ms per transform, of which the "
                     f"decode alone takes {decode_ms:.1f}")

    # the family workload
    qualities = "/".join(f"{f} q{family.specs[FAMILY_WIDTHS[0], f].quality}"
                         for f in FAMILY_FORMATS)
    lines += [
        "",
        f"family: {FAMILY_SOURCES} new sources per block, each asked for "
        f"{len(FAMILY_VARIANTS)} variants (widths "
        f"{'/'.join(map(str, FAMILY_WIDTHS))} x {qualities}), the block's "
        f"{FAMILY_SOURCES * len(FAMILY_VARIANTS)} requests shuffled (seed {FAMILY_SEED}), "
        f"every answer a transform; {args.connections} connections (medians over rounds)",
    ]
    rows = []
    for key, s in fam.items():
        med, spread = _spread([r.rps for r in s.runs])
        rows.append([key.replace("-", " "), f"{med:,.1f}", spread,
                     f"{s.median('p50_ms'):.0f}", f"{s.median('p99_ms'):.0f}", str(s.errors),
                     f"{s.cpu_ms:.1f}", f"{s.per_source('asked'):.1f}",
                     f"{s.per_source('src_200'):.2f}", f"{s.per_source('src_304'):.2f}"])
    lines += _table(["target", "transforms/s", "spread", "p50 ms", "p99 ms", "errors",
                     "CPU ms/transform", "asked/source", "200s/source", "304s/source"], rows)
    lines.append("")
    lines.append(
        "per source: over the blocks wrk finished asking for, in the runs that finished one ("
        + ", ".join(f"{k.replace('-', ' ')} {s.whole_blocks} of {len(s.runs)}"
                    for k, s in fam.items()) + ")")
    if not all(s.whole_blocks for s in fam.values()):
        lines.append("  (a target with none: over the sources asked for, so asked/source is "
                     f"below {len(FAMILY_VARIANTS)}; a block is "
                     f"{FAMILY_SOURCES * len(FAMILY_VARIANTS)} requests, a longer --duration "
                     "finishes one)")
    lines.append("one source asked for its 8 variants one after another, before the load: "
                 + "; ".join(f"{k.replace('-', ' ')} {n200} x 200 + {n304} x 304"
                             for k, (n200, n304) in family.check_source.items()))
    if "thumbor-family" in family.sample:
        e, t = family.sample["edge-family"], family.sample["thumbor-family"]
        lines.append("its answers' bytes, edge / thumbor: " + ", ".join(
            f"{w} px {f} {e[w, f] / t[w, f]:.3f}" for w, f in FAMILY_VARIANTS))
    family_ratio = _vs(results, "edge-family", "thumbor-family")
    parts = family_profile(source, family.specs)
    lines.append(
        "family, in this process, per transform (mean over the 8 variants): decode "
        f"{parts['decode']:.1f} ms (thumbor: every time; the edge: twice per source, "
        f"{parts['decode'] * 2 / len(FAMILY_VARIANTS):.1f} ms), resize {parts['resize']:.1f}"
        f" ms, encode {parts['encode']:.1f} ms; the edge from a master: "
        f"{parts['render']:.1f} ms")
    if "thumbor-family" in results:
        thumbor_ms = results["thumbor-family"].cpu_ms
        lines.append(f"thumbor family CPU per transform: {thumbor_ms:.1f} ms; 2x its "
                     f"throughput means at most {thumbor_ms / 2:.1f} ms per transform, of "
                     f"which encoding alone takes {parts['encode']:.1f} (at equal encoder "
                     "settings no cache of decoded sources saves any of it)")

    ok_ratio = None if ratio is None else ratio >= TARGET_VS_THUMBOR
    ok_share = share <= TARGET_OUTPUT_SHARE
    ok_family = None if family_ratio is None else family_ratio >= TARGET_FAMILY_VS_THUMBOR
    ok_bytes = None if bytes_ratio is None else \
        abs(bytes_ratio - 1) <= TARGET_BYTES_VS_THUMBOR
    lines.append("")
    if ratio is None:
        lines.append(f"edge transforms/s vs thumbor (target >= {TARGET_VS_THUMBOR:g}x): "
                     f"SKIPPED: no thumbor ({thumbor_note})")
    else:
        lines.append(f"edge transforms/s vs thumbor: {ratio:.2f}x (target >= "
                     f"{TARGET_VS_THUMBOR:g}x): {'PASS' if ok_ratio else 'FAIL'}")
        if fast_ratio is not None:
            lines.append(f"edge-fast (effort: fast) transforms/s vs thumbor: "
                         f"{fast_ratio:.2f}x")
    if family_ratio is None:
        lines.append(f"family: edge transforms/s vs thumbor (goal >= "
                     f"{TARGET_FAMILY_VS_THUMBOR:g}x): SKIPPED: no thumbor")
    else:
        lines.append(f"family: edge transforms/s vs thumbor: {family_ratio:.2f}x (goal >= "
                     f"{TARGET_FAMILY_VS_THUMBOR:g}x): {_verdict(bool(ok_family))}")
    if bytes_ratio is None:
        lines.append(f"edge {out_size[0]} px WebP bytes vs thumbor's for the same request "
                     f"(goal within {TARGET_BYTES_VS_THUMBOR * 100:g}%): SKIPPED: no thumbor")
    else:
        lines.append(f"edge {out_size[0]} px WebP bytes vs thumbor's for the same request: "
                     f"{bytes_ratio:.3f} (goal within {TARGET_BYTES_VS_THUMBOR * 100:g}%): "
                     f"{_verdict(bool(ok_bytes))}")
    lines += [
        f"edge {out_size[0]} px WebP vs source bytes: {share * 100:.2f}% (target <= "
        f"{TARGET_OUTPUT_SHARE * 100:.0f}%): {'PASS' if ok_share else 'FAIL'}",
        "ratio = median of same-round pairs; spread = half the min-max range of "
        "transforms/s; CPU = the target's processes (user + system) per answer; "
        "fetches/answer = the upstream's source fetches (200s) per answer (1 = every answer "
        "a transform); family per source: the requests asked for each source, and the "
        "upstream's 200s and 304s for it",
        f"total {elapsed:.0f}s",
    ]
    print("\n".join(lines))
    errors = sum(s.errors for s in results.values())
    if errors:
        print(f"WARNING: {errors} socket errors / non-2xx responses (see 'errors')")
    for w in warnings[:10]:
        print(f"WARNING: {w}")
    if args.json:
        print(json.dumps({
            "rounds": args.rounds, "duration_s": args.duration,
            "connections": args.connections,
            "source": {"width": src_w, "height": src_h, "bytes": len(source),
                       "quality": SOURCE_QUALITY},
            "output": {"width": out_size[0], "height": out_size[1], "format": "webp",
                       "quality": spec.quality},
            "pillow_ms": pillow_ms,
            "targets": {k: {"transforms_per_s": s.median("rps"),
                            "p50_ms": s.median("p50_ms"), "p99_ms": s.median("p99_ms"),
                            "errors": s.errors, "cpu_ms_per_transform": s.cpu_ms,
                            "cpu_ms_per_transform_leaders": s.cpu_lead_ms,
                            "fetches_per_answer": s.fetch_ratio,
                            "output_bytes": len(sample[k])} for k, s in single.items()},
            "family": {
                "sources_per_block": FAMILY_SOURCES, "widths": list(FAMILY_WIDTHS),
                "formats": list(FAMILY_FORMATS), "seed": FAMILY_SEED,
                "quality": {f"{w}/{f}": s.quality for (w, f), s in family.specs.items()},
                "targets": {k: {"transforms_per_s": s.median("rps"),
                                "p50_ms": s.median("p50_ms"), "p99_ms": s.median("p99_ms"),
                                "errors": s.errors, "cpu_ms_per_transform": s.cpu_ms,
                                "runs_with_whole_blocks": s.whole_blocks,
                                "asked_per_source": s.per_source("asked"),
                                "fetches_per_source": s.per_source("src_200"),
                                "not_modified_per_source": s.per_source("src_304"),
                                "check_source": dict(zip(("200", "304"),
                                                         family.check_source[k],
                                                         strict=True)),
                                "output_bytes": {f"{w}/{f}": n for (w, f), n
                                                 in family.sample[k].items()}}
                            for k, s in fam.items()},
            },
            "thumbor": {"available": thumbor_exe is not None, "note": thumbor_note,
                        "mode": args.thumbor_mode if thumbor_exe is not None else None},
            "edge_vs_thumbor": ratio, "edge_fast_vs_thumbor": fast_ratio,
            "edge_family_vs_thumbor_family": family_ratio,
            "edge_bytes_vs_thumbor": bytes_ratio,
            "pillow_fast_ms": fast_ms, "decode_ms": decode_ms, "output_share": share,
            "pass": {"vs_thumbor": ok_ratio, "output_bytes": ok_share,
                     "family_vs_thumbor": ok_family, "bytes_vs_thumbor": ok_bytes},
        } | ({"warnings": warnings} if warnings else {})))


if __name__ == "__main__":
    raise SystemExit(main())
