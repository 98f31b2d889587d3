"""A raw-socket upstream for wire-level tests: it records the bytes and the requests it
parses itself (Content-Length and chunked framing, strictly), so a test sees exactly what
the edge sent, not what a forgiving HTTP library made of it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class WireRequest:
    line: str  # "GET /x HTTP/1.1"
    headers: list[tuple[str, str]]  # as received: names not normalised
    body: bytes
    connection: int  # which connection (0, 1, ...) carried it

    @property
    def method(self) -> str:
        return self.line.split(" ", 1)[0]

    @property
    def target(self) -> str:
        return self.line.split(" ")[1]

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


@dataclass
class RawUpstream:
    """`early=True` answers as soon as a request's head is in, then reads (and discards)
    the body its framing promises, as some servers do: the case where a wrong
    Content-Length makes the next request's head vanish into this one's body."""

    early: bool = False
    body: bytes = b'{"ok":true}'
    content_type: str = "application/json"
    extra_headers: list[tuple[str, str]] = field(default_factory=list)
    requests: list[WireRequest] = field(default_factory=list)
    raw: list[bytearray] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def start(self) -> RawUpstream:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def answer(self, request: WireRequest) -> bytes:
        head = ["HTTP/1.1 200 OK", f"Content-Type: {self.content_type}",
                f"Content-Length: {len(self.body)}"]
        head += [f"{k}: {v}" for k, v in self.extra_headers]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + self.body

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = len(self.raw)
        buf = bytearray()
        self.raw.append(buf)

        async def read_until(marker: bytes) -> bytes:
            data = await reader.readuntil(marker)
            buf.extend(data)
            return data

        async def read_exactly(n: int) -> bytes:
            data = await reader.readexactly(n)
            buf.extend(data)
            return data

        try:
            while True:
                try:
                    head = await read_until(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head[:-4].decode("latin-1").split("\r\n")
                headers = []
                for raw_line in lines[1:]:
                    name, sep, value = raw_line.partition(":")
                    if not sep:
                        self.errors.append(f"bad header line {raw_line!r}")
                        writer.close()
                        return
                    headers.append((name, value.strip()))
                req = WireRequest(lines[0], headers, b"", conn)
                if not lines[0].endswith(" HTTP/1.1") or lines[0].count(" ") != 2:
                    self.errors.append(f"bad request line {lines[0]!r}")
                chunked = any(v.lower() == "chunked" for v in req.all("Transfer-Encoding"))
                lengths = req.all("Content-Length")
                if self.early:
                    self.requests.append(req)
                    writer.write(self.answer(req))
                    await writer.drain()
                body = bytearray()
                if chunked:
                    while True:
                        size_line = await read_until(b"\r\n")
                        size = int(size_line.split(b";")[0].strip(), 16)
                        if size == 0:
                            await read_until(b"\r\n")  # no trailers expected
                            break
                        body += await read_exactly(size)
                        await read_exactly(2)
                elif lengths:
                    body += await read_exactly(int(lengths[0]))
                req.body = bytes(body)
                if not self.early:
                    self.requests.append(req)
                    writer.write(self.answer(req))
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as e:
            self.errors.append(f"{type(e).__name__}: {e}")
        finally:
            writer.close()


async def raw_exchange(host: str, port: int, data: bytes, *, timeout: float = 5.0,
                       until_closed: bool = False) -> bytes:
    """Send raw bytes to a server; return what came back (one read after the head, or
    everything until the server closes)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        await writer.drain()
        out = bytearray()
        async with asyncio.timeout(timeout):
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                out += chunk
                if not until_closed and b"\r\n\r\n" in out:
                    head, _, rest = bytes(out).partition(b"\r\n\r\n")
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            if len(rest) >= int(line.split(b":")[1]):
                                return bytes(out)
        return bytes(out)
    finally:
        writer.close()
