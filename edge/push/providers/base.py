"""What every push provider takes and answers."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from ...freshness import http_date, seconds

Urgency = Literal["very-low", "low", "normal", "high"]
Outcome = Literal["sent", "gone", "retry", "failed"]
"""sent: the push service took it. gone: the device's token or subscription is no longer
valid (404/410, Unregistered, BadDeviceToken…): the registration is dropped. retry: try
again later (429, 5xx, a network error), after `retry_after` seconds when the service said
so. failed: refused for good for this notification (a 400 about the payload, 413…), the
registration kept."""


@dataclass(frozen=True, slots=True)
class Notification:
    """One event, as pushed. `title`/`body` None: data-only (a silent/background push)."""

    event_id: str
    topic: str
    event: str
    data: Any
    title: str | None = None
    body: str | None = None
    collapse_key: str | None = None  # newer replaces older (Topic, apns-collapse-id…)
    ttl: int = 86400  # seconds the push service may hold it
    urgency: Urgency = "normal"

    def payload(self) -> dict[str, Any]:
        """What a Web Push payload (and FCM `data`, APNs custom keys) carry: the event,
        so an app can show it and drop what it also got over its event stream (`id`)."""
        out: dict[str, Any] = {"id": self.event_id, "topic": self.topic,
                               "event": self.event, "data": self.data}
        if self.title is not None:
            out["title"] = self.title
        if self.body is not None:
            out["body"] = self.body
        return out


@dataclass(slots=True)
class Registration:
    """One device that may be pushed to. `token`: the APNs device token, the FCM
    registration token, or the Web Push subscription's endpoint URL; `keys`: a Web Push
    subscription's `p256dh` and `auth` (base64url)."""

    id: str
    sub: str
    platform: Literal["webpush", "apns", "fcm"]
    token: str
    app: str
    device_id: str
    topics: list[str]
    created: float
    expires: float
    device: str = "phone"  # the device class it registered as
    locale: str | None = None
    keys: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    status: int | None = None  # the push service's HTTP status, when it answered
    retry_after: float | None = None
    reason: str = ""


class Provider(Protocol):
    """Built once per config generation from its config block (edge/config/models.py:
    WebPushProvider, ApnsProvider, FcmProvider), the environment (secrets come only from
    env vars or files named in YAML) and the config directory (relative file names)."""

    name: str  # "webpush" | "apns" | "fcm": the metrics' `provider` label
    concurrency: int

    async def send(self, reg: Registration, note: Notification) -> Result: ...

    async def close(self) -> None: ...


def read_secret(env_name: str | None, file: str | None, env: dict[str, str], root: Path,
                what: str) -> str:
    """A key's text from its env var, else its file; ValueError naming what is missing."""
    if env_name:
        value = env.get(env_name)
        if value:
            return value
        if file is None:
            raise ValueError(f"{what}: set {env_name}")
    if file:
        path = Path(file) if Path(file).is_absolute() else root / file
        try:
            return path.read_text()
        except OSError as e:
            raise ValueError(f"{what}: cannot read {path}: {e.strerror}") from None
    raise ValueError(f"{what}: give an env var or a file")


def retry_after(value: str | None) -> float | None:
    """A push service's Retry-After (RFC 9110 §10.2.3: delay-seconds or an HTTP-date) as
    seconds from now; None when absent or unreadable."""
    delay = seconds(value.strip()) if value is not None else None
    if delay is not None:
        return delay
    at = http_date(value)
    return max(0.0, at - time.time()) if at is not None else None
