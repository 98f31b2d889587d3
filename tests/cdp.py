"""Headless Chromium (the distribution's package) driven over the DevTools protocol: just
what the browser tests need — open a page, evaluate JavaScript, wait for a condition, take
a screenshot."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import shutil
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """One headless Chromium with one page, for `async with`."""

    def __init__(self, profile: Path, url: str = "about:blank",
                 size: tuple[int, int] = (1280, 1400)) -> None:
        self.profile, self.url, self.size = profile, url, size
        self._proc: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None
        self._cdp: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)

    async def __aenter__(self) -> Browser:
        assert CHROMIUM is not None, "no chromium: apt-get install chromium"
        self._proc = await asyncio.create_subprocess_exec(
            CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-sync",
            "--disable-component-update", "--remote-debugging-port=0",
            f"--window-size={self.size[0]},{self.size[1]}",
            f"--user-data-dir={self.profile}", self.url,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        assert self._proc.stderr is not None
        while True:
            line = (await asyncio.wait_for(self._proc.stderr.readline(), 30)).decode()
            assert line, "chromium exited before it listened for DevTools"
            m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            if m:
                break
        self._session = aiohttp.ClientSession()
        for _ in range(100):
            async with self._session.get(f"http://127.0.0.1:{m[1]}/json/list") as r:
                pages = [t for t in await r.json() if t["type"] == "page"]
            if pages:
                break
            await asyncio.sleep(0.1)
        self._cdp = await self._session.ws_connect(pages[0]["webSocketDebuggerUrl"],
                                                   max_msg_size=0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._cdp is not None:
            await self._cdp.close()
        if self._session is not None:
            await self._session.close()
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        assert self._cdp is not None
        n = next(self._ids)
        await self._cdp.send_json({"id": n, "method": method, "params": params})
        while True:
            reply = await asyncio.wait_for(self._cdp.receive_json(), 60)
            if reply.get("id") == n:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply["result"]
                return result

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (awaited when it is a promise)."""
        got = await self.send("Runtime.evaluate", expression=expression,
                              awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in got:
            raise RuntimeError(f"{expression}: {json.dumps(got['exceptionDetails'])[:800]}")
        return got["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        """The expression's value once it is truthy."""
        deadline = asyncio.get_running_loop().time() + timeout
        value = None
        while asyncio.get_running_loop().time() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"never true: {expression} (last: {value!r})")

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete'")

    async def screenshot(self, path: Path) -> None:
        got = await self.send("Page.captureScreenshot", format="png",
                              captureBeyondViewport=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(got["data"]))
