"""Generate claims and notifications for the demo dataset."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta

from edge.demo import vocab
from edge.demo.clock import NOW, Json, at_time, iso, random_date

_CODES_BY_PROVIDER_TYPE = {
    "pharmacy": ("PHA-GEN", "PHA-BRD"),
    "clinic": ("CONS-GP", "CONS-SP", "LAB-BLD", "LAB-URN", "PHA-GEN", "DEN-SCL", "DEN-FIL"),
    "hospital": tuple(vocab.BENEFIT_CODES),
}
_DIAGNOSES = (
    ("J06.9", "Acute upper respiratory infection"),
    ("A09", "Gastroenteritis"),
    ("I10", "Essential hypertension"),
    ("E11.9", "Type 2 diabetes mellitus"),
    ("K02.9", "Dental caries"),
    ("H52.1", "Myopia"),
    ("M54.5", "Low back pain"),
)
_FIRST_SERVICE_DATE = date(2024, 1, 1)


def _provider_ref(provider: Json) -> Json:
    """The provider block a claim embeds: id, name, and location with its city."""
    location = provider["location"]
    return {
        "id": provider["id"],
        "name": provider["name"],
        "location": {
            "city": provider["address"]["city"],
            "lat": location["lat"],
            "lng": location["lng"],
        },
    }


def _items(rng: random.Random, provider_type: str) -> list[Json]:
    codes = rng.sample(_CODES_BY_PROVIDER_TYPE[provider_type], rng.randint(1, 2))
    items = []
    for code in codes:
        description, low, high = vocab.BENEFIT_CODES[code]
        quantity = rng.randint(1, 5) if code.startswith(("PHA", "INP-ROOM")) else 1
        amount = rng.randint(low // 1000, high // 1000) * 1000
        item = {"benefit_code": code, "description": description, "amount": amount}
        items.append(item | {"quantity": quantity})
    return items


def _status_path(rng: random.Random, age: timedelta) -> list[str]:
    """The statuses a claim went through, ending with its current one."""
    if age < timedelta(days=2):
        length = rng.choice((1, 1, 2))
    elif age < timedelta(days=14):
        length = rng.choice((1, 2, 2, 3, 4))
    else:
        length = rng.choices((2, 3, 4), (1, 2, 12))[0]
    path = ["submitted", "processing", "approved", "paid"][:length]
    if length >= 3 and rng.random() < 0.12:
        path = ["submitted", "processing", "rejected"]
    return path


def _history(rng: random.Random, path: Sequence[str], submitted: datetime) -> list[Json]:
    room = (NOW - submitted) / max(len(path), 1)
    moment, history = submitted, []
    for index, status in enumerate(path):
        if index:
            moment += min(timedelta(hours=rng.randint(2, 96)), room)
        note = rng.choice(vocab.HISTORY_NOTES[status])
        history.append({"status": status, "at": iso(moment), "note": note})
    return history


def _documents(rng: random.Random, docs: Iterator[int]) -> list[Json]:
    documents = []
    for _ in range(rng.randint(0, 3)):
        doc_id = f"DOC-{next(docs):06d}"
        kind = rng.choice(vocab.DOCUMENT_KINDS)
        documents.append(
            {"id": doc_id, "kind": kind, "image_url": f"/providers/documents/{doc_id}.jpg"}
        )
    return documents


def make_claims(
    rng: random.Random,
    member_id: str,
    providers: Sequence[Json],
    seq: Iterator[int],
    docs: Iterator[int],
) -> list[Json]:
    """20–200 claims for one member; ``seq`` and ``docs`` hand out the global numbers."""
    claims: list[Json] = []
    for _ in range(rng.randint(20, 200)):
        number = next(seq)
        provider = rng.choice(providers)
        served = random_date(rng, _FIRST_SERVICE_DATE, NOW.date() - timedelta(days=1))
        submitted = at_time(min(served + timedelta(days=rng.randint(0, 6)), NOW.date()), rng)
        if submitted > NOW:
            submitted = NOW - timedelta(minutes=rng.randint(1, 9 * 60))
        path = _status_path(rng, NOW - submitted)
        status = path[-1]
        items = _items(rng, provider["type"])
        total = sum(item["amount"] * item["quantity"] for item in items)
        approved = None
        if status in ("approved", "paid"):
            share = 1.0 if rng.random() < 0.7 else rng.uniform(0.6, 1)
            approved = round(total * share / 1000) * 1000
        diagnosis = None
        if rng.random() < 0.8:
            code, description = rng.choice(_DIAGNOSES)
            diagnosis = {"code": code, "description": description}
        documents = _documents(rng, docs)
        history = _history(rng, path, submitted)
        claim: Json = {
            "id": f"CLM-{number:06d}",
            "claim_number": f"KLM/{served.year}/{served.month:02d}/{number:06d}",
            "member_id": member_id,
            "provider": _provider_ref(provider),
            "status": status,
            "service_date": served.isoformat(),
            "submitted_at": iso(submitted),
            "updated_at": history[-1]["at"],
            "currency": "IDR",
            "total_amount": total,
            "approved_amount": approved,
            "diagnosis": diagnosis,
            "rejection_reason": history[-1]["note"] if status == "rejected" else None,
            "items": items,
            "history": history,
            "documents": documents,
        }
        claims.append(claim)
    return claims


def make_notifications(
    rng: random.Random, member_id: str, claims: Sequence[Json], seq: Iterator[int]
) -> list[Json]:
    """5–30 notifications for one member, newest first."""
    notifications: list[Json] = []
    for _ in range(rng.randint(5, 30)):
        kind = rng.choice(vocab.NOTIFICATION_KINDS)
        claim = rng.choice(claims)
        title, body = rng.choice(vocab.NOTIFICATION_TEXT[kind])
        values = {
            "claim": claim["claim_number"],
            "status": claim["status"],
            "amount": f"{claim['approved_amount'] or claim['total_amount']:,}".replace(",", "."),
            "date": (NOW.date() + timedelta(days=rng.randint(10, 90))).isoformat(),
        }
        created = NOW - timedelta(minutes=rng.randint(5, 60 * 24 * 120))
        about_claim = kind in ("claim_update", "payment")
        notification: Json = {
            "id": f"NTF-{next(seq):06d}",
            "member_id": member_id,
            "kind": kind,
            "title": title.format(**values),
            "body": body.format(**values),
            "read": created < NOW - timedelta(days=3) and rng.random() < 0.8,
            "deep_link": f"app://claims/{claim['id']}" if about_claim else None,
            "created_at": iso(created),
        }
        notifications.append(notification)
    notifications.sort(key=lambda n: n["created_at"], reverse=True)
    return notifications
