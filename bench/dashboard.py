"""Round trips and client-observed time for the member dashboard, with and without the edge.

    .venv/bin/python bench/dashboard.py [--reps 20] [--rtt-ms 50] [--json]

Runs `edge demo` on a copy of config/ (ports moved, demo JWT secret, no demo latency) and
loads the member dashboard screen three ways with one aiohttp ClientSession per variant:

- edge: one `GET /api/v1/members/1001/dashboard` (member JWT, `X-Device-Type: phone`,
  `Accept-Encoding: br`);
- direct, sequential: the app calls the demo upstreams one by one, as a typical phone app
  does: member, claims (size 5), the first claim's provider, benefits, unread notifications;
- direct, parallel: member, claims, benefits and notifications at once, the provider as soon
  as the claims have answered.

A mobile round trip is simulated on the client: `asyncio.sleep(rtt)` before each request (the
sleeps overlap in the parallel variant, as real RTT would). No TCP/TLS handshake cost is
simulated, which favours the many-call variants. Each variant is warmed up once, then the whole
screen is timed `--reps` times; the table shows the median (and min-max). Bytes are response
bodies as received (not decompressed), headers excluded. Takes a few seconds.

Goals (issue), vs the sequential direct variant: >= 80% fewer calls, >= 70% less time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack

import aiohttp
from _common import new_loop, preflight
from payload import start_demo
from proxy import fmt_row

from edge.cli import DEMO_SECRET, make_token

MEMBER = "1001"
TARGET_FEWER_CALLS = 0.80
TARGET_LESS_TIME = 0.70


class Client:
    """Counts round trips and body bytes; sleeps one simulated RTT before every request."""

    def __init__(self, session: aiohttp.ClientSession, rtt: float) -> None:
        self.session, self.rtt = session, rtt
        self.calls = self.bytes = 0

    async def get(self, url: str, headers: dict[str, str] | None = None) -> bytes:
        await asyncio.sleep(self.rtt)
        async with self.session.get(url, headers=headers) as r:
            body = await r.read()
            if r.status != 200:
                raise RuntimeError(f"GET {url}: {r.status} {body[:200]!r}")
        self.calls += 1
        self.bytes += len(body)
        return body


Screen = Callable[[Client], Awaitable[None]]


def screens(edge: str, services: dict[str, str], token: str) -> dict[str, Screen]:
    def url(service: str, path: str) -> str:
        return services[service] + path

    async def via_edge(c: Client) -> None:
        await c.get(f"{edge}/api/v1/members/{MEMBER}/dashboard",
                    {"Authorization": f"Bearer {token}", "X-Device-Type": "phone",
                     "Accept-Encoding": "br"})

    async def claims_then_provider(c: Client) -> None:
        claims = json.loads(await c.get(url("claims", f"/claims?member_id={MEMBER}&size=5")))
        await c.get(url("providers", f"/providers/{claims['items'][0]['provider']['id']}"))

    async def sequential(c: Client) -> None:
        await c.get(url("members", f"/members/{MEMBER}"))
        await claims_then_provider(c)
        await c.get(url("benefits", f"/benefits/{MEMBER}/summary"))
        await c.get(url("notifications", f"/notifications?member_id={MEMBER}&unread=true"))

    async def parallel(c: Client) -> None:
        await asyncio.gather(
            c.get(url("members", f"/members/{MEMBER}")),
            claims_then_provider(c),
            c.get(url("benefits", f"/benefits/{MEMBER}/summary")),
            c.get(url("notifications", f"/notifications?member_id={MEMBER}&unread=true")))

    return {"edge (1 call)": via_edge, "direct, sequential": sequential,
            "direct, parallel": parallel}


async def measure(screen: Screen, reps: int, rtt: float) -> dict[str, float]:
    # auto_decompress=False: count the bytes on the wire; upstreams answer identity anyway.
    async with aiohttp.ClientSession(auto_decompress=False, trust_env=False) as session:
        await screen(Client(session, rtt))  # warm-up: connections, edge caches
        times, calls, nbytes = [], set(), set()
        for _ in range(reps):
            c = Client(session, rtt)
            t0 = time.perf_counter()
            await screen(c)
            times.append((time.perf_counter() - t0) * 1000)
            calls.add(c.calls)
            nbytes.add(c.bytes)
    return {"calls": max(calls), "ms": statistics.median(times), "min_ms": min(times),
            "max_ms": max(times), "bytes": statistics.median(nbytes)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=20, help="timed screens per variant (20)")
    ap.add_argument("--rtt-ms", type=float, default=50.0, help="simulated RTT per call (50)")
    ap.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = ap.parse_args(argv)
    if args.reps < 1 or args.rtt_ms < 0:
        ap.error("--reps must be >= 1 and --rtt-ms >= 0")
    if (code := preflight("dashboard.py", wrk=False)) is not None:
        return code
    token = make_token(DEMO_SECRET, MEMBER, ["member"], 3600)
    rtt = args.rtt_ms / 1000
    res: dict[str, dict[str, float]] = {}
    try:
        with ExitStack() as stack:
            edge, services = start_demo(stack, "edge-dash-")
            loop = new_loop()
            try:
                for label, screen in screens(edge, services, token).items():
                    res[label] = loop.run_until_complete(measure(screen, args.reps, rtt))
            finally:
                loop.close()
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130

    e, seq, par = res["edge (1 call)"], res["direct, sequential"], res["direct, parallel"]
    head = ["variant", "round trips", "median ms", "min-max ms", "bytes", "edge: fewer calls",
            "edge: less time"]
    rows = [head]
    for label, r in res.items():
        rows.append([label, f"{r['calls']:.0f}", f"{r['ms']:.1f}",
                     f"{r['min_ms']:.0f}-{r['max_ms']:.0f}", f"{r['bytes']:,.0f}",
                     "-" if r is e else f"{(1 - e['calls'] / r['calls']) * 100:.0f}%",
                     "-" if r is e else f"{(1 - e['ms'] / r['ms']) * 100:.1f}%"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    fewer = round(1 - e["calls"] / seq["calls"], 9)  # 1 of 5 is exactly 80%
    less = 1 - e["ms"] / seq["ms"]
    ok_calls, ok_time = fewer >= TARGET_FEWER_CALLS, less >= TARGET_LESS_TIME
    lines = [f"edge dashboard benchmark: member {MEMBER} dashboard screen, `edge demo` on a copy "
             f"of config/, simulated RTT {args.rtt_ms:g} ms per round trip, median of "
             f"{args.reps} screens after 1 warm-up", "",
             fmt_row(head, widths), fmt_row(["-" * w for w in widths], widths),
             *(fmt_row(row, widths) for row in rows[1:]), "",
             f"edge vs direct sequential: {fewer * 100:.0f}% fewer calls (target >= "
             f"{TARGET_FEWER_CALLS * 100:.0f}%): {'PASS' if ok_calls else 'FAIL'}",
             f"edge vs direct sequential: {less * 100:.1f}% less time (target >= "
             f"{TARGET_LESS_TIME * 100:.0f}%): {'PASS' if ok_time else 'FAIL'}",
             f"edge vs direct parallel (no goal): {e['ms'] / par['ms']:.2f}x the time "
             f"({(1 - e['ms'] / par['ms']) * 100:.1f}% less), "
             f"{e['bytes'] / par['bytes'] * 100:.1f}% of the bytes",
             "bytes = response bodies as received (edge: phone profile, br), headers excluded"]
    print("\n".join(lines))
    if args.json:
        print(json.dumps({"rtt_ms": args.rtt_ms, "reps": args.reps, "results": res,
                          "pass": ok_calls and ok_time}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
