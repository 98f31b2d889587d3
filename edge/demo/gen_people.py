"""Generate members and providers for the demo dataset."""

from __future__ import annotations

import random
from datetime import date, timedelta

from edge.demo import vocab
from edge.demo.clock import NOW, Json, at_time, iso, random_date, random_moment

MEMBER_IDS = tuple(str(n) for n in range(1001, 1051))
PROVIDER_IDS = tuple(f"PRV-{n:03d}" for n in range(1, 41))
DEMO_ACTIVE_UNTIL = 1005

_MEMBER_NOTES = (
    "Prefers communication in Bahasa Indonesia",
    "Allergic to penicillin",
    "Requested paper statements",
    "Corporate group: PT Nusantara Digital",
)


def _phone(rng: random.Random) -> str:
    return f"+628{rng.choice('1257')}{rng.randint(10_000_000, 99_999_999)}{rng.randint(0, 9)}"


def _address(rng: random.Random) -> Json:
    city, province, postal_prefix, _, _ = rng.choice(vocab.CITIES)
    return {
        "street": f"{rng.choice(vocab.STREETS)} No. {rng.randint(1, 250)}",
        "address_line_2": rng.choice(("", "", f"RT {rng.randint(1, 12):03d}/RW 005", None)),
        "city": city,
        "province": province,
        "postal_code": f"{postal_prefix}{rng.randint(100, 999)}",
        "country": "Indonesia",
    }


def _dependent(rng: random.Random, member_id: str, index: int, last_name: str) -> Json:
    relationship = rng.choice(vocab.RELATIONSHIPS)
    years = {"spouse": (25, 60), "child": (0, 22), "parent": (55, 85)}[relationship]
    born = NOW.date() - timedelta(days=rng.randint(years[0] * 365, years[1] * 365))
    return {
        "id": f"{member_id}-D{index}",
        "first_name": rng.choice(vocab.FIRST_NAMES),
        "last_name": last_name if relationship != "parent" else rng.choice(vocab.LAST_NAMES),
        "relationship": relationship,
        "date_of_birth": born.isoformat(),
    }


def make_member(rng: random.Random, member_id: str) -> Json:
    """One member with address, plan, dependents and an optional emergency contact."""
    first, last = rng.choice(vocab.FIRST_NAMES), rng.choice(vocab.LAST_NAMES)
    born = random_date(rng, date(1955, 1, 1), date(2004, 12, 31))
    enrolled = random_date(rng, date(2019, 1, 1), date(2025, 12, 31))
    plan_id, plan_name, tier, _ = rng.choice(vocab.PLANS)
    emergency = None
    if rng.random() < 0.7:
        emergency = {
            "name": f"{rng.choice(vocab.FIRST_NAMES)} {rng.choice(vocab.LAST_NAMES)}",
            "relationship": rng.choice(("spouse", "sibling", "parent", "friend")),
            "phone": _phone(rng),
        }
    created = at_time(enrolled, rng)
    dependents = rng.randint(0, 4)
    status = rng.choices(("active", "suspended", "terminated"), (90, 6, 4))[0]
    if int(member_id) <= DEMO_ACTIVE_UNTIL:
        status = "active"  # the members demos log in as are always active
    return {
        "id": member_id,
        "member_number": f"MBR-{enrolled.year}-{int(member_id):06d}",
        "first_name": first,
        "last_name": last,
        "date_of_birth": born.isoformat(),
        "email": f"{first}.{last}{rng.randint(1, 99)}@{rng.choice(vocab.EMAIL_DOMAINS)}".lower(),
        "phone": _phone(rng),
        "address": _address(rng),
        "plan": {"id": plan_id, "name": plan_name, "tier": tier},
        "enrollment_date": enrolled.isoformat(),
        "status": status,
        "dependents": [_dependent(rng, member_id, i, last) for i in range(1, dependents + 1)],
        "emergency_contact": emergency,
        "preferred_language": rng.choice(("id", "id", "en")),
        "notes": rng.choice(_MEMBER_NOTES) if rng.random() < 0.3 else "",
        "created_at": iso(created),
        "updated_at": iso(random_moment(rng, created, NOW)),
    }


def _opening_hours(rng: random.Random, kind: str) -> Json:
    days = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    if kind == "hospital":
        return {day: "00:00-24:00" for day in days}
    opens, closes = rng.choice(("07:00", "08:00", "09:00")), rng.choice(("17:00", "21:00"))
    hours: Json = {day: f"{opens}-{closes}" for day in days[:5]}
    hours["saturday"] = f"{opens}-14:00"
    hours["sunday"] = None if rng.random() < 0.6 else f"{opens}-12:00"
    return hours


def make_provider(rng: random.Random, provider_id: str) -> Json:
    """One hospital, clinic or pharmacy with location, images and opening hours."""
    kind = rng.choices(("hospital", "clinic", "pharmacy"), (3, 4, 3))[0]
    city, province, postal_prefix, lat, lng = rng.choice(vocab.CITIES)
    name = f"{rng.choice(vocab.PROVIDER_PREFIXES[kind])} {rng.choice(vocab.PROVIDER_NAMES)}"
    pool = vocab.SPECIALTIES[kind]
    specialties = rng.sample(pool, rng.randint(1, min(4, len(pool))))
    base = f"/providers/{provider_id}"
    return {
        "id": provider_id,
        "name": name,
        "type": kind,
        "address": {
            "street": f"{rng.choice(vocab.STREETS)} No. {rng.randint(1, 400)}",
            "city": city,
            "province": province,
            "postal_code": f"{postal_prefix}{rng.randint(100, 999)}",
            "country": "Indonesia",
        },
        "location": {
            "lat": round(lat + rng.uniform(-0.05, 0.05), 6),
            "lng": round(lng + rng.uniform(-0.05, 0.05), 6),
        },
        "is_active": rng.random() < 0.9,
        "accepts_cashless": kind != "pharmacy" or rng.random() < 0.5,
        "specialties": specialties,
        "rating": round(rng.uniform(3.2, 4.9), 1),
        "logo_url": f"{base}/logo.png",
        "photos": [f"{base}/photos/{n}.jpg" for n in range(1, rng.randint(1, 5) + 1)],
        "phone": _phone(rng),
        "website": "" if rng.random() < 0.4 else f"https://{name.lower().replace(' ', '')}.co.id",
        "opening_hours": _opening_hours(rng, kind),
    }
