"""Generate policies (with their long terms text) and benefit summaries."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

from edge.demo import vocab
from edge.demo.clock import NOW, Json, iso, random_moment

#: Coverage kinds each plan tier includes; others are present but not covered.
_COVERED_BY_TIER = {
    1: ("inpatient", "outpatient"),
    2: ("inpatient", "outpatient", "dental", "optical"),
    3: ("inpatient", "outpatient", "dental", "optical", "maternity"),
}
_COPAY_BY_TIER = {1: 20, 2: 10, 3: 0}
# Share of the annual limit each coverage kind may use.
_COVERAGE_SHARE = {
    "inpatient": 0.6,
    "outpatient": 0.25,
    "dental": 0.05,
    "optical": 0.04,
    "maternity": 0.1,
}
_SECTIONS = (
    "Definitions", "Scope of Cover", "Waiting Periods", "Exclusions", "Claims Procedure",
    "Cashless Facilities", "Reimbursement", "Premium and Grace Period", "Renewal and Cancellation",
    "Coordination of Benefits", "Complaints and Disputes", "Governing Law",
)  # fmt: skip


def _round(amount: float, unit: int = 100_000) -> int:
    return int(amount // unit) * unit


def _sentence(rng: random.Random) -> str:
    return (
        f"{rng.choice(vocab.TERMS_SUBJECTS)} {rng.choice(vocab.TERMS_VERBS)} "
        f"{rng.choice(vocab.TERMS_OBJECTS)}, {rng.choice(vocab.TERMS_QUALIFIERS)}."
    )


def make_terms(rng: random.Random) -> str:
    """Several KB of insurance wording in numbered sections and clauses."""
    sections = []
    for number, title in enumerate(_SECTIONS, start=1):
        clauses = [
            f"{number}.{clause} " + " ".join(_sentence(rng) for _ in range(rng.randint(2, 4)))
            for clause in range(1, rng.randint(2, 4) + 1)
        ]
        sections.append(f"{number}. {title.upper()}\n" + "\n".join(clauses))
    return "\n\n".join(sections)


def make_policy(rng: random.Random, member: Json) -> Json:
    """The member's current policy: holder, coverage per kind, period and terms."""
    tier = member["plan"]["tier"]
    annual_limit = next(plan[3] for plan in vocab.PLANS if plan[2] == tier)
    enrolled = date.fromisoformat(member["enrollment_date"])
    start = date(NOW.year - 1, enrolled.month, min(enrolled.day, 28))
    if start + timedelta(days=365) <= NOW.date():
        start = date(NOW.year, start.month, start.day)
    issued = datetime(start.year, start.month, start.day, tzinfo=UTC)
    one_day = timedelta(days=1)
    coverage = {}
    for kind, share in _COVERAGE_SHARE.items():
        covered = kind in _COVERED_BY_TIER[tier]
        coverage[kind] = {
            "covered": covered,
            "limit": _round(annual_limit * share) if covered else None,
            "copay_percentage": _COPAY_BY_TIER[tier] if covered else None,
        }
    return {
        "id": f"POL-{member['id']}",
        "policy_number": f"IDH/{start.year}/{tier}/{int(member['id']):06d}",
        "holder": {
            "member_id": member["id"],
            "name": f"{member['first_name']} {member['last_name']}",
        },
        "plan": member["plan"],
        "coverage": coverage,
        "insured_dependents": [dependent["id"] for dependent in member["dependents"]],
        "effective_from": start.isoformat(),
        "effective_to": (date(start.year + 1, start.month, start.day) - one_day).isoformat(),
        "currency": "IDR",
        "annual_limit": annual_limit,
        "terms": make_terms(rng),
        "version": rng.randint(1, 6),
        "updated_at": iso(random_moment(rng, issued - timedelta(days=30), NOW - one_day)),
    }


def make_benefits(rng: random.Random, policy: Json) -> Json:
    """The member's benefit usage this plan year, per category."""
    annual_limit = policy["annual_limit"]
    categories: list[Json] = []
    for code, name, kind in vocab.CATEGORIES:
        coverage = policy["coverage"][kind]
        if not coverage["covered"]:
            limit = used = 0
        else:
            sharing = sum(1 for category in vocab.CATEGORIES if category[2] == kind)
            limit = _round(coverage["limit"] / sharing)
            used = _round(limit * rng.uniform(0, 0.9) if rng.random() < 0.7 else 0, 1_000)
        categories.append(
            {"code": code, "name": name, "limit": limit, "used": used, "remaining": limit - used}
        )
    used_amount = sum(category["used"] for category in categories)
    return {
        "member_id": policy["holder"]["member_id"],
        "policy_id": policy["id"],
        "plan_year": NOW.year,
        "currency": "IDR",
        "annual_limit": annual_limit,
        "used_amount": used_amount,
        "remaining_amount": annual_limit - used_amount,
        "usage_percentage": round(used_amount * 100 / annual_limit, 1),
        "categories": categories,
        "updated_at": iso(random_moment(rng, NOW - timedelta(days=3), NOW)),
    }
