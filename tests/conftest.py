"""Shared fixtures: real upstream servers on loopback and an edge built from YAML text."""

from __future__ import annotations

import io
import os
import socket
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import RawTestServer, TestClient
from aiohttp.web_runner import ServerRunner

from edge.app import EdgeApp
from edge.config import Config, load_config

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
JWT_SECRET = "test-secret-" + "0123456789abcdef" * 4


def write_config(root: Path, edge_yaml: str, routes: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "edge.yaml").write_text(textwrap.dedent(edge_yaml))
    (root / "routes").mkdir(exist_ok=True)
    for name, text in routes.items():
        (root / "routes" / name).write_text(textwrap.dedent(text))
    return root


def services_yaml(services: dict[str, str], extra: str = "") -> str:
    """edge.yaml with the given services (name → base URL) and optional extra YAML."""
    lines = ["services:"]
    for name, url in services.items():
        lines.append(f"  {name}:")
        lines.append(f"    url: {url}")
    return "\n".join(lines) + "\n" + textwrap.dedent(extra)


def free_port() -> int:
    """A port nothing listens on (for 'upstream down' and for servers a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def catch_all(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
              ) -> web.Application:
    """An upstream app answering every method and path with `handler`."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


def headers_echo_app() -> web.Application:
    """An upstream that answers with the request headers it received."""

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"headers": dict(request.headers)})

    return catch_all(echo)


class EdgeTestServer(RawTestServer):
    """Serves with the edge's own server (its header and connection guards, its aiohttp
    settings), as `edge serve` does; RawTestServer would make a plain one."""

    def __init__(self, edge: EdgeApp, **kw: Any) -> None:
        super().__init__(edge.handler.handle, **kw)
        self.edge = edge

    async def _make_runner(self, debug: bool = True, **kwargs: Any) -> ServerRunner:
        srv = self.edge.make_server(loop=self._loop, debug=debug, **kwargs)
        return ServerRunner(srv, debug=debug)


EdgeFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def make_edge(tmp_path: Path, aiohttp_client: Any) -> Any:
    """Build an edge from YAML text and return a test client talking to it over HTTP.

    The client's `.edge` is the EdgeApp (its state, metrics and reloader).
    """
    started: list[EdgeApp] = []

    async def factory(edge_yaml: str, routes: dict[str, str], *, env: dict[str, str] | None
                      = None, watch: bool = False, root: Path | None = None,
                      **client_kw: Any) -> TestClient[Any, Any]:
        root = write_config(root or tmp_path / "config", edge_yaml, routes)
        env = {"EDGE_JWT_SECRET": JWT_SECRET, **(env or {})}
        config: Config = load_config(root, env)
        edge = EdgeApp(config, env=env, watch=watch, access_log=io.BytesIO())
        await edge.start()
        started.append(edge)
        client = await aiohttp_client(EdgeTestServer(edge),
                                      **client_kw)
        client.edge = edge
        return client

    yield factory
    for edge in started:
        await edge.close()


@pytest.fixture
def upstream(aiohttp_server: Any) -> Callable[[web.Application], Awaitable[str]]:
    """Start an aiohttp app as a real upstream on loopback; returns its base URL."""

    async def start(app: web.Application) -> str:
        server = await aiohttp_server(app)
        return str(server.make_url("")).rstrip("/")

    return start
