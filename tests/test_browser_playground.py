"""The policy playground in a real browser: headless Chromium (the distribution's package)
loads /_edge/playground from a running `edge demo`, runs the claims list for phone and
desktop, and the byte counts it shows are what a plain HTTP client gets with the same
headers; an edit with a typo is marked at its line, the fixed edit previews with its diff,
and a screenshot is saved (artifacts/playground.png, or $EDGE_ARTIFACTS)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from edge.cli import DEMO_SECRET, make_token

from .cdp import CHROMIUM, Browser

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("EDGE_ARTIFACTS", REPO / "artifacts"))
ROUTE = "GET /api/v1/members/{member_id}/claims"


def js(value: Any) -> str:
    return json.dumps(value)


@pytest.mark.skipif(CHROMIUM is None, reason="needs the distribution's chromium "
                    "(apt-get install chromium); .ci/run installs it")
async def test_the_playground_in_a_browser(demo: Any, tmp_path: Path) -> None:
    base, s = demo
    async with Browser(tmp_path / "profile", size=(1280, 2000)) as b:
        await b.goto(f"{base}/_edge/playground")
        # the demo mints its admin token; the routes come from the live config
        await b.evaluate("document.getElementById('demo-token').click()")
        await b.wait_for(f"[...document.querySelectorAll('#route option')]"
                         f".some(o => o.value === {js(ROUTE)})")
        await b.evaluate(f"""(() => {{
            const s = document.getElementById('route');
            s.value = {js(ROUTE)}; s.dispatchEvent(new Event('change'));
            const ae = document.getElementById('accept-encoding');
            ae.value = 'br'; ae.dispatchEvent(new Event('change'));
            const claims = document.querySelector('input[name=identity][value=claims]');
            claims.checked = true; claims.dispatchEvent(new Event('change'));
            for (const d of document.querySelectorAll('input[name=device]')) {{
                d.checked = d.value === 'phone' || d.value === 'desktop';
                d.dispatchEvent(new Event('change'));
            }}
        }})()""")
        await b.wait_for("document.querySelector('input[name=param-member_id]')"
                         "?.value === '1001'")
        query = await b.evaluate("document.getElementById('query').value")
        accept = await b.evaluate("document.getElementById('accept').value")
        await b.evaluate("document.getElementById('run').click()")
        shown = {}
        for device in ("phone", "desktop"):
            text = await b.wait_for(
                f"document.querySelector('[data-testid=bytes-{device}]')"
                "?.textContent")
            shown[device] = int(text)
        # what a plain client receives with the same headers
        member = make_token(DEMO_SECRET, "1001", ["member"], 600)
        path = "/api/v1/members/1001/claims" + (f"?{query}" if query else "")
        for device, count in shown.items():
            async with s.get(base + path, auto_decompress=False, headers={
                    "Authorization": f"Bearer {member}", "Accept": accept,
                    "Accept-Encoding": "br", "X-Device-Type": device,
                    "Cache-Control": "no-cache"}) as r:
                assert r.status == 200
                assert len(await r.read()) == count, device
        assert shown["phone"] < shown["desktop"]
        # from the upstream (no-cache): every stage's bytes, upstream to wire
        bars = await b.evaluate(
            "document.querySelector('[data-testid=bytes-phone]')"
            ".closest('article').textContent")
        assert "upstream" in bars and "keymap" in bars and "wire" in bars
        # an edit with a typo: marked at its line
        original = await b.evaluate("document.getElementById('editor').value")
        assert original.startswith(f"  - route: {ROUTE}")
        typo = original.replace("      prune: true", "      prnue: true")
        line = typo.splitlines().index("      prnue: true") + 1
        await b.evaluate(f"""(() => {{
            const e = document.getElementById('editor');
            e.value = {js(typo)}; e.dispatchEvent(new Event('input'));
            document.getElementById('check').click();
        }})()""")
        problems = await b.wait_for(
            "document.querySelector('[data-testid=problems]')?.textContent")
        assert f"line {line}, col 7" in problems and "prnue" in problems
        # fixed, and changed: the phone loses the provider
        fixed = original.replace(",provider(id,name)),page,has_more", "),page,has_more")
        assert fixed != original
        await b.evaluate(f"""(() => {{
            const e = document.getElementById('editor');
            e.value = {js(fixed)}; e.dispatchEvent(new Event('input'));
            document.getElementById('check').click();
        }})()""")
        await b.wait_for("!!document.querySelector('[data-testid=check-ok]')")
        await b.evaluate("document.getElementById('preview').click()")
        preview = int(await b.wait_for(
            "document.querySelector('[data-testid=preview-bytes-phone]')"
            "?.textContent"))
        assert preview < shown["phone"]
        diff = await b.wait_for(
            "document.querySelector('[data-testid=diff-phone]')?.textContent")
        assert '-      "pv": {' in diff
        await b.screenshot(ARTIFACTS / "playground.png")
    # nothing was applied: the serving config still answers as before
    async with s.get(base + path, auto_decompress=False, headers={
            "Authorization": f"Bearer {member}", "Accept": accept,
            "Accept-Encoding": "br", "X-Device-Type": "phone"}) as r:
        assert len(await r.read()) == shown["phone"]
    assert b"Traceback" not in (tmp_path / "demo.err").read_bytes()
    assert (ARTIFACTS / "playground.png").stat().st_size > 10_000
