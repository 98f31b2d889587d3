"""Shared fixtures: real upstream servers on loopback and an edge built from YAML text."""

from __future__ import annotations

import asyncio
import functools
import io
import os
import random
import shutil
import socket
import subprocess
import textwrap
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import RawTestServer, TestClient
from aiohttp.web_runner import ServerRunner
from blockbuster import BlockBuster, blockbuster_ctx

import edge as edge_package
from edge.app import EdgeApp
from edge.config import Config, load_config

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# The Redis-backed tests run on REDIS_URL's Redis and on a Redis Cluster: this one, or when
# it is unset, three redis-servers the session starts on loopback (tests/redis_cluster.py)
REDIS_CLUSTER_URL = os.environ.get("REDIS_CLUSTER_URL")
JWT_SECRET = "test-secret-" + "0123456789abcdef" * 4


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    """A blocking call (files, sockets, sleep, subprocesses, locks…) on the event loop's
    thread while it runs fails the test when the edge's code made it: the edge and images
    packages are scanned, as aiohttp's own tests scan aiohttp. The tests' own set-up
    (writing config files, starting redis-server) is not the product, and not scanned."""
    with blockbuster_ctx(["edge", "images"]) as bb:
        # A log line goes to its handler at once (pytest's capture here; a StreamHandler
        # on stderr under `edge serve`): only warnings and errors, never per request.
        for func in ("io.TextIOWrapper.write", "io.BufferedWriter.write"):
            bb.functions[func].can_block_in("logging/__init__.py", {"emit", "flush"})
        # /metrics reads the process's own figures from procfs (memory, not a disk)
        for func in ("io.BufferedReader.read", "os.listdir"):
            bb.functions[func].can_block_in("prometheus_client/process_collector.py",
                                            {"collect"})
        yield bb


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


def bearer(sub: str, roles: list[str] | None = None) -> dict[str, str]:
    """An Authorization header with a test token (HS256, JWT_SECRET, ten minutes)."""
    claims = {"sub": sub, "exp": int(time.time()) + 600, "roles": roles or ["member"]}
    return {"Authorization": "Bearer " + jwt.encode(claims, JWT_SECRET, algorithm="HS256")}


def types_of(doc: Any) -> Any:
    """A document with every leaf replaced by its type: `1.0 == 1` but float is not int."""
    if isinstance(doc, dict):
        return {k: types_of(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [types_of(v) for v in doc]
    return type(doc)


REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A port nothing listens on (for 'upstream down' and for servers a test starts).

    Picked below the kernel's ephemeral range, where the OS hands out ports itself (for
    every outgoing connection, and for bind(0)): a port from that range can be taken by
    someone's connection between this call and the bind that uses it, which made
    `edge demo` in tests fail now and then with "address already in use"."""
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(max(1024, low - 12_000), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # (a crowded range: the kernel's pick, as before)
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@functools.cache
def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


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


EDGE_CODE = str(Path(edge_package.__file__).parent)


def edge_tasks() -> list[asyncio.Task[Any]]:
    """Tasks running the edge's own code (a coroutine of the edge package at their top),
    not yet done."""
    out = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        if (task is not asyncio.current_task() and not task.done() and code is not None
                and code.co_filename.startswith(EDGE_CODE)):
            out.append(task)
    return out


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


class FakeClock:
    """The one thing tests fake: the time, moving only when told. Called, it is the wall
    clock (cache entries' times and purges), starting at the real time since those meet
    other instances' in Redis; `monotonic()` is the interval clock (rate limits, TTLs in
    memory), small numbers as time.monotonic's are: at 1.7e9 a float's step is 2e-7 s,
    too coarse for the rate limiter's arithmetic."""

    def __init__(self) -> None:
        self.start = time.time()
        self.elapsed = 0.0

    def __call__(self) -> float:
        return self.start + self.elapsed

    def monotonic(self) -> float:
        return 1000.0 + self.elapsed

    def advance(self, seconds: float) -> None:
        self.elapsed += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make_edge(tmp_path: Path, aiohttp_client: Any) -> Any:
    """Build an edge from YAML text and return a test client talking to it over HTTP.

    The client's `.edge` is the EdgeApp (its state, metrics and reloader). `clock=` a
    FakeClock makes its cache and rate limits keep that time.
    """
    started: list[EdgeApp] = []

    async def factory(edge_yaml: str, routes: dict[str, str], *, env: dict[str, str] | None
                      = None, watch: bool = False, root: Path | None = None,
                      clock: FakeClock | None = None,
                      **client_kw: Any) -> TestClient[Any, Any]:
        root = write_config(root or tmp_path / "config", edge_yaml, routes)
        env = {"EDGE_JWT_SECRET": JWT_SECRET, **(env or {})}
        config: Config = await asyncio.to_thread(load_config, root, env)
        edge = EdgeApp(config, env=env, watch=watch, access_log=io.BytesIO(), clock=clock,
                       monotonic=clock.monotonic if clock is not None else None)
        await edge.start()
        started.append(edge)
        client = await aiohttp_client(EdgeTestServer(edge),
                                      **client_kw)
        client.edge = edge
        return client

    yield factory
    for edge in started:
        await edge.close()
    if started:  # every background task is its owner's, and ends with it
        assert edge_tasks() == []


@pytest.fixture
def upstream(aiohttp_server: Any) -> Callable[[web.Application], Awaitable[str]]:
    """Start an aiohttp app as a real upstream on loopback; returns its base URL."""

    async def start(app: web.Application) -> str:
        server = await aiohttp_server(app)
        return str(server.make_url("")).rstrip("/")

    return start


def _self_signed(root: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (its own CA) and its key, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edge tests")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = root / "redis.crt", root / "redis.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Redis Cluster's URL (`redis+cluster://`): REDIS_CLUSTER_URL's, or a three-node
    cluster on loopback started once for the session and stopped after it. Never skipped:
    without redis-server, the tests that need it fail and say why."""
    if REDIS_CLUSTER_URL:
        yield REDIS_CLUSTER_URL
        return
    from .redis_cluster import running

    with running(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster.url


def shared_redis(request: pytest.FixtureRequest, kind: str) -> str:
    """The URL of a shared Redis kind: `redis` (REDIS_URL) or `cluster` (the session's)."""
    if kind == "cluster":
        return str(request.getfixturevalue("redis_cluster"))
    assert kind == "redis", kind
    return REDIS_URL


@pytest.fixture(params=["memory", "redis", "cluster"])
def backend_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The env of an edge on each backend in turn: in memory, on one Redis, on the
    cluster (each test that takes it runs three times)."""
    if request.param == "memory":
        return {}
    return {"EDGE_REDIS_URL": shared_redis(request, request.param)}


@pytest.fixture(params=["redis", "cluster"])
def redis_url(request: pytest.FixtureRequest) -> str:
    """The Redis a Redis-backed test shares state through; each such test runs twice: on
    one Redis (REDIS_URL) and on the Redis Cluster."""
    return shared_redis(request, request.param)


@pytest.fixture(params=["redis", "rediss"])
def private_redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A redis-server of the test's own on a free port, open only to the ACL user `edge`
    (password `s3cret`; the default user is off), over TLS for `rediss`; yields its URL,
    naming database 3 (and for TLS the CA file, so the certificate is checked)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    args = [binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir",
            str(tmp_path), "--user", "default", "off", "--user", "edge", "on", ">s3cret",
            "~*", "&*", "+@all"]
    url = f"redis://edge:s3cret@127.0.0.1:{port}/3"
    if request.param == "rediss":
        cert, key = _self_signed(tmp_path)
        args += ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert),
                 "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
                 "--tls-auth-clients", "no"]
        url = f"rediss://edge:s3cret@127.0.0.1:{port}/3?ssl_ca_certs={cert}"
    else:
        args += ["--port", str(port)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"redis-server did not start on port {port}")
                time.sleep(0.02)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
async def demo(tmp_path: Path) -> Any:
    """The repo's config/ (copied to tmp_path / "config") with every port moved to a free
    one, run by `edge demo`; yields its base URL and a client session. Its stdout (the
    access log) and stderr are kept in tmp_path / "demo.out" and "demo.err"."""
    import re
    import signal
    import sys

    import aiohttp

    root = tmp_path / "config"
    shutil.copytree(REPO / "config", root)
    edge_yaml = root / "edge.yaml"
    text = re.sub(r"127\.0\.0\.1:91\d\d", lambda m: f"127.0.0.1:{free_port()}",
                  edge_yaml.read_text())
    edge_yaml.write_text(text)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("EDGE_JWT_SECRET",
                                                            "EDGE_REDIS_URL")}
    with (tmp_path / "demo.out").open("wb") as out, (tmp_path / "demo.err").open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "edge", "demo", "--config", str(root),
                                 "--port", str(port)], env=env, stdout=out, stderr=err)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(150):
                try:
                    async with s.get(f"{base}/ready") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert proc.poll() is None, "edge demo exited: " + (
                    tmp_path / "demo.err").read_text()[-2000:]
                await asyncio.sleep(0.1)
            yield base, s
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        finally:
            if proc.poll() is None:
                proc.kill()
