"""The claims service: list and detail over the dataset, plus POST /claims into a
per-app in-memory store whose creation count is exposed at GET /_stats."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, overload

import orjson
from aiohttp import web

from edge.demo import vocab
from edge.demo.clock import utc_now
from edge.demo.common import fail, json_response, make_app, paginate
from edge.demo.data import Dataset, Json, get_dataset

MAX_ITEMS = 50


@dataclass
class ClaimStore:
    """Claims created through POST /claims on one app instance, oldest first."""

    created: list[Json] = field(default_factory=list)
    by_id: dict[str, Json] = field(default_factory=dict)
    by_member: dict[str, list[Json]] = field(default_factory=dict)  # oldest first
    changed: dict[str, Json] = field(default_factory=dict)  # dataset claims changed since

    def add(self, claim: Json) -> None:
        self.created.append(claim)
        self.by_id[claim["id"]] = claim
        self.by_member.setdefault(claim["member_id"], []).append(claim)

    def current(self, claim: Json) -> Json:
        return self.changed.get(claim["id"], claim)


CLAIM_STORE = web.AppKey("claim_store", ClaimStore)


class _NewestFirst(Sequence[Json]):
    """Created claims (newest first: they were made now, after every dataset claim), then
    the dataset's, as they currently are — a view, so a page costs its own items however
    many claims were created."""

    def __init__(self, created: list[Json], dataset: Sequence[Json], store: ClaimStore
                 ) -> None:
        self.created, self.dataset, self.store = created, dataset, store

    def __len__(self) -> int:
        return len(self.created) + len(self.dataset)

    def _at(self, index: int) -> Json:
        made = len(self.created)
        claim = (self.created[made - 1 - index] if index < made
                 else self.dataset[index - made])
        return self.store.current(claim)

    @overload
    def __getitem__(self, index: int) -> Json: ...
    @overload
    def __getitem__(self, index: slice) -> list[Json]: ...
    def __getitem__(self, index: int | slice) -> Json | list[Json]:
        if isinstance(index, slice):
            return [self._at(i) for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return self._at(index % len(self))


async def list_claims(request: web.Request) -> web.Response:
    data, store = get_dataset(), request.app[CLAIM_STORE]
    member_id = request.query.get("member_id")
    status = request.query.get("status")
    if status is not None and status not in vocab.CLAIM_STATUSES:
        fail(422, f"status must be one of {', '.join(vocab.CLAIM_STATUSES)}", value=status)
    if member_id is None:
        pool: Sequence[Json] = _NewestFirst(store.created, data.claims_newest_first, store)
    else:
        pool = _NewestFirst(store.by_member.get(member_id, []),
                            data.claims_by_member.get(member_id, []), store)
    if status is not None:  # a member's claims are few; all claims by status: all of them
        pool = [claim for claim in pool if claim["status"] == status]
    return json_response(paginate(request, pool))


async def get_claim(request: web.Request) -> web.Response:
    claim_id = request.match_info["claim_id"]
    store = request.app[CLAIM_STORE]
    claim = store.by_id.get(claim_id) or get_dataset().claims.get(claim_id)
    if claim is None:
        fail(404, "claim not found")
    return json_response(store.current(claim))


async def set_status(request: web.Request) -> web.Response:
    """POST /claims/{id}/status {"status", "note"?}: a claim moves on (for cache demos)."""
    store = request.app[CLAIM_STORE]
    claim_id = request.match_info["claim_id"]
    claim = store.by_id.get(claim_id) or get_dataset().claims.get(claim_id)
    member_id = request.query.get("member_id")
    if claim is None or (member_id is not None and claim["member_id"] != member_id):
        fail(404, "claim not found")
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict) or body.get("status") not in vocab.CLAIM_STATUSES:
        fail(422, f"status must be one of {', '.join(vocab.CLAIM_STATUSES)}")
    now = utc_now()
    changed = {**store.current(claim), "status": body["status"], "updated_at": now}
    note = body.get("note")
    note = note[:200] if isinstance(note, str) else "Status changed"
    changed["history"] = [*changed["history"], {"status": body["status"], "at": now,
                                                "note": note}]
    if claim_id in store.by_id:
        store.by_id[claim_id] = changed
    store.changed[claim_id] = changed
    return json_response(changed)


def _positive_int(value: Any) -> bool:
    return type(value) is int and value > 0


def _validate_item(index: int, item: Any, errors: list[str]) -> Json | None:
    where = f"items[{index}]"
    if not isinstance(item, dict):
        errors.append(f"{where}: must be an object")
        return None
    code, amount = item.get("benefit_code"), item.get("amount")
    quantity, description = item.get("quantity", 1), item.get("description")
    if code not in vocab.BENEFIT_CODES:
        errors.append(f"{where}.benefit_code: unknown benefit code")
    if not _positive_int(amount):
        errors.append(f"{where}.amount: must be a positive integer (IDR)")
    if not _positive_int(quantity):
        errors.append(f"{where}.quantity: must be a positive integer")
    if description is not None and not isinstance(description, str):
        errors.append(f"{where}.description: must be a string")
    if code not in vocab.BENEFIT_CODES:
        return None
    return {
        "benefit_code": code,
        "description": description or vocab.BENEFIT_CODES[code][0],
        "amount": amount,
        "quantity": quantity,
    }


def _parse_date(value: Any) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _validate_new_claim(body: Any, data: Dataset) -> tuple[Json, list[str]]:
    """The fields of a new claim from a POST body, and what is wrong with it."""
    if not isinstance(body, dict):
        return {}, ["body: must be a JSON object"]
    errors: list[str] = []
    if body.get("member_id") not in data.members:
        errors.append("member_id: unknown member")
    if body.get("provider_id") not in data.providers:
        errors.append("provider_id: unknown provider")
    served = _parse_date(body.get("service_date"))
    if served is None:
        errors.append("service_date: must be a date like 2026-03-14")
    items = body.get("items")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_ITEMS:
        errors.append(f"items: must be a list of 1 to {MAX_ITEMS} items")
        items = []
    checked = [_validate_item(index, item, errors) for index, item in enumerate(items)]
    if errors:
        return {}, errors
    fields = {
        "member_id": body["member_id"],
        "provider_id": body["provider_id"],
        "service_date": served,
        "items": checked,
    }
    return fields, []


async def create_claim(request: web.Request) -> web.Response:
    data, store = get_dataset(), request.app[CLAIM_STORE]
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        fail(422, "invalid claim", details=["body: must be JSON"])
    fields, errors = _validate_new_claim(body, data)
    if errors:
        fail(422, "invalid claim", details=errors)
    number = len(data.claims) + len(store.created) + 1
    served: date = fields["service_date"]
    provider = data.providers[fields["provider_id"]]
    now = utc_now()
    items = fields["items"]
    claim = {
        "id": f"CLM-{number:06d}",
        "claim_number": f"KLM/{served.year}/{served.month:02d}/{number:06d}",
        "member_id": fields["member_id"],
        "provider": {
            "id": provider["id"],
            "name": provider["name"],
            "location": {"city": provider["address"]["city"], **provider["location"]},
        },
        "status": "submitted",
        "service_date": served.isoformat(),
        "submitted_at": now,
        "updated_at": now,
        "currency": "IDR",
        "total_amount": sum(item["amount"] * item["quantity"] for item in items),
        "approved_amount": None,
        "diagnosis": None,
        "rejection_reason": None,
        "items": items,
        "history": [{"status": "submitted", "at": now, "note": "Claim received via API"}],
        "documents": [],
    }
    store.add(claim)
    return json_response(claim, status=201, headers={"Location": f"/claims/{claim['id']}"})


async def stats(request: web.Request) -> web.Response:
    return json_response({"created": len(request.app[CLAIM_STORE].created)})


def claims_app() -> web.Application:
    """GET /claims?member_id=&status=&page=&size=, GET /claims/{id}, POST /claims,
    POST /claims/{id}/status, GET /_stats."""
    app = make_app(
        "claims",
        [
            web.get("/claims", list_claims),
            web.post("/claims", create_claim),
            web.get("/claims/{claim_id}", get_claim),
            web.post("/claims/{claim_id}/status", set_status),
            web.get("/_stats", stats),
        ],
    )
    app[CLAIM_STORE] = ClaimStore()
    return app
