"""The providers a config asks for, built from their blocks (reading keys from env vars or
files): at load, and on reload, where an unchanged block keeps its provider (its
connections, its tokens)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...config.models import Push
from .base import Provider


def build_providers(push: Push | None, env: dict[str, str], root: Path,
                    previous: dict[str, Provider] | None = None) -> dict[str, Provider]:
    """Raises ValueError (naming the block) for a key that can't be read or used."""
    out: dict[str, Provider] = {}
    if push is None:
        return out
    previous = previous or {}
    blocks: dict[str, Any] = {"webpush": push.webpush, "apns": push.apns, "fcm": push.fcm}
    for name, cfg in blocks.items():
        if cfg is None or not has_key(cfg, env):
            continue  # (a provider whose key's env var is unset is off, like the others)
        kept = previous.get(name)
        if kept is not None and getattr(kept, "cfg", None) == cfg:
            out[name] = kept
        else:
            out[name] = build_one(name, cfg, env, root)
    return out


def has_key(cfg: Any, env: dict[str, str]) -> bool:
    """Does the block's key come from somewhere: a file, or an env var that is set?"""
    env_key, file_key = cfg.KEY
    name = getattr(cfg, env_key)
    return bool(getattr(cfg, file_key)) or bool(name and env.get(name))


def build_one(name: str, cfg: Any, env: dict[str, str], root: Path) -> Provider:
    if name == "webpush":
        from .webpush import build_webpush

        return build_webpush(cfg, env, root)
    if name == "apns":
        from .apns import build_apns

        provider: Provider = build_apns(cfg, env, root)
    else:
        from .fcm import build_fcm

        provider = build_fcm(cfg, env, root)
    if getattr(provider, "cfg", None) is None:
        provider.cfg = cfg  # type: ignore[attr-defined]  # (what a reload compares)
    return provider
