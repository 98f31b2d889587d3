"""A real Redis Cluster on loopback for the tests: three redis-server processes, one
primary each (no replicas), joined by `redis-cli --cluster create`.

`conftest.redis_cluster` starts one for the whole test session (unless REDIS_CLUSTER_URL
names one already running); a test may start its own (TLS, ACL users) with `running()`.
Run directly, it starts one and waits: `python -m tests.redis_cluster` prints its URL.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

NODES = 3


@dataclass
class Cluster:
    ports: list[int]
    url: str  # redis+cluster:// or rediss+cluster://, every node named
    cli: list[str]  # redis-cli and the options to reach a node (add `-p PORT`)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def node(self, i: int, *command: str) -> str:
        """A redis-cli command on node `i`; its output."""
        out = subprocess.run([*self.cli, "-p", str(self.ports[i]), *command],
                             capture_output=True, timeout=10, check=True)
        return out.stdout.decode()


def _free_ports(n: int) -> list[int]:
    """`n` ports nothing listens on (held open together, so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _die_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM when the test run that started it dies,
    so a killed run leaves no cluster behind."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def running(root: Path, *, tls: tuple[Path, Path] | None = None,
            user: tuple[str, str] | None = None, timeout: float = 30.0) -> Iterator[Cluster]:
    """Three cluster-enabled redis-servers under `root` (their nodes files and logs), made
    one cluster; stopped (and their files left for a post-mortem) on the way out.

    `tls` = (certificate, key), the certificate its own CA: every node speaks TLS only,
    the cluster bus too. `user` = (name, password): the only ACL user (the default user is
    off). The URL says both (and the CA file to check the certificate with)."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        raise RuntimeError("redis-server and redis-cli are needed for the Redis Cluster tests "
                           "(apt-get install redis-server)")
    root.mkdir(parents=True, exist_ok=True)
    ports = _free_ports(2 * NODES)
    ports, bus = ports[:NODES], ports[NODES:]
    cli_args = [cli]
    if tls is not None:
        cli_args += ["--tls", "--cacert", str(tls[0])]
    if user is not None:
        cli_args += ["--user", user[0], "--pass", user[1], "--no-auth-warning"]
    cluster = Cluster(ports, "", cli_args)
    try:
        for port, bus_port in zip(ports, bus, strict=True):
            args = [server, "--cluster-enabled", "yes",
                    "--cluster-config-file", str(root / f"nodes-{port}.conf"),
                    "--cluster-port", str(bus_port), "--cluster-node-timeout", "5000",
                    "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                    "--dir", str(root), "--logfile", str(root / f"redis-{port}.log")]
            if tls is not None:
                cert, key = tls
                args += ["--port", "0", "--tls-port", str(port), "--tls-cluster", "yes",
                         "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                         "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"]
            else:
                args += ["--port", str(port)]
            if user is not None:
                args += ["--user", "default", "off", "--user", user[0], "on", f">{user[1]}",
                         "~*", "&*", "+@all"]
            cluster.procs.append(subprocess.Popen(
                args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None))
        deadline = time.monotonic() + timeout
        for port, proc in zip(ports, cluster.procs, strict=True):
            while not _answers(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {port}: see "
                                       f"{root / f'redis-{port}.log'}")
                time.sleep(0.02)
        subprocess.run([*cli_args, "--cluster", "create",
                        *(f"127.0.0.1:{p}" for p in ports),
                        "--cluster-replicas", "0", "--cluster-yes"],
                       capture_output=True, timeout=timeout, check=True)
        for i in range(NODES):  # every node sees every slot served
            while "cluster_state:ok" not in cluster.node(i, "cluster", "info"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the Redis Cluster on {ports} is not ok")
                time.sleep(0.05)
        scheme = "rediss+cluster" if tls is not None else "redis+cluster"
        auth = f"{user[0]}:{user[1]}@" if user is not None else ""
        query = f"?ssl_ca_certs={tls[0]}" if tls is not None else ""
        cluster.url = f"{scheme}://{auth}{','.join(f'127.0.0.1:{p}' for p in ports)}{query}"
        yield cluster
    finally:
        for proc in cluster.procs:
            proc.terminate()
        for proc in cluster.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


if __name__ == "__main__":  # a cluster to try things on, until Ctrl-C
    with tempfile.TemporaryDirectory() as tmp, running(Path(tmp)) as c:
        print(c.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            sys.exit(0)
