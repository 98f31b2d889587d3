"""A line-at-a-time WebSocket client, for trying the demo's WebSocket routes by hand:

    python -m edge.demo.wsclient ws://127.0.0.1:8080/api/v1/support/chat \\
        -H "Authorization: Bearer $TOKEN" [-p chat.v1]

Each line typed is sent as a text message; every message received is printed; the close
code and reason are printed at the end."""

from __future__ import annotations

import argparse
import asyncio
import sys

import aiohttp


async def main(url: str, headers: dict[str, str], protocols: list[str]) -> int:
    async with aiohttp.ClientSession() as session:
        try:
            ws = await session.ws_connect(url, headers=headers, protocols=protocols)
        except aiohttp.WSServerHandshakeError as e:
            print(f"refused: {e.status} {e.message}", file=sys.stderr)
            return 1
        except aiohttp.ClientError as e:
            print(f"could not connect: {e}", file=sys.stderr)
            return 1
        print(f"connected (subprotocol: {ws.protocol or '-'}); type lines, Ctrl-D ends",
              file=sys.stderr)
        loop = asyncio.get_running_loop()

        async def typed() -> None:
            while True:
                line = await loop.run_in_executor(None, sys.stdin.readline)
                if not line:
                    await ws.close()
                    return
                await ws.send_str(line.rstrip("\n"))

        sender = asyncio.ensure_future(typed())
        async for msg in ws:
            print(msg.data if msg.type is aiohttp.WSMsgType.TEXT else repr(msg.data),
                  flush=True)
        sender.cancel()
        print(f"closed: {ws.close_code}", file=sys.stderr)
        return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m edge.demo.wsclient")
    parser.add_argument("url")
    parser.add_argument("-H", "--header", action="append", default=[])
    parser.add_argument("-p", "--protocol", action="append", default=[])
    args = parser.parse_args()
    given = dict(h.split(":", 1) for h in args.header)
    raise SystemExit(asyncio.run(main(args.url, {k.strip(): v.strip() for k, v in
                                                 given.items()}, args.protocol)))
