"""An SSE load client for bench/sse.py: holds many idle event streams in one process.

Usage: python bench/_sse_client.py HOST PORT PATH

Raw sockets (asyncio Protocols, uvloop when installed), a hand-written HTTP/1.1 GET and a
small chunked + text/event-stream parser, so each connection costs the client a few
hundred bytes and a broadcast costs it one callback per connection. Driven by bench/sse.py
over stdin/stdout, one command per line, one JSON line per answer:

    open N CONCURRENCY   open N more streams (at most CONCURRENCY connecting at once); a
                         stream counts as open once its 200 head and first event block
                         (the `retry:` hint) arrived  -> {"opened", "failed", "errors", "secs"}
    wait SEQ TIMEOUT     until every open stream received the `bench` event whose data holds
                         {"seq": SEQ}, or TIMEOUT s  -> {"times": [...], "open", "missing"}
    status                                          -> {"open", "lost"}
    close                close every stream         -> {"closed"}
    quit (or EOF)        close and exit

`times` are time.monotonic() values (CLOCK_MONOTONIC: the same clock in every process of
the machine) taken when the event's bytes were handed to this process: at the start of the
data_received callback that completed the event, so before this client parses anything.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter
from typing import cast

from _common import raise_nofile, run_helper

EVENT = b"bench"
SIZE_LINE, CHUNK_END, ENDED = -1, -2, -3  # chunked framing states (else bytes left)


class Stream(asyncio.Protocol):
    """One event stream: head, chunked framing, `field: value` lines, blank-line events."""

    __slots__ = ("app", "transport", "head", "chunked", "raw", "need", "text", "name", "data",
                 "ready", "lost", "got")

    def __init__(self, app: Client, ready: asyncio.Future[None]) -> None:
        self.app = app
        self.transport: asyncio.Transport | None = None
        self.head = True
        self.chunked = False
        self.raw = b""  # undecoded bytes (head or chunk framing)
        self.need = SIZE_LINE  # bytes left in the current chunk, or a state above
        self.text = b""  # decoded body bytes not yet ending in a newline
        self.name = b""
        self.data = b""
        self.ready: asyncio.Future[None] | None = ready
        self.lost = False
        self.got = -1  # the last bench seq received

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's isn't a subclass
        self.transport.write(self.app.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.ready is None:  # was open
            self.app.lost += 1
        self._fail(f"closed before the first event ({exc or 'EOF'})")

    def _fail(self, why: str) -> None:
        if self.ready is not None and not self.ready.done():
            self.ready.set_exception(ConnectionError(why))
        self.ready = None

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        raw = self.raw + data if self.raw else data
        if self.head:
            end = raw.find(b"\r\n\r\n")
            if end < 0:
                self.raw = raw
                return
            head = raw[:end]
            status = head.split(b"\r\n", 1)[0]
            if status.split(b" ", 2)[1:2] != [b"200"]:
                self._fail(status.decode(errors="replace"))
                assert self.transport is not None
                self.transport.close()
                return
            self.chunked = b"transfer-encoding: chunked" in head.lower()
            self.head = False
            raw = raw[end + 4:]
        if not self.chunked:
            self.raw = b""
            self._body(raw, now)
            return
        pos, body = 0, []
        while True:
            need = self.need
            if need == SIZE_LINE:
                eol = raw.find(b"\r\n", pos)
                if eol < 0:
                    break
                size = int(raw[pos:eol].split(b";", 1)[0], 16)
                pos = eol + 2
                self.need = size if size else ENDED  # a 0 chunk: the server ended the stream
            elif need > 0:
                if pos >= len(raw):
                    break
                take = min(need, len(raw) - pos)
                body.append(raw[pos:pos + take])
                pos += take
                self.need = need - take or CHUNK_END
            elif need == CHUNK_END:
                if len(raw) - pos < 2:
                    break
                pos += 2
                self.need = SIZE_LINE
            else:  # ENDED
                pos = len(raw)
                break
        self.raw = raw[pos:]
        if body:
            self._body(b"".join(body), now)

    def _body(self, data: bytes, now: float) -> None:
        text = self.text + data if self.text else data
        pos = 0
        while (eol := text.find(b"\n", pos)) >= 0:
            line = text[pos:eol]
            pos = eol + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                self._event(now)
            elif line[0] != 0x3A:  # ':' starts a comment (heartbeats)
                field, _, value = line.partition(b":")
                value = value[1:] if value.startswith(b" ") else value
                if field == b"event":
                    self.name = value
                elif field == b"data":
                    self.data = self.data + b"\n" + value if self.data else value
        self.text = text[pos:]

    def _event(self, now: float) -> None:
        if self.ready is not None:  # the first block (`retry: …`): the stream is open
            if not self.ready.done():
                self.ready.set_result(None)
            self.ready = None
        if self.name == EVENT and self.data:
            doc = json.loads(self.data)
            inner = doc.get("data", doc) if isinstance(doc, dict) else {}
            seq = inner.get("seq") if isinstance(inner, dict) else None
            if isinstance(seq, int) and seq != self.got:
                self.got = seq
                self.app.arrivals.setdefault(seq, []).append(now)
        self.name = self.data = b""


class Client:
    def __init__(self, host: str, port: int, path: str) -> None:
        self.host, self.port = host, port
        self.request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                        "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n").encode()
        self.streams: list[Stream] = []
        self.arrivals: dict[int, list[float]] = {}
        self.lost = 0

    async def open(self, n: int, concurrency: int) -> dict[str, object]:
        loop = asyncio.get_running_loop()
        sem = asyncio.Semaphore(concurrency)
        errors: Counter[str] = Counter()
        started = time.monotonic()

        async def one() -> None:
            async with sem:
                ready: asyncio.Future[None] = loop.create_future()
                try:
                    _, proto = await loop.create_connection(
                        lambda: Stream(self, ready), self.host, self.port)
                    async with asyncio.timeout(15):
                        await ready
                except (OSError, TimeoutError) as e:
                    errors[f"{type(e).__name__}: {e}"[:120]] += 1
                    return
                self.streams.append(proto)

        before = len(self.streams)
        await asyncio.gather(*(one() for _ in range(n)))
        return {"opened": len(self.streams) - before, "failed": sum(errors.values()),
                "errors": dict(errors.most_common(5)), "secs": time.monotonic() - started}

    def alive(self) -> list[Stream]:
        return [s for s in self.streams if not s.lost]

    async def wait(self, seq: int, timeout: float) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while True:
            alive = self.alive()
            missing = sum(1 for s in alive if s.got != seq)
            if not missing or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.02)
        return {"times": self.arrivals.pop(seq, []), "open": len(alive), "missing": missing}

    def close(self) -> dict[str, object]:
        n = 0
        for s in self.streams:
            if s.transport is not None and not s.transport.is_closing():
                s.transport.close()
                n += 1
        self.streams.clear()
        return {"closed": n}


async def run(host: str, port: int, path: str) -> None:
    loop = asyncio.get_running_loop()
    client = Client(host, port, path)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def say(doc: dict[str, object]) -> None:
        sys.stdout.write(json.dumps(doc) + "\n")
        sys.stdout.flush()

    say({"pid": os.getpid(), "nofile": raise_nofile()})
    try:
        while line := (await reader.readline()).decode().split():
            cmd, *rest = line
            if cmd == "open":
                say(await client.open(int(rest[0]), int(rest[1])))
            elif cmd == "wait":
                say(await client.wait(int(rest[0]), float(rest[1])))
            elif cmd == "status":
                say({"open": len(client.alive()), "lost": client.lost})
            elif cmd == "close":
                say(client.close())
                await asyncio.sleep(0.1)  # let the FINs go out
            elif cmd == "quit":
                break
            else:
                say({"error": f"unknown command {cmd!r}"})
    finally:
        client.close()


def main() -> None:
    host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    run_helper(run(host, port, path))


if __name__ == "__main__":
    main()
