"""Web Push delivery through the edge: deliveries per second to 10,000 registered devices,
and the edge's CPU per delivery (encryption included).

    .venv/bin/python bench/push.py [--devices 10000] [--rounds 3] [--concurrency 64]
                                   [--timeout 60] [--verify-every 1000] [--quick] [--json]

Starts, each in its own process on 127.0.0.1 and for the whole run: a Web Push service
stand-in (bench/_push_service.py: answers every delivery 201 once it has read the body,
counts them, decrypts one in `--verify-every` with the subscription's keys) and `edge serve`
on a temp config: JWT auth (HS256), `events` with the public topic rule `bench:*` and a
publisher key, `push.webpush` with a fresh VAPID key, the stand-in's origin as the one
allowed endpoint and `--concurrency` requests at once, `max_per_identity` 1000, the memory
backend, one dummy route, access log off, no reload watcher. The bench raises its soft
open-file limit to the hard one (the edge inherits it; the stand-in raises its own).

1. Devices: `--devices` N subscriptions, each its own endpoint (`/push/d<i>`) and P-256 key
   and auth secret (derived from a per-run seed, so the stand-in can decrypt its samples),
   registered with `POST /_edge/push/registrations` by the bench (aiohttp, 50 at a time),
   100 devices per token subject, for topic `bench:all`; the first W = min(N/5,
   max(100, 2 x concurrency)) also for `bench:warm`. RSS (VmRSS of the edge) after the W
   and after all N: KB per registration = (after - before) / (N - W), informational (the
   memory backend keeps each registration three times: by id, subject and topic).
2. Warm-up: one event published to `bench:warm` (W pushes: the edge's connections to the
   push service open, the VAPID token is minted).
3. `--rounds` rounds: the stand-in's counts are reset, the edge's CPU time read (/proc
   utime + stime), then the bench takes time.monotonic() (CLOCK_MONOTONIC, shared by every
   process on the machine) and publishes one event (~200 B of data) to `bench:all` with
   `push: {mode: always, title, body}`: the 202 says how many pushes were queued (N), and
   the stand-in is polled until it has received them all (or `--timeout` s). 0.2 s later the
   edge's CPU is read again. deliveries/s = N / (last delivery's arrival - publish);
   edge CPU per delivery = its CPU over the round / N: the publish request (finding the
   topic's N registrations), and per push the payload's encryption (RFC 8291: a fresh P-256
   key, ECDH, HKDF, AES-GCM), the VAPID header and the HTTP POST with its answer.
4. Checks: `edge_push_deliveries_total` on /metrics must count every push queued (warm-up
   included) as `sent` and nothing else; the stand-in's sampled decryptions must all pass.

Reported: medians over the rounds and the spread (half the min-max range of deliveries/s);
the 202's and the first push's delay; the edge's CPU as µs per delivery and as a share of
one core over the round (near 100%: the edge's one process is the limit); the stand-in's
CPU per delivery (far below the edge's: it is not the bottleneck); for reference, the
encryption alone (edge.push's WebPush.encrypt in the bench process, before the servers
start). There is no stated goal: the figures are informational, and the exit code is 0 (2
when the edge is not installed).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import re
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _common import EDGE_BIN, cpu_seconds, preflight
from _push_service import device_secrets
from proxy import fetch, fmt_row, free_port, process, write_config
from sse import KB, log_trouble, post, raise_nofile, rss_kb

HERE = Path(__file__).resolve().parent
SERVICE = HERE / "_push_service.py"
REGISTRATIONS = "/_edge/push/registrations"
DEVICES_PER_SUB = 100  # token subjects hold this many devices each (max_per_identity 1000)
REGISTER_CONCURRENCY = 50  # registrations in flight at once
POLL = 0.02  # seconds between polls of the stand-in's count
SETTLE = 0.2  # seconds after the last delivery before the edge's CPU is read again
ENCRYPT_SAMPLES = 300  # messages encrypted in the bench process for the reference figure
JWT_SECRET = "bench-push-" + "0123456789abcdef" * 3
DATA = {"claim": "CLM-2024-000042", "status": "paid", "amount": 1284.5, "currency": "EUR",
        "member": "1001", "provider": "Klinik Sehat Sentosa",
        "note": "The claim was paid to the account on file; the statement follows."}


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# --------------------------------------------------------------------------- devices


@dataclass(frozen=True, slots=True)
class Device:
    name: str
    sub: str
    body: bytes  # the registration request's JSON


def make_devices(n: int, warm: int, seed: str, service: str) -> list[Device]:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    out = []
    for i in range(n):
        name = f"d{i}"
        key, auth = device_secrets(seed, name)
        p256dh = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        topics = ["bench:all", "bench:warm"] if i < warm else ["bench:all"]
        doc = {"platform": "webpush", "device_id": f"dev-{i}", "topics": topics,
               "subscription": {"endpoint": f"{service}/push/{name}",
                                "keys": {"p256dh": b64url(p256dh), "auth": b64url(auth)}}}
        out.append(Device(name, f"bench-{i // DEVICES_PER_SUB}", json.dumps(doc).encode()))
    return out


def tokens(subs: set[str]) -> dict[str, str]:
    import jwt

    exp = int(time.time()) + 3600
    return {s: jwt.encode({"sub": s, "exp": exp, "roles": ["member"]}, JWT_SECRET,
                          algorithm="HS256") for s in subs}


@dataclass(slots=True)
class Registered:
    ok: int = 0
    failed: Counter[int] = field(default_factory=Counter)
    first_error: str | None = None
    secs: float = 0.0


async def _register(base: str, devices: list[Device], bearer: dict[str, str],
                    timeout: float) -> Registered:
    import aiohttp

    res = Registered()
    todo = iter(devices)
    url = f"{base}{REGISTRATIONS}"
    t0 = time.monotonic()
    async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=REGISTER_CONCURRENCY),
            timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def worker() -> None:
            for d in todo:
                headers = {"Authorization": f"Bearer {bearer[d.sub]}",
                           "Content-Type": "application/json"}
                try:
                    async with session.post(url, data=d.body, headers=headers) as r:
                        text = await r.text()
                        status = r.status
                except (aiohttp.ClientError, TimeoutError) as e:
                    status, text = 0, f"{type(e).__name__}: {e}"
                if status == 201:
                    res.ok += 1
                else:
                    res.failed[status] += 1
                    res.first_error = res.first_error or f"{status} {text[:300]}"

        await asyncio.wait_for(
            asyncio.gather(*(worker() for _ in range(REGISTER_CONCURRENCY))), timeout)
    res.secs = time.monotonic() - t0
    return res


def register(base: str, devices: list[Device], bearer: dict[str, str]) -> Registered:
    return asyncio.run(_register(base, devices, bearer, 60 + len(devices) / 50))


# --------------------------------------------------------------------------- servers


def edge_config(root: Path, n: int, concurrency: int) -> Path:
    # one service nobody listens on and a dummy route to it: no route is measured
    return write_config(
        root, {"none": f"http://127.0.0.1:{free_port()}"},
        "routes:\n  - route: GET /x\n    source: {service: none, path: /x}\n",
        extra=(
            "auth:\n"
            "  jwt:\n"
            "    algorithms: [HS256]\n"
            "    secret_env: EDGE_JWT_SECRET\n"
            "events:\n"
            "  topics:\n"
            '    - {topic: "bench:*", public: true}\n'
            "  publisher_keys_env: [PUBKEY]\n"
            "push:\n"
            "  webpush:\n"
            "    vapid_private_key_env: EDGE_VAPID_KEY\n"
            "    subject: mailto:bench@example.com\n"
            '    endpoints: ["http://127.0.0.1:*"]\n'
            f"    concurrency: {concurrency}\n"
            "  max_per_identity: 1000\n"
            f"  queue: {max(100_000, 2 * n)}\n"
            # the memory backend, whatever EDGE_REDIS_URL says; room for 3 entries a device
            f"backend: {{redis_url_env: null, memory_max_entries: {max(100_000, 4 * n)}}}\n"))


def vapid_key() -> str:
    """A fresh P-256 private key, as the raw 32-byte scalar in base64url."""
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    return b64url(key.private_numbers().private_value.to_bytes(32, "big"))


def deliveries(base: str) -> dict[str, int]:
    """edge_push_deliveries_total{provider="webpush"} by outcome."""
    out: dict[str, int] = {}
    text = fetch(f"{base}/metrics")[1].decode()
    for labels, value in re.findall(r"^edge_push_deliveries_total\{([^}]*)\} (\S+)$", text,
                                    re.M):
        found = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if found.get("provider") == "webpush":
            out[found.get("outcome", "?")] = int(float(value))
    return out


def counts(service: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(fetch(f"{service}/count")[1])
    return doc


def encrypt_us(samples: int) -> float:
    """The edge's Web Push encryption of one ~400 B payload, alone: µs per message."""
    from edge.push.providers.base import Registration
    from edge.push.providers.webpush import WebPush

    key, auth = device_secrets("encrypt", "d0")
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    p256dh = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    reg = Registration(id="x", sub="s", platform="webpush", token="http://127.0.0.1/push/d0",
                       app="web", device_id="d0", topics=["bench:all"], created=0.0,
                       expires=0.0, keys={"p256dh": b64url(p256dh), "auth": b64url(auth)})
    payload = json.dumps({"id": "1718000000000-1", "topic": "bench:all", "event": "bench",
                          "data": DATA, "title": "Claim paid",
                          "body": "CLM-2024-000042 was paid"}).encode()
    WebPush.encrypt(payload, reg)
    t0 = time.process_time()
    for _ in range(samples):
        WebPush.encrypt(payload, reg)
    return (time.process_time() - t0) / samples * 1e6


# ---------------------------------------------------------------------------- rounds


@dataclass(slots=True)
class Round:
    queued: int
    received: int
    ack_ms: float  # the publish's 202 arrived after
    first_ms: float  # the first push reached the stand-in after
    all_s: float  # the last push reached the stand-in after (publish -> last)
    rate: float  # deliveries per second: received / all_s
    edge_us: float  # the edge's CPU µs per delivery
    edge_busy: float  # the edge's CPU over all_s, share of one core
    service_us: float  # the stand-in's CPU µs per delivery
    body_bytes: float  # mean encrypted body

    @property
    def complete(self) -> bool:
        return self.received >= self.queued


def publish(edge: str, key: str, topic: str, seq: int) -> tuple[int, float]:
    """One event with push mode always: (pushes queued, publish time)."""
    doc = {"topic": topic, "event": "bench", "data": {"seq": seq, **DATA},
           "push": {"mode": "always", "title": "Claim paid",
                    "body": "CLM-2024-000042 was paid"}}
    t0 = time.monotonic()
    status, body = post(f"{edge}/_edge/publish", doc, {"Authorization": f"Bearer {key}"})
    if status != 202:
        raise RuntimeError(f"publish -> {status} {body[:300]!r}")
    queued: int = json.loads(body)["push"]["queued"]
    return queued, t0


def wait_for(service: str, n: int, deadline: float) -> dict[str, Any]:
    while True:
        got = counts(service)
        if got["received"] >= n or time.monotonic() > deadline:
            return got
        time.sleep(POLL)


def run_round(edge: str, edge_pid: int, service: str, service_pid: int, key: str, seq: int,
              timeout: float) -> Round:
    post(f"{service}/reset", {}, {})
    c0, s0 = cpu_seconds(edge_pid), cpu_seconds(service_pid)
    queued, t0 = publish(edge, key, "bench:all", seq)
    ack = time.monotonic() - t0
    wait_for(service, queued, t0 + timeout)
    time.sleep(SETTLE)
    c1, s1 = cpu_seconds(edge_pid), cpu_seconds(service_pid)
    got = counts(service)
    n = got["received"]
    last = got["last_at"] - t0 if got["last_at"] is not None else float("nan")
    first = got["first_at"] - t0 if got["first_at"] is not None else float("nan")
    per = 1e6 / n if n else float("nan")
    return Round(queued, n, ack * 1000, first * 1000, last, n / last if n else 0.0,
                 (c1 - c0) * per, (c1 - c0) / last if n else float("nan"), (s1 - s0) * per,
                 got["bytes"] / n if n else float("nan"))


# ---------------------------------------------------------------------------- report


def median(rounds: list[Round], attr: str) -> float:
    return float(statistics.median(getattr(r, attr) for r in rounds))


def table(rounds: list[Round]) -> list[str]:
    rows = [["round", "pushes", "deliveries/s", "spread", "202 after", "first push", "all in",
             "edge CPU µs/push", "edge CPU", "push service µs/push", "body"]]
    for i, r in enumerate(rounds, 1):
        rows.append([str(i), f"{r.received:,}/{r.queued:,}", f"{r.rate:,.0f}", "",
                     f"{r.ack_ms:.0f} ms", f"{r.first_ms:.0f} ms", f"{r.all_s:.2f}s",
                     f"{r.edge_us:.0f}", f"{r.edge_busy * 100:.0f}%", f"{r.service_us:.0f}",
                     f"{r.body_bytes:.0f} B"])
    rates = [r.rate for r in rounds]
    med = statistics.median(rates)
    spread = f"±{(max(rates) - min(rates)) / 2 / med * 100:.0f}%" if med else "-"
    rows.append(["median", "", f"{med:,.0f}", spread, f"{median(rounds, 'ack_ms'):.0f} ms",
                 f"{median(rounds, 'first_ms'):.0f} ms", f"{median(rounds, 'all_s'):.2f}s",
                 f"{median(rounds, 'edge_us'):.0f}", f"{median(rounds, 'edge_busy') * 100:.0f}%",
                 f"{median(rounds, 'service_us'):.0f}", f"{median(rounds, 'body_bytes'):.0f} B"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [fmt_row(rows[0], widths), fmt_row(["-" * w for w in widths], widths),
            *(fmt_row(r, widths) for r in rows[1:])]


# ------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=10_000,
                    help="registered Web Push devices, each pushed to every round "
                    "(default 10,000)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="events published, one per round (default 3)")
    ap.add_argument("--concurrency", type=int, default=64,
                    help="push.webpush.concurrency: requests to the push service at once "
                    "(default 64)")
    ap.add_argument("--timeout", type=float, default=60.0,
                    help="seconds a round may take to deliver every push (default 60)")
    ap.add_argument("--verify-every", type=int, default=1000,
                    help="the stand-in decrypts one push in this many (default 1000; 0: "
                    "none)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1,000 devices, 1 round")
    ap.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = ap.parse_args(argv)
    if args.quick:
        args.devices, args.rounds = 1_000, 1
    if args.devices < 100 or args.rounds < 1 or not 1 <= args.concurrency <= 10_000 \
            or args.timeout <= 0 or args.verify_every < 0:
        ap.error("--devices >= 100, --rounds >= 1, --concurrency 1 to 10,000, "
                 "--timeout > 0, --verify-every >= 0")
    if (code := preflight("push.py", wrk=False)) is not None:
        return code
    nofile = raise_nofile()

    n = args.devices
    warm = min(n // 5, max(100, 2 * args.concurrency))
    seed = secrets.token_hex(8)
    pubkey = secrets.token_urlsafe(24)
    ports = {"edge": free_port(), "service": free_port()}
    base = {k: f"http://127.0.0.1:{p}" for k, p in ports.items()}
    started = time.monotonic()
    warnings: list[str] = []
    rounds: list[Round] = []
    print(f"Web Push benchmark: {n:,} devices ({DEVICES_PER_SUB} per token subject), "
          f"{args.rounds} round(s) of one event pushed to all, webpush concurrency "
          f"{args.concurrency}; {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"open files {nofile:,}/process", flush=True)
    note = lambda msg: print(f"  {msg}", file=sys.stderr, flush=True)  # noqa: E731

    enc_us = encrypt_us(ENCRYPT_SAMPLES)
    t = time.monotonic()
    devices = make_devices(n, warm, seed, base["service"])
    bearer = tokens({d.sub for d in devices})
    note(f"{n:,} subscriptions (P-256 keys) made in {time.monotonic() - t:.1f}s; encryption "
         f"alone {enc_us:.0f} µs/message")
    env = {**os.environ, "EDGE_JWT_SECRET": JWT_SECRET, "PUBKEY": pubkey,
           "EDGE_VAPID_KEY": vapid_key()}
    try:
        with tempfile.TemporaryDirectory(prefix="edge-push-") as tmp_name:
            tmp = Path(tmp_name)
            with ExitStack() as stack:
                service, _ = stack.enter_context(process(
                    [sys.executable, str(SERVICE), str(ports["service"]), seed,
                     str(args.verify_every)], f"{base['service']}/health",
                    tmp / "service.err"))
                cfg = edge_config(tmp / "config", n, args.concurrency)
                edge, _ = stack.enter_context(process(
                    [str(EDGE_BIN), "serve", "--config", str(cfg), "--host", "127.0.0.1",
                     "--port", str(ports["edge"])], f"{base['edge']}/ready",
                    tmp / "edge.err", env=env))

                # 1. devices: W first (the warm-up set), RSS, then the rest, RSS
                reg_warm = register(base["edge"], devices[:warm], bearer)
                time.sleep(1.0)
                rss_before = rss_kb(edge.pid)
                reg = register(base["edge"], devices[warm:], bearer)
                time.sleep(1.0)
                rss_after = rss_kb(edge.pid)
                registered = reg_warm.ok + reg.ok
                failed = reg_warm.failed + reg.failed
                per_reg = (rss_after - rss_before) / reg.ok if reg.ok else float("nan")
                note(f"{registered:,}/{n:,} devices registered in "
                     f"{reg_warm.secs + reg.secs:.1f}s; "
                     f"edge RSS {rss_before / KB:.1f} -> {rss_after / KB:.1f} MB "
                     f"({per_reg:.2f} KB/registration)")
                if failed:
                    warnings.append(f"{sum(failed.values())} registrations failed "
                                    f"{dict(failed)}, first: "
                                    f"{reg_warm.first_error or reg.first_error}")

                # 2. warm-up: W pushes
                post(f"{base['service']}/reset", {}, {})
                warm_queued, t0 = publish(base["edge"], pubkey, "bench:warm", 0)
                got = wait_for(base["service"], warm_queued, t0 + args.timeout)
                note(f"warm-up: {got['received']}/{warm_queued} pushes in "
                     f"{(got['last_at'] or t0) - t0:.2f}s")
                time.sleep(0.5)

                # 3. rounds: N pushes each
                for i in range(1, args.rounds + 1):
                    r = run_round(base["edge"], edge.pid, base["service"], service.pid,
                                  pubkey, i, args.timeout)
                    rounds.append(r)
                    note(f"round {i}/{args.rounds}: {r.received:,}/{r.queued:,} pushes in "
                         f"{r.all_s:.2f}s, {r.rate:,.0f}/s, edge {r.edge_us:.0f} µs/push "
                         f"({r.edge_busy * 100:.0f}% of a core), push service "
                         f"{r.service_us:.0f} µs/push")
                    if r.queued != registered:
                        warnings.append(f"round {i}: {r.queued:,} pushes queued for "
                                        f"{registered:,} registered devices")
                    if not r.complete:
                        warnings.append(f"round {i}: {r.received:,}/{r.queued:,} pushes "
                                        f"reached the push service in {args.timeout:g}s")
                    time.sleep(0.5)

                # 4. checks
                expected = warm_queued + sum(r.queued for r in rounds)
                for _ in range(50):  # the last answers may still be counted
                    outcomes = deliveries(base["edge"])
                    if sum(outcomes.values()) >= expected:
                        break
                    time.sleep(0.1)
                service_counts = counts(base["service"])
                rss_end = rss_kb(edge.pid)
            # stopped: did a server complain on its way?
            for log in sorted(tmp.glob("*.err")):
                if trouble := log_trouble(log):
                    warnings.append(f"{log.name}: {trouble}")
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130

    sent = outcomes.get("sent", 0)
    others = {k: v for k, v in outcomes.items() if k != "sent" and v}
    ok_sent = sent == expected and not others
    if not ok_sent:
        warnings.append(f"edge_push_deliveries_total: sent {sent:,} of {expected:,} queued, "
                        f"other outcomes {others or 'none'}")
    if service_counts["bad"]:
        warnings.append(f"push service: {service_counts['bad']} sampled pushes failed the "
                        f"check, first: {service_counts['bad_reason']}")
    if args.verify_every and not service_counts["verified"]:
        warnings.append("push service: no push was verified")

    lines = ["", f"one event pushed to {n:,} Web Push devices per round ({args.rounds} "
             f"round(s); webpush concurrency {args.concurrency}):", *table(rounds), ""]
    lines += [
        f"deliveries/s: {median(rounds, 'rate'):,.0f} (median of {len(rounds)}; publish -> "
        "the last push's arrival at the stand-in)",
        f"edge CPU per delivery: {median(rounds, 'edge_us'):.0f} µs (median; publish "
        f"request, encryption, VAPID, HTTP POST); encryption alone {enc_us:.0f} µs "
        "(bench process, for reference)",
        f"edge RSS: {rss_before / KB:.1f} MB with {warm} devices, {rss_after / KB:.1f} MB "
        f"with {registered:,}: {per_reg:.2f} KB per registration (informational); "
        f"{rss_end / KB:.1f} MB after the rounds",
        f"edge_push_deliveries_total{{provider=\"webpush\"}}: sent {sent:,} of {expected:,} "
        f"queued (warm-up included), other outcomes {others or 'none'}: "
        f"{'OK' if ok_sent else 'MISMATCH'}",
        f"push service: {service_counts['total']:,} pushes received, "
        f"{service_counts['verified']} sampled (1 in {args.verify_every or '-'}) decrypted "
        f"with the device's keys, {service_counts['bad']} failed",
        f"registrations: {registered:,} in {reg_warm.secs + reg.secs:.1f}s "
        f"({REGISTER_CONCURRENCY} at a time)",
        "KB = 1024 B; CPU: /proc utime+stime of the process over the round (publish -> "
        f"{SETTLE:g}s after the last push) per push received; edge CPU %: share of one core "
        "from publish to the last push; spread: half the min-max range of deliveries/s",
        f"total {time.monotonic() - started:.0f}s",
    ]
    print("\n".join(lines))
    for w in warnings:
        print(f"WARNING: {w}")
    if args.json:
        print(json.dumps({
            "devices": n, "registered": registered, "rounds": args.rounds,
            "concurrency": args.concurrency, "warmup_devices": warm,
            "deliveries_per_s": median(rounds, "rate"),
            "edge_cpu_us_per_delivery": median(rounds, "edge_us"),
            "edge_cpu_share": median(rounds, "edge_busy"),
            "push_service_cpu_us_per_delivery": median(rounds, "service_us"),
            "publish_ack_ms": median(rounds, "ack_ms"),
            "first_push_ms": median(rounds, "first_ms"),
            "encrypt_alone_us": enc_us,
            "rss_kb": {"before_registering": rss_before, "after_registering": rss_after,
                       "after_rounds": rss_end, "per_registration": per_reg},
            "register_s": reg_warm.secs + reg.secs,
            "deliveries_total": outcomes, "expected_sent": expected, "sent_ok": ok_sent,
            "push_service": {k: service_counts[k] for k in ("total", "verified", "bad")},
            "per_round": [asdict(r) for r in rounds],
            "warnings": warnings,
        }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
