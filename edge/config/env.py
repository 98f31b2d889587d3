"""What a config needs from the environment it is served in: the secrets its `*_env` keys
name, the files it names, a Redis URL that parses. `edge check` reports these (unless
`--no-env`), and `edge serve` refuses to start on them — each as one `file:line:col` line
at the YAML key that asks for the thing, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import yamlpos
from .models import Config

# RFC 7518 §3.2: an HMAC key at least as long as the hash
MIN_SECRET = {"HS256": 32, "HS384": 48, "HS512": 64}


def _positions(root: Path) -> yamlpos.Positions:
    path = root / "edge.yaml"
    try:
        return yamlpos.load(path.read_text(encoding="utf-8"), str(path))[1]
    except (OSError, UnicodeDecodeError, yamlpos.YamlError):
        return yamlpos.Positions(str(path))


def env_problems(config: Config) -> list[str]:
    """Problems `edge serve` would have in `config.env`, as `file:line:col: error: …`."""
    edge, env = config.edge, config.env
    pos = _positions(config.root)
    problems: list[str] = []
    jwt = edge.auth.jwt
    if jwt is not None:
        hmac = [a for a in jwt.algorithms if a in MIN_SECRET]
        need = max((MIN_SECRET[a] for a in hmac), default=0)
        if need and jwt.secret_env:
            where = pos.where(("auth", "jwt", "secret_env"))
            value = env.get(jwt.secret_env)
            if not value:
                problems.append(
                    f"{where}: error: auth.jwt.secret_env: the env var {jwt.secret_env} is "
                    f"not set; `edge serve` verifies tokens with the HMAC secret it holds "
                    f"(at least {need} bytes)")
            elif len(value.encode()) < need:
                problems.append(
                    f"{where}: error: auth.jwt.secret_env: {jwt.secret_env} holds "
                    f"{len(value.encode())} bytes; {'/'.join(hmac)} "
                    f"{'needs' if len(hmac) == 1 else 'need'} a secret of at least {need} "
                    "(RFC 7518 §3.2)")
        for i, file in enumerate(jwt.public_key_files):
            problem = _unreadable(config.root / file)
            if problem:
                problems.append(f"{pos.where(('auth', 'jwt', 'public_key_files', i))}: error: "
                                f"auth.jwt.public_key_files[{i}]: {problem}")
        if jwt.jwks_file:
            problem = _unreadable(config.root / jwt.jwks_file) or _bad_jwks(
                config.root / jwt.jwks_file)
            if problem:
                problems.append(f"{pos.where(('auth', 'jwt', 'jwks_file'))}: error: "
                                f"auth.jwt.jwks_file: {problem}")
    if edge.push is not None:
        from ..push.providers.build import build_one, has_key  # (late: push imports config)

        for kind in ("webpush", "apns", "fcm"):
            block = getattr(edge.push, kind)
            if block is None or not has_key(block, env):
                continue  # unset: that provider is off (as without a publisher key)
            try:
                build_one(kind, block, env, config.root)
            except ValueError as e:
                problems.append(f"{pos.where(('push', kind), key=True)}: error: {e}")
    name = edge.backend.redis_url_env
    url = env.get(name) if name else None
    if url:
        from ..backends import url_problem  # (the backend says what it can open)

        problem = url_problem(url)
        if problem is not None:
            problems.append(f"{pos.where(('backend', 'redis_url_env'))}: error: "
                            f"backend.redis_url_env: {name} is {problem}")
    return problems


def _unreadable(path: Path) -> str | None:
    try:
        path.read_bytes()
    except OSError as e:
        return f"cannot read {path}: {e.strerror or e}"
    return None


def _bad_jwks(path: Path) -> str | None:
    from jwt import PyJWKSet
    from jwt.exceptions import PyJWTError

    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
        PyJWKSet.from_dict(data)
    except (ValueError, PyJWTError, TypeError, AttributeError) as e:
        return f"{path} is not a JSON Web Key Set: {e}"
    return None
