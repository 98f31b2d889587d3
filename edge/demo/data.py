"""The demo dataset: members, claims, providers, benefits, policies and notifications.

Generated from a fixed seed with one ``random.Random`` stream, once per process on first
use (``get_dataset()``), so tests and benchmarks see the same data every run.
"""

from __future__ import annotations

import itertools
import random
import threading
from dataclasses import dataclass

from edge.demo.clock import NOW, Json
from edge.demo.gen_claims import make_claims, make_notifications
from edge.demo.gen_people import MEMBER_IDS, PROVIDER_IDS, make_member, make_provider
from edge.demo.gen_policies import make_benefits, make_policy

__all__ = [
    "MEMBER_IDS", "NOW", "PROVIDER_IDS", "SEED", "Dataset", "Json", "generate", "get_dataset",
]  # fmt: skip

SEED = 20260314


@dataclass(frozen=True)
class Dataset:
    """All demo records plus the indexes the services look them up by.

    Records are plain JSON-ready dicts; treat them as read-only.
    """

    members: dict[str, Json]
    providers: dict[str, Json]
    claims: dict[str, Json]
    #: member id -> that member's claims, newest ``submitted_at`` first.
    claims_by_member: dict[str, list[Json]]
    #: every claim, newest ``submitted_at`` first.
    claims_newest_first: list[Json]
    #: document id -> id of the claim it belongs to.
    documents: dict[str, str]
    benefits: dict[str, Json]
    #: policy id ("POL-1001") -> policy.
    policies: dict[str, Json]
    #: member id -> notifications, newest first.
    notifications: dict[str, list[Json]]

    def policy_for_member(self, member_id: str) -> Json | None:
        """The member's policy, or None for an unknown member."""
        return self.policies.get(f"POL-{member_id}")


def _newest_first(claims: list[Json]) -> list[Json]:
    return sorted(claims, key=lambda claim: (claim["submitted_at"], claim["id"]), reverse=True)


def generate(seed: int = SEED) -> Dataset:
    """Build the whole dataset from ``seed``; equal seeds give equal datasets."""
    rng = random.Random(seed)
    members = {member_id: make_member(rng, member_id) for member_id in MEMBER_IDS}
    providers = {provider_id: make_provider(rng, provider_id) for provider_id in PROVIDER_IDS}
    provider_list = list(providers.values())
    claim_numbers, doc_numbers, notification_numbers = (itertools.count(1) for _ in range(3))
    claims_by_member: dict[str, list[Json]] = {}
    notifications: dict[str, list[Json]] = {}
    policies: dict[str, Json] = {}
    benefits: dict[str, Json] = {}
    for member_id, member in members.items():
        own = make_claims(rng, member_id, provider_list, claim_numbers, doc_numbers)
        claims_by_member[member_id] = _newest_first(own)
        notifications[member_id] = make_notifications(rng, member_id, own, notification_numbers)
        policy = make_policy(rng, member)
        policies[policy["id"]] = policy
        benefits[member_id] = make_benefits(rng, policy)
    all_claims = [claim for own in claims_by_member.values() for claim in own]
    return Dataset(
        members=members,
        providers=providers,
        claims={claim["id"]: claim for claim in all_claims},
        claims_by_member=claims_by_member,
        claims_newest_first=_newest_first(all_claims),
        documents={doc["id"]: claim["id"] for claim in all_claims for doc in claim["documents"]},
        benefits=benefits,
        policies=policies,
        notifications=notifications,
    )


_lock = threading.Lock()
_dataset: Dataset | None = None


def get_dataset() -> Dataset:
    """The process-wide dataset, generated on first call (thread-safe; ~0.5 s once)."""
    global _dataset
    if _dataset is None:
        with _lock:
            if _dataset is None:
                _dataset = generate()
    return _dataset
