"""`edge serve` as a real process: signals, reload on SIGHUP, drain on SIGTERM, workers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from .conftest import JWT_SECRET, catch_all, free_port, services_yaml, write_config


def slow_app() -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        if request.path == "/slow":
            await asyncio.sleep(1.0)
        return web.json_response({"path": request.path, "pid": os.getpid()})

    return catch_all(handle)


ROUTES = {"r.yaml": """
routes:
  - route: GET /a
    source: {service: svc, path: /a}
  - route: GET /slow
    source: {service: svc, path: /slow}
"""}


async def start_edge(root: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "EDGE_JWT_SECRET": JWT_SECRET}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge", "serve", "--config", str(root), "--port", str(port),
         *extra], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    async with aiohttp.ClientSession() as s:
        for _ in range(100):
            try:
                async with s.get(f"http://127.0.0.1:{port}/health") as r:
                    if r.status == 200:
                        return proc
            except aiohttp.ClientError:
                pass
            if proc.poll() is not None:
                raise AssertionError(proc.stderr.read().decode() if proc.stderr else "died")
            await asyncio.sleep(0.1)
    proc.kill()
    raise AssertionError("edge did not come up")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(5)
    if proc.stderr:
        proc.stderr.close()


@pytest.fixture
async def setup(tmp_path: Path, upstream: Any) -> tuple[Path, int]:
    url = await upstream(slow_app())
    root = write_config(tmp_path / "config", services_yaml({"svc": url},
                                                           "reload: {watch: false}\n"), ROUTES)
    return root, free_port()


async def test_sighup_reloads_and_sigterm_drains(setup: tuple[Path, int]) -> None:
    root, port = setup
    proc = await start_edge(root, port)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{base}/b") as r:
                assert r.status == 404
            (root / "routes" / "b.yaml").write_text(
                "route: GET /b\nsource: {service: svc, path: /b}\n")
            proc.send_signal(signal.SIGHUP)
            for _ in range(50):
                async with s.get(f"{base}/b") as r:
                    if r.status == 200:
                        break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("SIGHUP did not reload")
            slow = asyncio.ensure_future(s.get(f"{base}/slow"))
            await asyncio.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            r = await slow
            assert r.status == 200  # the in-flight request finished
            assert (await r.json())["path"] == "/slow"
        assert await asyncio.to_thread(proc.wait, 10) == 0
    finally:
        stop(proc)


async def test_workers_share_the_port(setup: tuple[Path, int]) -> None:
    root, port = setup
    proc = await start_edge(root, port, "--workers", "2")
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(10):
                async with s.get(f"http://127.0.0.1:{port}/a") as r:
                    assert r.status == 200
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                  text=True).stdout.split()
        assert len(children) >= 2
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 15) == 0
    finally:
        stop(proc)


async def test_port_0_announces_the_port_it_bound(setup: tuple[Path, int]) -> None:
    root, _ = setup
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge", "serve", "--config", str(root), "--port", "0",
        env={**os.environ, "EDGE_JWT_SECRET": JWT_SECRET}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        async with asyncio.timeout(30):
            while b"listening on" not in (line := await proc.stderr.readline()):
                assert line, "edge ended before it listened"
        url = line.decode().split("listening on ")[1].split()[0]
        assert not url.endswith(":0")
        async with aiohttp.ClientSession() as s, s.get(f"{url}/health") as r:
            assert r.status == 200
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_bad_config_refuses_to_start(tmp_path: Path) -> None:
    root = write_config(tmp_path / "c", "listen: {port: nope}\n", {})
    proc = subprocess.run([sys.executable, "-m", "edge", "serve", "--config", str(root)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert "edge.yaml:1:16: error: listen.port:" in proc.stderr
