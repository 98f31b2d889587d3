"""Every way `edge` can fail to start is one line a person can act on, with a documented
exit code, and never a traceback: the CLI run as a user runs it (a subprocess)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import free_port

REPO = Path(__file__).resolve().parent.parent
SECRET = "s" * 40


def edge(*args: str, env: dict[str, str] | None = None, timeout: float = 30,
         unset: tuple[str, ...] = ("EDGE_JWT_SECRET", "EDGE_REDIS_URL")
         ) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in unset}
    return subprocess.run([sys.executable, "-m", "edge", *args], env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def clean(out: subprocess.CompletedProcess[str]) -> None:
    """Nothing a user shouldn't see: no traceback, no asyncio or aiohttp warnings."""
    for text in (out.stdout, out.stderr):
        assert "Traceback" not in text and "Unclosed" not in text, text


def copy_config(tmp_path: Path, extra: str = "") -> Path:
    root = tmp_path / "config"
    shutil.copytree(REPO / "config", root)
    text = (root / "edge.yaml").read_text()
    (root / "edge.yaml").write_text(text.replace("backend:\n", f"backend:\n{extra}", 1))
    return root


def test_serve_without_the_secret_names_the_env_var_and_the_yaml_key() -> None:
    out = edge("serve", "--config", "config", "--port", "0")
    assert out.returncode == 1
    clean(out)
    first, last = out.stderr.strip().splitlines()
    assert re.match(r"config/edge\.yaml:\d+:\d+: error: auth\.jwt\.secret_env: the env var "
                    r"EDGE_JWT_SECRET is not set", first), first
    assert last == "edge: 1 problem(s) in config"


def test_a_short_secret_is_refused_by_check_and_serve() -> None:
    for args in (("serve", "--config", "config", "--port", "0"), ("check", "config")):
        out = edge(*args, env={"EDGE_JWT_SECRET": "short"})
        assert out.returncode == 1
        clean(out)
        assert "EDGE_JWT_SECRET holds 5 bytes; HS256 needs a secret of at least 32" \
            in out.stdout + out.stderr


def test_check_knows_the_environment_unless_told_not_to() -> None:
    assert edge("check", "config").returncode == 1
    assert edge("check", "config", env={"EDGE_JWT_SECRET": SECRET}).returncode == 0
    skipped = edge("check", "--no-env", "config")
    assert skipped.returncode == 0 and "ok (" in skipped.stdout


def test_a_bad_redis_url_and_an_unreadable_jwks_file_are_config_problems(
        tmp_path: Path) -> None:
    out = edge("check", "config", env={"EDGE_JWT_SECRET": SECRET,
                                       "EDGE_REDIS_URL": "localhost:6379"})
    assert out.returncode == 1
    assert "backend.redis_url_env: EDGE_REDIS_URL is not a Redis URL" in out.stdout
    assert "localhost:6379" not in out.stdout  # a URL may hold a password
    for fine in ("redis+cluster://127.0.0.1:7000,127.0.0.1:7001", "rediss://u:p@h:6380/0"):
        assert edge("check", "config", env={"EDGE_JWT_SECRET": SECRET,
                                            "EDGE_REDIS_URL": fine}).returncode == 0, fine
    root = copy_config(tmp_path)
    text = (root / "edge.yaml").read_text()
    (root / "edge.yaml").write_text(text.replace(
        "    leeway: 30s\n", "    leeway: 30s\n    jwks_file: jwks.json\n", 1))
    out = edge("check", str(root), env={"EDGE_JWT_SECRET": SECRET})
    assert out.returncode == 1, out.stdout
    assert re.search(r"edge\.yaml:\d+:\d+: error: auth\.jwt\.jwks_file: no such file "
                     r"'jwks\.json'", out.stdout), out.stdout
    (root / "jwks.json").write_text("{not json")
    out = edge("serve", "--config", str(root), "--port", "0",
               env={"EDGE_JWT_SECRET": SECRET})
    assert out.returncode == 1
    clean(out)
    assert re.search(r"edge\.yaml:\d+:\d+: error: auth\.jwt\.jwks_file: .*jwks\.json is "
                     r"not a JSON Web Key Set", out.stderr), out.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_one_line_and_exit_3(workers: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        out = edge("serve", "--config", "config", "--port", port, "--workers", workers,
                   env={"EDGE_JWT_SECRET": SECRET})
    assert out.returncode == 3
    clean(out)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == int(workers)  # one per worker process
    assert lines[0] == (f"edge: cannot listen on 127.0.0.1:{port}: address already in use "
                        "(listen: in edge.yaml, or --host/--port)")


def wait_ready(port: int, proc: subprocess.Popen[str]) -> None:
    for _ in range(150):
        assert proc.poll() is None, proc.communicate()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the edge never answered /health")


def test_redis_away_at_start_degrades_or_refuses_as_configured(tmp_path: Path) -> None:
    away = {"EDGE_JWT_SECRET": SECRET, "EDGE_REDIS_URL": "redis://user:pw@127.0.0.1:1/0"}
    refusing = copy_config(tmp_path / "r", "  at_start: refuse\n")
    out = edge("serve", "--config", str(refusing), "--port", "0", env=away)
    assert out.returncode == 4
    clean(out)
    assert "edge: Redis at redis://127.0.0.1:1/0 did not answer at start " \
        "(backend.at_start: refuse)" in out.stderr
    assert "pw" not in out.stderr
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if k != "EDGE_REDIS_URL"}, **away}
    proc = subprocess.Popen([sys.executable, "-m", "edge", "serve", "--config", "config",
                             "--port", str(port)], env=env, cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_ready(port, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=40)
    assert proc.returncode == 0
    assert "did not answer at start: serving degraded" in stderr
    assert "Traceback" not in stderr and "pw@" not in stderr


def test_version_and_routes_fit_a_terminal() -> None:
    version = edge("--version")
    assert version.returncode == 0 and re.match(r"edge \d+\.\d+", version.stdout)
    table = edge("routes").stdout.splitlines()
    assert table[0].split() == ["ROUTE", "SOURCE", "AUTH", "CACHE"]
    assert max(len(line) for line in table) <= 100
    wide = edge("routes", "--wide").stdout.splitlines()
    assert wide[0].split() == ["ROUTE", "SOURCE", "AUTH", "QUERY", "CACHE", "FILE"]
    assert any(len(line) > 100 for line in wide)
    routes = json.loads(edge("routes", "--json").stdout)
    names = {r["route"] for r in routes}
    assert "GET /api/v1/members/{member_id}" in names
    member = next(r for r in routes if r["route"] == "GET /api/v1/members/{member_id}")
    assert member["file"].startswith("config/routes/") and member["kind"] == "shaped"
    assert member["example"] == "/api/v1/members/1001"


def test_ctrl_c_after_an_image_request_ends_quietly(tmp_path: Path) -> None:
    root = tmp_path / "config"
    shutil.copytree(REPO / "config", root)
    text = (root / "edge.yaml").read_text()
    text = re.sub(r"127\.0\.0\.1:91\d\d", lambda m: f"127.0.0.1:{free_port()}", text)
    (root / "edge.yaml").write_text(text)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("EDGE_JWT_SECRET",
                                                            "EDGE_REDIS_URL")}
    proc = subprocess.Popen([sys.executable, "-m", "edge", "demo", "--config", str(root),
                             "--port", str(port)], env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        wait_ready(port, proc)
        url = f"http://127.0.0.1:{port}/img/providers/PRV-001/photos/1.jpg"
        with urllib.request.urlopen(url, timeout=30) as r:
            assert r.status == 200 and len(r.read()) > 1000
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole group
        _, stderr = proc.communicate(timeout=40)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr


def test_demo_with_a_busy_upstream_port_says_so(tmp_path: Path) -> None:
    """A demo upstream's port already taken: one line and exit 3 (can't listen), not an
    internal error."""
    root = tmp_path / "config"
    shutil.copytree(REPO / "config", root)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        text = (root / "edge.yaml").read_text()
        text = re.sub(r"127\.0\.0\.1:91\d\d", lambda m: f"127.0.0.1:{free_port()}", text)
        text = re.sub(r"(members:\n    url: http://127\.0\.0\.1:)\d+", rf"\g<1>{taken}", text)
        (root / "edge.yaml").write_text(text)
        env = {k: v for k, v in os.environ.items() if k not in ("EDGE_JWT_SECRET",
                                                                "EDGE_REDIS_URL")}
        done = subprocess.run([sys.executable, "-m", "edge", "demo", "--config", str(root),
                               "--port", str(free_port())], env=env, capture_output=True,
                              text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(
        "edge: cannot start the demo's upstreams: address already in use"), done.stderr


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_the_demo_upstreams_run_in_their_own_process_and_end_with_it(
        tmp_path: Path, how: str) -> None:
    """The edge's process holds only the edge; its demo upstreams never outlive it, even
    when it is killed outright."""
    root = tmp_path / "config"
    shutil.copytree(REPO / "config", root)
    text = (root / "edge.yaml").read_text()
    text = re.sub(r"127\.0\.0\.1:91\d\d", lambda m: f"127.0.0.1:{free_port()}", text)
    (root / "edge.yaml").write_text(text)
    members = int(re.search(r"members:\n    url: http://127\.0\.0\.1:(\d+)", text)[1])
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("EDGE_JWT_SECRET",
                                                            "EDGE_REDIS_URL")}
    proc = subprocess.Popen([sys.executable, "-m", "edge", "demo", "--config", str(root),
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_ready(port, proc)
        kids = [c for c in _children(proc.pid)
                if b"edge.demo.upstreams" in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert len(kids) == 1
        with urllib.request.urlopen(f"http://127.0.0.1:{members}/members/1001",
                                    timeout=10) as r:
            assert r.status == 200  # served by that process
        os.kill(proc.pid, getattr(signal, how))  # the edge alone, not its group
        proc.wait(30)
        for _ in range(100):
            if not Path(f"/proc/{kids[0]}").exists() or \
                    Path(f"/proc/{kids[0]}/stat").read_text().split(") ")[1][0] == "Z":
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the demo upstreams outlived the edge")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
