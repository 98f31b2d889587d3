"""Run the demo upstream services, each on its own port.

    python -m edge.demo.upstreams [--host 127.0.0.1] [--port-base 9100]
                                  [--ports members=9101,claims=9102,...] [--push-port N]
                                  [--child]

`edge demo` runs them this way, in a process of their own (`--child`: a line `ready`
once every port is bound, or `error: ...` and exit 3; and an exit when the parent's end
of stdin closes, so they never outlive the edge), so the edge's process holds only the
edge and a demo service's CPU never shows in the edge's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from aiohttp import web

from edge.demo.data import get_dataset
from edge.demo.services import SERVICES
from edge.errors import os_reason

DEFAULT_PORTS: dict[str, int] = {
    "members": 9101,
    "claims": 9102,
    "providers": 9103,
    "benefits": 9104,
    "policies": 9105,
    "notifications": 9106,
    "chaos": 9109,
}
_DEFAULT_BASE = 9100


@dataclass(frozen=True)
class Upstream:
    """A started service: its name, base URL (``http://127.0.0.1:9101``) and runner."""

    name: str
    url: str
    runner: web.AppRunner


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError("service is not listening on a TCP port")


async def start_upstreams(
    ports: Mapping[str, int] | None = None, host: str = "127.0.0.1"
) -> list[Upstream]:
    """Start the services named in ``ports`` (default: all, on ``DEFAULT_PORTS``).

    Port 0 picks a free port; the returned ``Upstream.url`` has the bound one.
    """
    ports = DEFAULT_PORTS if ports is None else ports
    unknown = sorted(set(ports) - set(SERVICES))
    if unknown:
        known = ", ".join(SERVICES)
        raise ValueError(f"unknown demo services: {', '.join(unknown)}; known: {known}")
    await asyncio.to_thread(get_dataset)
    url_host = f"[{host}]" if ":" in host else host
    started: list[Upstream] = []
    try:
        for name, port in ports.items():
            runner = web.AppRunner(SERVICES[name](), access_log=None)
            await runner.setup()
            try:
                await web.TCPSite(runner, host, port).start()
            except BaseException:
                await runner.cleanup()
                raise
            started.append(Upstream(name, f"http://{url_host}:{_bound_port(runner)}", runner))
    except BaseException:
        await stop_upstreams(started)
        raise
    return started


async def stop_upstreams(upstreams: Iterable[Upstream]) -> None:
    """Stop services started by ``start_upstreams`` (concurrently: each takes a moment)."""
    await asyncio.gather(*(upstream.runner.cleanup() for upstream in upstreams))


async def _serve(host: str, ports: Mapping[str, int], push_port: int | None = None,
                 child: bool = False) -> None:
    try:
        upstreams = await start_upstreams(ports, host)
    except OSError as e:
        if not child:
            raise
        print(f"error: {os_reason(e)}", flush=True)
        raise SystemExit(3) from None
    pusher = None
    try:
        if push_port is not None:
            from edge.demo.pushservice import push_service_app

            pusher = web.AppRunner(push_service_app(), access_log=None)
            await pusher.setup()
            try:
                await web.TCPSite(pusher, "127.0.0.1", push_port).start()
            except OSError as e:
                print(f"error: the push service's port {push_port}: {os_reason(e)}",
                      flush=True)
                raise SystemExit(3) from None
        width = max(len(upstream.name) for upstream in upstreams)
        if not child:
            for upstream in upstreams:
                print(f"{upstream.name:<{width}}  {upstream.url}", flush=True)
            print("demo upstreams running; Ctrl-C to stop", flush=True)
        else:
            print("ready", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):  # not on Windows
                loop.add_signal_handler(signum, stop.set)
        if child:  # the parent's end of our stdin closes when it exits, however it exits
            def watch() -> None:
                sys.stdin.buffer.read()
                loop.call_soon_threadsafe(stop.set)

            threading.Thread(target=watch, name="parent-watch", daemon=True).start()
        await stop.wait()
    finally:
        if pusher is not None:
            await pusher.cleanup()
        await stop_upstreams(upstreams)


def _ports(value: str) -> dict[str, int]:
    try:
        pairs = (part.split("=", 1) for part in value.split(",") if part)
        return {name.strip(): int(port) for name, port in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError("NAME=PORT,NAME=PORT,...") from None


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: start every service and serve until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m edge.demo.upstreams", description="Run the edge demo upstream services."
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument(
        "--port-base",
        type=int,
        default=_DEFAULT_BASE,
        help="members listens on base+1, claims on base+2, ..., chaos on base+9 "
        f"(default {_DEFAULT_BASE})",
    )
    parser.add_argument("--ports", type=_ports, default=None,
                        help="NAME=PORT,... : just these services, on these ports")
    parser.add_argument("--push-port", type=int, default=None,
                        help="also the demo's Web Push service, on 127.0.0.1:PORT")
    parser.add_argument("--child", action="store_true",
                        help="run for `edge demo`: say `ready`, end with stdin")
    args = parser.parse_args(argv)
    offset = args.port_base - _DEFAULT_BASE
    ports = args.ports if args.ports is not None else {
        name: port + offset for name, port in DEFAULT_PORTS.items()}
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, ports, args.push_port, args.child))


if __name__ == "__main__":
    main()
