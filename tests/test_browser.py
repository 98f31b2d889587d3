"""A real browser on the demo's WebSocket route: headless Chromium (the distribution's
package), driven over the DevTools protocol, loads a page from an allowed origin that opens
`/api/v1/support/chat` through the edge with its token in `Sec-WebSocket-Protocol`,
exchanges messages with the demo's agent and sees a clean close."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from edge.cli import DEMO_SECRET, make_token

from .conftest import free_port

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

PAGE = """<!doctype html><title>starting</title><script>
const ws = new WebSocket(%(url)s, ["bearer", "bearer." + %(token)s]);
const got = [];
ws.onmessage = (e) => {
  got.push(JSON.parse(e.data).text);
  ws.send(got.length === 1 ? "hello from a browser" : "bye");
};
ws.onclose = (e) => {
  document.title = "done|" + e.code + "|" + e.reason + "|" + ws.protocol + "|" + got.join("|");
};
</script>"""


async def _devtools_title(chromium: asyncio.subprocess.Process, want: str) -> str:
    """The page's title once it starts with `want` (read over the DevTools protocol)."""
    assert chromium.stderr is not None
    while True:
        line = (await asyncio.wait_for(chromium.stderr.readline(), 30)).decode()
        assert line, "chromium exited before it listened for DevTools"
        m = re.search(r"DevTools listening on (ws://[^\s]+)", line)
        if m:
            break
    port = re.search(r":(\d+)/", m.group(1)).group(1)  # type: ignore[union-attr]
    async with aiohttp.ClientSession() as s:
        for _ in range(100):
            async with s.get(f"http://127.0.0.1:{port}/json/list") as r:
                pages = [t for t in await r.json() if t["type"] == "page"]
            if pages:
                break
            await asyncio.sleep(0.1)
        async with s.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as cdp:
            for n in range(1, 300):
                await cdp.send_json({"id": n, "method": "Runtime.evaluate",
                                     "params": {"expression": "document.title"}})
                while True:
                    reply = await cdp.receive_json()
                    if reply.get("id") == n:
                        break
                title = reply["result"]["result"].get("value", "")
                if title.startswith(want):
                    return str(title)
                await asyncio.sleep(0.1)
    raise AssertionError(f"the page never got a title starting {want!r} (last: {title!r})")


@pytest.mark.skipif(CHROMIUM is None, reason="needs the distribution's chromium "
                    "(apt-get install chromium); .ci/run installs it")
async def test_a_browser_chats_over_the_demo_websocket(tmp_path: Path,
                                                      aiohttp_server: Any) -> None:
    page_port = free_port()
    page_origin = f"http://127.0.0.1:{page_port}"
    root = tmp_path / "config"
    shutil.copytree(REPO / "config", root)
    edge_yaml = root / "edge.yaml"
    edge_yaml.write_text(re.sub(r"127\.0\.0\.1:91\d\d", lambda m: f"127.0.0.1:{free_port()}",
                                edge_yaml.read_text()))
    routes = root / "routes" / "realtime.yaml"
    routes.write_text(routes.read_text().replace(
        "    websocket:\n", f"    websocket:\n      origins: [{page_origin}]\n", 1))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("EDGE_JWT_SECRET",
                                                            "EDGE_REDIS_URL")}
    edge = subprocess.Popen([sys.executable, "-m", "edge", "demo", "--config", str(root),
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    token = make_token(DEMO_SECRET, "1001", ["member"], 600)
    html = PAGE % {"url": json.dumps(f"ws://127.0.0.1:{port}/api/v1/support/chat"),
                   "token": json.dumps(token)}

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    await aiohttp_server(app, port=page_port)
    chromium = None
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(150):
                try:
                    async with s.get(f"http://127.0.0.1:{port}/ready") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        chromium = await asyncio.create_subprocess_exec(
            CHROMIUM or "chromium", "--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--remote-debugging-port=0",
            f"--user-data-dir={tmp_path / 'profile'}", page_origin + "/",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        title = await _devtools_title(chromium, "done|")
    finally:
        if chromium is not None and chromium.returncode is None:
            chromium.kill()
            await chromium.wait()
        edge.terminate()
        edge.wait(20)
    code, reason, protocol, *said = title.split("|")[1:]
    assert (code, reason, protocol) == ("4000", "chat ended", "bearer")
    assert said[0] == "Hello 1001, how can we help?"
    assert "hello from a browser" in said[1]
