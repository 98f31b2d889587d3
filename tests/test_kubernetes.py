"""deploy/kubernetes: the kustomize base and its Redis overlay, rendered by a real kustomize
(standalone, or the one built into kubectl) and checked without a cluster:

- every rendered object validates, strictly (unknown fields fail), against the Kubernetes
  OpenAPI schemas of each of KUBERNETES_VERSIONS, bundled by kubernetes-validate;
- the generated ConfigMaps, projected the way the kubelet projects the Deployment's volume,
  make a tree that is the repository's config/ file for file and passes `edge check
  --strict` with the Secrets' env vars set;
- every env var the config names (`*_env` keys, defaults included) comes from a Secret
  through a secretKeyRef, optional where the edge runs without it;
- the probes ask the edge's own /health and /ready on the port `edge serve` is told to
  listen on, and answer 200 when the Deployment's command is run here;
- terminationGracePeriodSeconds outlasts the preStop sleep plus the config's drain_timeout,
  and SIGTERM ends the edge cleanly within drain_timeout.
"""

from __future__ import annotations

import copy
import functools
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel

from edge.config import Config, load_config

from .conftest import REDIS_URL, free_port

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy" / "kubernetes"
CONFIG = ROOT / "config"
KUSTOMIZATIONS = {"base": DEPLOY / "base", "redis": DEPLOY / "overlays" / "redis"}
# 1.30: the oldest Kubernetes these manifests are for (preStop's `sleep` action is on by
# default from 1.30); 1.34: a current release.
KUBERNETES_VERSIONS = ("1.30", "1.34")
KINDS = {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget",
         "HorizontalPodAutoscaler"}


# ------------------------------------------------------------------------------ rendering


def _kustomize_command() -> list[str]:
    if exe := shutil.which("kustomize"):
        return [exe, "build"]
    if exe := shutil.which("kubectl"):
        return [exe, "kustomize"]
    pytest.fail("deploy/kubernetes is rendered with kustomize (v5), standalone or built into "
                "kubectl (1.27+), and neither `kustomize` nor `kubectl` is on PATH",
                pytrace=False)


@functools.cache
def _render(name: str) -> tuple[dict[str, Any], ...]:
    # config/ is outside the kustomization's root: the README's command says the same.
    cmd = [*_kustomize_command(), "--load-restrictor", "LoadRestrictionsNone",
           str(KUSTOMIZATIONS[name])]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stderr}"
    assert "warning" not in done.stderr.lower(), done.stderr  # e.g. a deprecated field
    return tuple(d for d in yaml.safe_load_all(done.stdout) if d)


def rendered(name: str) -> list[dict[str, Any]]:
    """The objects `kustomize build` makes of deploy/kubernetes/<name> (a fresh copy)."""
    return copy.deepcopy(list(_render(name)))


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def edge_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["edge"]
    return dict(containers[0])


def option(container: dict[str, Any], flag: str) -> str:
    """The value of `--flag VALUE` in the container's args."""
    args = container["args"]
    assert args.count(flag) == 1, f"{flag} once in {args}"
    return str(args[args.index(flag) + 1])


def container_port(container: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's port (a number, or the name of a container port) as a number."""
    if isinstance(port, int):
        return port
    named = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    assert named, f"no container port named {port!r}"
    return int(named[0])


def secret_env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Env var name → its secretKeyRef, for the env vars that come from a Secret."""
    return {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})}


def _import_kubernetes_validate() -> Any:
    try:
        import kubernetes_validate
    except ImportError:
        pytest.fail("tests/test_kubernetes.py validates with kubernetes-validate, which is not "
                    "installed: it is in pyproject.toml's test extra (pip install -e '.[test]')",
                    pytrace=False)
    return kubernetes_validate


# ------------------------------------------------------------------- the mounted config


def mounted_config(objects: list[dict[str, Any]], dest: Path) -> Path:
    """Write the files the kubelet would put at the container's --config directory, as it
    projects them (a ConfigMap source without `items`: each key a file at the top; with
    `items`: just those keys, at their `path`), into `dest`; return `dest`."""
    container = edge_container(objects)
    config_dir = option(container, "--config")
    mounts = [m for m in container["volumeMounts"] if m["mountPath"] == config_dir]
    assert len(mounts) == 1, f"one volume mounted at --config {config_dir}"
    assert mounts[0].get("readOnly") is True
    assert "subPath" not in mounts[0]  # it would freeze the files and hide the routes dir
    volumes = one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    volume = next(v for v in volumes if v["name"] == mounts[0]["name"])
    sources = volume["projected"]["sources"] if "projected" in volume else [volume]
    maps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    files: dict[str, str] = {}
    for source in sources:
        ref = source["configMap"]
        assert ref["name"] in maps, f"ConfigMap {ref['name']} is not rendered"
        assert not ref.get("optional"), "the config must not be optional"
        data = maps[ref["name"]].get("data", {})
        assert not maps[ref["name"]].get("binaryData")
        items = ref.get("items")
        pairs = [(k, k) for k in data] if items is None else [
            (i["key"], i["path"]) for i in items]
        for key, path in pairs:
            assert key in data, f"{ref['name']} has no key {key!r} (the kubelet would fail)"
            assert not path.startswith("/") and ".." not in path.split("/"), path
            assert path not in files, f"{path} projected twice"
            files[path] = data[key]
    for path, text in files.items():
        (dest / path).parent.mkdir(parents=True, exist_ok=True)
        (dest / path).write_text(text, encoding="utf-8")
    return dest


def config_files(root: Path) -> dict[str, str]:
    """The files of a config dir the edge reads: *.yaml at the top and routes/*.y[a]ml."""
    paths = [*root.glob("*.yaml"), *root.glob("*.yml"), *(root / "routes").glob("*.yaml"),
             *(root / "routes").glob("*.yml")]
    return {p.relative_to(root).as_posix(): p.read_text(encoding="utf-8") for p in paths}


def named_env_vars(config: Config) -> set[str]:
    """Every env var the config names in a `*_env` key, the defaults included (the edge
    reads backend.redis_url_env's EDGE_REDIS_URL even when edge.yaml doesn't say so)."""
    names: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, BaseModel):
            for field in type(value).model_fields:
                item = getattr(value, field)
                if field.endswith("_env"):
                    names.update([item] if isinstance(item, str) else item or [])
                else:
                    walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(config.edge)
    for route in config.routes:
        walk(route.model)
    return names


def secret_values(objects: list[dict[str, Any]], config: Config, *,
                  required_only: bool = False) -> dict[str, str]:
    """What the Secrets would hold (a Redis URL for the Redis env var, 64-byte keys else):
    for every secretKeyRef, or only for those not `optional`."""
    redis_env = config.edge.backend.redis_url_env
    push = config.edge.push
    vapid_env = push.webpush.vapid_private_key_env if push and push.webpush else None
    return {name: REDIS_URL if name == redis_env else VAPID_KEY if name == vapid_env
            else "k8s-test-" + "0123456789abcdef" * 4
            for name, ref in secret_env(edge_container(objects)).items()
            if not (required_only and ref.get("optional", False))}


# a P-256 key as `openssl ecparam -name prime256v1 -genkey -noout` writes one
VAPID_KEY = ec.generate_private_key(ec.SECP256R1()).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
    serialization.NoEncryption()).decode()


@pytest.fixture(params=sorted(KUSTOMIZATIONS))
def kustomization(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def mounted(kustomization: str, tmp_path: Path) -> tuple[list[dict[str, Any]], Path, Config]:
    objects = rendered(kustomization)
    root = mounted_config(objects, tmp_path / "etc-edge")
    config = load_config(root, env=secret_values(objects, load_config(root, env={})))
    return objects, root, config


# -------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_validates_against_the_kubernetes_schemas(kustomization: str,
                                                               version: str) -> None:
    kv = _import_kubernetes_validate()
    from kubernetes_validate.utils import all_versions

    assert any(v.startswith(version + ".") for v in all_versions()), \
        f"kubernetes-validate {kv.__version__} bundles no Kubernetes {version} schemas"
    objects = rendered(kustomization)
    assert {o["kind"] for o in objects} == KINDS
    for obj in objects:
        where = f"{kustomization}: {obj['kind']}/{obj['metadata']['name']}"
        try:
            validated = kv.validate(obj, version, strict=True)
        except kv.ValidationError as e:
            pytest.fail(f"{where} is not valid Kubernetes {version}: "
                        f"{'.'.join(map(str, e.path))}: {e.message}", pytrace=False)
        assert validated == version


def test_the_validator_is_strict() -> None:
    """A misspelt field or a wrong type is caught: the test above proves something."""
    kv = _import_kubernetes_validate()
    deployment = one(rendered("base"), "Deployment")
    misspelt = copy.deepcopy(deployment)
    misspelt["spec"]["template"]["spec"]["containers"][0]["securityContext"][
        "readOnlyRootFilesytem"] = True
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "45s"
    for bad in (misspelt, wrong_type):
        with pytest.raises(kv.ValidationError):
            kv.validate(bad, KUBERNETES_VERSIONS[0], strict=True)


def test_the_mounted_config_is_the_repository_config_and_passes_edge_check(
        mounted: tuple[list[dict[str, Any]], Path, Config]) -> None:
    objects, root, config = mounted
    want, got = config_files(CONFIG), config_files(root)
    projected = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert not set(want) - projected, "config/ files the pod would not get (kustomization's " \
        "configMapGenerator and the Deployment's projected items must list them)"
    assert not projected - set(want), "files the pod would get that config/ doesn't have"
    for path, text in want.items():
        assert got[path] == text, f"{path} differs from config/{path}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_")}
    done = subprocess.run([sys.executable, "-m", "edge", "check", "--strict", str(root)],
                          env={**env, **secret_values(objects, config)}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_env_var_the_config_names_comes_from_a_secret(
        kustomization: str, mounted: tuple[list[dict[str, Any]], Path, Config]) -> None:
    objects, _, config = mounted
    refs = secret_env(edge_container(objects))
    names = named_env_vars(config)
    assert {"EDGE_JWT_SECRET", "EDGE_PUBLISH_KEY", "EDGE_IMAGE_KEY", "EDGE_REDIS_URL",
            "EDGE_VAPID_KEY"} <= names
    assert set(refs) == names, "a secretKeyRef for each `*_env` name, and no stale one"
    for name, ref in refs.items():
        assert ref["name"] and ref["key"], name
    # Required only where the edge can't do without: HS256 tokens need their secret
    # (`edge serve` refuses to start), the overlay needs its Redis. Publishing events and
    # signed image sizes are features that are off while their key is missing.
    required = {config.edge.auth.jwt.secret_env} if config.edge.auth.jwt else set()
    if kustomization == "redis":
        required.add(config.edge.backend.redis_url_env)
    assert {n for n, ref in refs.items() if not ref.get("optional", False)} == required
    # and nothing else in the env could stand in for them
    plain = {e["name"] for e in edge_container(objects).get("env", []) if e["name"] not in refs}
    assert not plain & names


def test_probes_ask_the_edge_on_the_port_it_listens_on(
        mounted: tuple[list[dict[str, Any]], Path, Config]) -> None:
    objects, _, config = mounted
    container = edge_container(objects)
    assert container["command"] == ["edge"] and container["args"][0] == "serve"
    assert option(container, "--host") == "0.0.0.0"
    port = int(option(container, "--port"))
    for probe, path in (("livenessProbe", config.edge.admin.health_path),
                        ("readinessProbe", config.edge.admin.ready_path)):
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        assert container_port(container, get["port"]) == port, probe
        assert get.get("scheme", "HTTP") == "HTTP", probe
    service = one(objects, "Service")
    assert [container_port(container, p["targetPort"]) for p in service["spec"]["ports"]] \
        == [port]


def test_the_grace_period_outlasts_the_prestop_sleep_and_the_drain(
        mounted: tuple[list[dict[str, Any]], Path, Config]) -> None:
    objects, _, config = mounted
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    pre_stop = edge_container(objects)["lifecycle"]["preStop"]
    if "sleep" in pre_stop:
        sleep = float(pre_stop["sleep"]["seconds"])
    else:
        command = pre_stop["exec"]["command"]
        assert command[0] in ("sleep", "/bin/sleep"), command
        sleep = float(command[1])
    assert sleep >= 5, "endpoint removal needs a few seconds to reach the load balancers"
    assert pod["terminationGracePeriodSeconds"] > sleep + config.edge.drain_timeout


def test_the_pod_runs_locked_down(kustomization: str) -> None:
    objects = rendered(kustomization)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    container = edge_container(objects)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0  # `USER edge` is a name: not checkable
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert not sc.get("privileged")
    tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp["name"])
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}, kind


def test_autoscaler_budget_and_service_select_the_edge_pods(kustomization: str) -> None:
    objects = rendered(kustomization)
    deployment = one(objects, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert one(objects, "Service")["spec"]["selector"].items() <= labels.items()
    assert one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() \
        <= labels.items()
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    if kustomization == "base":
        # state in memory: exactly one instance
        assert hpa["spec"]["minReplicas"] == hpa["spec"]["maxReplicas"] == 1
    else:
        assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def _serve(objects: list[dict[str, Any]], root: Path, env: dict[str, str]
           ) -> tuple[subprocess.Popen[bytes], str]:
    """The Deployment's command, here: its args with the config at `root` and loopback."""
    container = edge_container(objects)
    args = list(container["args"])
    port = free_port()
    for flag, value in (("--config", str(root)), ("--host", "127.0.0.1"), ("--port", str(port))):
        args[args.index(flag) + 1] = value
    base = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_")}
    proc = subprocess.Popen([sys.executable, "-m", "edge", *args], env={**base, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            said = proc.communicate()[1].decode()
            _stop(proc, 0)
            pytest.fail(f"`edge {' '.join(args)}` did not start: {said}", pytrace=False)
        try:
            _get(url + "/health")
            return proc, url
        except OSError:
            time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes], within: float) -> int | None:
    """SIGTERM, then the exit code if the edge is gone within `within` seconds (else
    it is killed and None is returned)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=within)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None
    finally:
        if proc.stderr:
            proc.stderr.close()


def test_the_deployments_command_answers_its_probes_and_drains_on_sigterm(
        mounted: tuple[list[dict[str, Any]], Path, Config]) -> None:
    objects, root, config = mounted
    container = edge_container(objects)
    # Only the Secrets' required keys: the pod must start without the optional ones (the
    # base then keeps its state in memory, the overlay uses the test Redis).
    proc, url = _serve(objects, root, secret_values(objects, config, required_only=True))
    try:
        for probe in ("livenessProbe", "readinessProbe"):
            assert _get(url + container[probe]["httpGet"]["path"]) == 200, probe
    finally:
        assert _stop(proc, config.edge.drain_timeout) == 0


def test_readiness_fails_while_redis_does_not_answer(tmp_path: Path) -> None:
    """The README says so: with EDGE_REDIS_URL set and Redis away, /ready is 503 (the pod
    leaves the Service) while /health stays 200 (it is not restarted)."""
    objects = rendered("redis")
    root = mounted_config(objects, tmp_path)
    config = load_config(root, env=secret_values(objects, load_config(root, env={})))
    container = edge_container(objects)
    env = secret_values(objects, config)
    env[str(config.edge.backend.redis_url_env)] = f"redis://127.0.0.1:{free_port()}/0"
    proc, url = _serve(objects, root, env)
    try:
        assert _get(url + container["livenessProbe"]["httpGet"]["path"]) == 200
        assert _get(url + container["readinessProbe"]["httpGet"]["path"]) == 503
    finally:
        _stop(proc, config.edge.drain_timeout)
