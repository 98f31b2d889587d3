"""The WebSocket load client of bench/websocket.py: idle sockets, or an echo load.

Usage: python bench/_ws_client.py

aiohttp's client (`session.ws_connect`, no compression, no heartbeat; uvloop when installed),
in its own process so its CPU is not the server's. Driven by bench/websocket.py over
stdin/stdout, one command per line, one JSON line per answer:

    open URL N CONCURRENCY   open N more idle sockets (at most CONCURRENCY handshakes at
                             once); each gets a task waiting for a message, so a socket the
                             server closes is noticed  -> {"opened", "failed", "errors", "secs"}
    status                   -> {"open", "lost"}
    close                    close every idle socket (close handshakes, all at once)
                             -> {"closed", "secs"}
    load URL CONNECTIONS SIZE WINDOW WARMUP DURATION TEXT
                             open CONNECTIONS sockets; each keeps WINDOW messages of SIZE
                             bytes (TEXT 1: text frames, else binary) in flight: it sends
                             WINDOW, then one more each time an echo comes back, checking
                             that the echo is the message. After WARMUP s it prints
                             {"mark": "start"}, DURATION s later {"mark": "end"} (so the
                             bench can read the servers' CPU time between the two), stops
                             sending, takes the echoes still in flight, closes the sockets and
                             answers {"messages", "secs", "rtt_ms": [p50, p99, max], "errors",
                             "mismatched", "cpu_s", "connect_failed"}
    quit (or EOF)            close and exit

`messages` counts the echoes received between the two marks; a message's round trip runs
from just before its send_* call to when its echo came out of receive() (time.perf_counter).
`cpu_s` is this process's user + system CPU time between the marks.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import string
import sys
import time
from collections import Counter, deque

import aiohttp
from _common import raise_nofile, run_helper
from aiohttp import WSMsgType

MAX_MESSAGE = 4 * 1024 * 1024
WS_TIMEOUT = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10.0)


def say(doc: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def error_key(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:120]


def percentile(sorted_vals: list[float], q: float) -> float:
    """Nearest rank."""
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, round(q * len(sorted_vals) + 0.5) - 1))
    return sorted_vals[k]


class Idle:
    """Sockets opened and held, saying nothing."""

    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None
        self.sockets: list[aiohttp.ClientWebSocketResponse] = []
        self.watchers: list[asyncio.Task[None]] = []
        self.lost = 0

    async def _watch(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        await ws.receive()  # an idle socket gets nothing: anything is the end of it
        self.lost += 1

    async def open(self, url: str, n: int, concurrency: int) -> dict[str, object]:
        if self.session is None:
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        session = self.session
        sem = asyncio.Semaphore(concurrency)
        errors: Counter[str] = Counter()
        started = time.monotonic()
        before = len(self.sockets)

        async def one() -> None:
            async with sem:
                try:
                    async with asyncio.timeout(30):
                        ws = await session.ws_connect(url, autoping=True, compress=0,
                                                      timeout=WS_TIMEOUT)
                except (aiohttp.ClientError, OSError, TimeoutError) as e:
                    errors[error_key(e)] += 1
                    return
                self.sockets.append(ws)
                self.watchers.append(asyncio.ensure_future(self._watch(ws)))

        await asyncio.gather(*(one() for _ in range(n)))
        return {"opened": len(self.sockets) - before, "failed": sum(errors.values()),
                "errors": dict(errors.most_common(5)), "secs": time.monotonic() - started}

    def status(self) -> dict[str, object]:
        return {"open": sum(1 for w in self.watchers if not w.done()), "lost": self.lost}

    async def close(self) -> dict[str, object]:
        started = time.monotonic()
        for w in self.watchers:
            w.cancel()
        await asyncio.gather(*self.watchers, return_exceptions=True)
        closing = [asyncio.ensure_future(ws.close()) for ws in self.sockets if not ws.closed]
        if closing:
            await asyncio.wait(closing, timeout=20)
        n = len(self.sockets)
        self.sockets.clear()
        self.watchers.clear()
        if self.session is not None:
            await self.session.close()
            self.session = None
        return {"closed": n, "secs": time.monotonic() - started}


async def load(url: str, connections: int, size: int, window: int, warmup: float,
               duration: float, text: bool) -> dict[str, object]:
    rnd = random.Random(size)
    body = "".join(rnd.choices(string.ascii_letters + string.digits, k=size))
    payload: str | bytes = body if text else body.encode()
    kind = WSMsgType.TEXT if text else WSMsgType.BINARY
    phase = [0]  # 0 warm-up, 1 measuring, 2 stopping
    rtts: list[float] = []
    errors: Counter[str] = Counter()
    mismatched = [0]
    perf = time.perf_counter

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        sem = asyncio.Semaphore(64)

        async def connect() -> aiohttp.ClientWebSocketResponse | None:
            async with sem:
                try:
                    async with asyncio.timeout(30):
                        return await session.ws_connect(url, autoping=True, compress=0,
                                                        max_msg_size=MAX_MESSAGE,
                                                        timeout=WS_TIMEOUT)
                except (aiohttp.ClientError, OSError, TimeoutError) as e:
                    errors[error_key(e)] += 1
                    return None

        opened = await asyncio.gather(*(connect() for _ in range(connections)))
        sockets = [ws for ws in opened if ws is not None]
        connect_failed = connections - len(sockets)

        async def worker(ws: aiohttp.ClientWebSocketResponse) -> None:
            send = ws.send_str if text else ws.send_bytes
            sent: deque[float] = deque()
            try:
                for _ in range(window):
                    sent.append(perf())
                    await send(payload)  # type: ignore[arg-type]
                while sent:
                    msg = await ws.receive()
                    now = perf()
                    if msg.type is not kind:
                        errors[f"received {msg.type.name} ({msg.data!r:.60})"] += 1
                        return
                    t0 = sent.popleft()
                    if msg.data != payload:
                        mismatched[0] += 1
                    state = phase[0]
                    if state == 1:
                        rtts.append(now - t0)
                    if state < 2:
                        sent.append(perf())
                        await send(payload)  # type: ignore[arg-type]
            except (aiohttp.ClientError, OSError, RuntimeError) as e:
                errors[error_key(e)] += 1

        workers = [asyncio.ensure_future(worker(ws)) for ws in sockets]
        await asyncio.sleep(warmup)
        phase[0] = 1
        say({"mark": "start"})
        t_start, c_start = perf(), cpu_s()
        await asyncio.sleep(duration)
        phase[0] = 2
        t_end, c_end = perf(), cpu_s()
        say({"mark": "end"})
        _, late = await asyncio.wait(workers, timeout=10)
        for w in late:
            w.cancel()
            errors["echo still missing 10 s after the end"] += 1
        await asyncio.gather(*workers, return_exceptions=True)
        await asyncio.wait([asyncio.ensure_future(ws.close()) for ws in sockets], timeout=10)

    secs = t_end - t_start
    rtts.sort()
    return {"messages": len(rtts), "secs": secs,
            "rtt_ms": [percentile(rtts, q) * 1000 for q in (0.5, 0.99, 1.0)],
            "errors": dict(errors.most_common(5)), "error_count": sum(errors.values()),
            "mismatched": mismatched[0], "cpu_s": c_end - c_start,
            "connect_failed": connect_failed}


async def run() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    idle = Idle()
    say({"pid": os.getpid(), "nofile": raise_nofile()})
    try:
        while line := (await reader.readline()).decode().split():
            cmd, *rest = line
            if cmd == "open":
                say(await idle.open(rest[0], int(rest[1]), int(rest[2])))
            elif cmd == "status":
                say(idle.status())
            elif cmd == "close":
                say(await idle.close())
            elif cmd == "load":
                url, conns, size, window, warm, dur, text = rest
                say(await load(url, int(conns), int(size), int(window), float(warm),
                               float(dur), text == "1"))
            elif cmd == "quit":
                break
            else:
                say({"error": f"unknown command {cmd!r}"})
    finally:
        await idle.close()


def main() -> None:
    run_helper(run())


if __name__ == "__main__":
    main()
