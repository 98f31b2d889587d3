"""The container image end to end, with podman: built from the repo's Dockerfile (on a base
made from Debian's packages, deploy/container/), run as production runs it — read-only root
filesystem, only /tmp writable, non-root, the secret in the environment, the config
mounted — in front of the demo upstreams on the host; then stopped with SIGTERM, it drains
and exits 0.

Skipped only where podman is not installed. The first run builds the base image (about a
minute) and the edge image (about a minute); later runs reuse podman's cache."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.config import load_config
from edge.demo.upstreams import DEFAULT_PORTS

from .conftest import free_port

REPO = Path(__file__).resolve().parent.parent
CONTAINER_DIR = REPO / "deploy" / "container"
IMAGE = "localhost/edge:test"
PODMAN = shutil.which("podman")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(PODMAN is None, reason="podman is not installed (apt-get install "
                       "podman runc mmdebstrap uidmap slirp4netns fuse-overlayfs)"),
]

# The demo upstreams, each on a port of its own choosing, until SIGTERM.
UPSTREAMS = """
import asyncio, signal
from edge.demo.upstreams import DEFAULT_PORTS, start_upstreams, stop_upstreams

async def main():
    started = await start_upstreams({name: 0 for name in DEFAULT_PORTS})
    for upstream in started:
        print(upstream.name, upstream.url, flush=True)
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await stop_upstreams(started)

asyncio.run(main())
"""


def podman_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    env.setdefault("CONTAINERS_CONF", str(CONTAINER_DIR / "containers.conf"))
    return env


def podman(*args: str, timeout: float = 60, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    assert PODMAN is not None
    return subprocess.run([PODMAN, *args], capture_output=True, text=True, timeout=timeout,
                          env=env or podman_env(), stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def image() -> str:
    """The edge image, built by deploy/container/build.sh (the base first if missing)."""
    build = subprocess.run(
        ["bash", str(CONTAINER_DIR / "build.sh")], capture_output=True, text=True,
        timeout=1200, stdin=subprocess.DEVNULL,
        env=podman_env(EDGE_IMAGE=IMAGE, PYTHON=sys.executable))
    if build.returncode != 0:
        pytest.fail(f"image build failed ({build.returncode}):\n"
                    f"{build.stdout[-4000:]}\n{build.stderr[-4000:]}")
    return IMAGE


@pytest.fixture
def upstreams() -> Iterator[dict[str, str]]:
    """The demo upstream services on the host's loopback: name → base URL."""
    proc = subprocess.Popen([sys.executable, "-c", UPSTREAMS], stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    try:
        urls: dict[str, str] = {}
        for line in proc.stdout:
            if line.strip() == "ready":
                break
            name, url = line.split()
            urls[name] = url
        assert set(urls) == set(DEFAULT_PORTS), f"demo upstreams did not start: {urls}"
        yield urls
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()


def demo_config(root: Path, urls: dict[str, str]) -> Path:
    """The repo's config/ with the services' URLs moved to where the upstreams listen."""
    shutil.copytree(REPO / "config", root)
    edge_yaml = root / "edge.yaml"
    text = edge_yaml.read_text()
    for name, port in DEFAULT_PORTS.items():
        text = text.replace(f"http://127.0.0.1:{port}", urls[name])
    # the demo's push service (`edge demo` runs it; nothing here pushes): out of the way
    text = text.replace('endpoints: ["http://127.0.0.1:9107"]',
                        f'endpoints: ["http://127.0.0.1:{free_port()}"]')
    assert not re.search(r"127\.0\.0\.1:91\d\d", text)
    edge_yaml.write_text(text)
    return root


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers.get("Content-Type", ""), e.read()


def test_image_serves_read_only_and_stops_cleanly(image: str, upstreams: dict[str, str],
                                                   tmp_path: Path) -> None:
    secret = "container-test-" + secrets.token_hex(24)  # 63 bytes: HS256 wants 32+
    config = demo_config(tmp_path / "config", upstreams)
    drain = load_config(config, {"EDGE_JWT_SECRET": secret}).edge.drain_timeout
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    name = f"edge-test-{os.getpid()}-{secrets.token_hex(4)}"
    # The secret goes by name (-e NAME): its value is in podman's environment, not its argv.
    env = podman_env(EDGE_JWT_SECRET=secret)
    run = podman(
        "run", "--detach", "--name", name,
        "--network=host",                  # the demo upstreams listen on the host's loopback
        "--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp",   # as docker does it
        "-e", "EDGE_JWT_SECRET", "-e", f"EDGE_HEALTH_URL={base}/health",
        "-v", f"{config}:/etc/edge:ro",
        image, "edge", "serve", "--config", "/etc/edge", "--host", "127.0.0.1",
        "--port", str(port), env=env)
    assert run.returncode == 0, run.stderr
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if get(f"{base}/ready")[0] == 200:
                    break
            except OSError:
                pass
            state = podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
            logs = podman("logs", name)
            assert state == "true", f"the container exited:\n{logs.stdout}{logs.stderr}"
            assert time.monotonic() < deadline, f"not ready in 60s:\n{logs.stdout}{logs.stderr}"
            time.sleep(0.2)

        status, _, body = get(f"{base}/health")
        assert (status, json.loads(body)) == (200, {"status": "ok"})
        status, _, body = get(f"{base}/ready")
        assert status == 200 and json.loads(body)["status"] == "ready"
        status, _, body = get(f"{base}/api/v1/providers?city=Jakarta&size=2")
        assert status == 200, body
        assert len(json.loads(body)["items"]) == 2
        # An image transform runs in the image worker processes, whose forkserver needs a
        # writable TMPDIR: the tmpfs on /tmp is all it gets.
        status, ctype, body = get(f"{base}/img/providers/PRV-001/photos/1.jpg",
                                  {"Accept": "image/webp"})
        assert (status, ctype) == (200, "image/webp"), body[:300]
        assert body[:4] == b"RIFF" and body[8:12] == b"WEBP"

        # Non-root, nothing writable but /tmp, and the image's HEALTHCHECK says healthy.
        assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
        for path in ("/opt/edge/x", "/etc/edge/x", "/x"):
            touch = podman("exec", name, "touch", path)
            assert touch.returncode != 0 and "Read-only file system" in touch.stderr, path
        assert podman("exec", name, "touch", "/tmp/x").returncode == 0
        health = podman("healthcheck", "run", name)
        assert health.returncode == 0, health.stdout + health.stderr

        # SIGTERM (the image's STOPSIGNAL): drained and gone within the drain timeout.
        started = time.monotonic()
        stop = podman("stop", "--time", str(int(drain) + 10), name, timeout=drain + 30)
        took = time.monotonic() - started
        assert stop.returncode == 0, stop.stderr
        assert took < drain, f"stopping took {took:.1f}s (drain timeout {drain:g}s)"
        exit_code = podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        logs = podman("logs", name)
        output = logs.stdout + logs.stderr
        assert exit_code == "0", output
        assert "draining" in output
        assert "Traceback" not in output, output
    finally:
        podman("rm", "--force", "--time", "0", name)
