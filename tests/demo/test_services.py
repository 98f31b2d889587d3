"""The demo upstream services, each driven through pytest-aiohttp's ``aiohttp_client``."""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from PIL import Image

from edge.demo.common import LATENCY_ENV
from edge.demo.data import MEMBER_IDS, PROVIDER_IDS, SEED, generate, get_dataset
from edge.demo.services import (
    SERVICES,
    benefits_app,
    members_app,
    notifications_app,
    policies_app,
    providers_app,
)
from edge.demo.upstreams import DEFAULT_PORTS, start_upstreams, stop_upstreams

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]


@pytest.fixture
async def client(aiohttp_client: Any) -> MakeClient:
    async def make(app: web.Application) -> Client:
        result: Client = await aiohttp_client(app)
        return result

    return make


async def get_json(client: Client, url: str, status: int = 200, **kwargs: Any) -> Any:
    response = await client.get(url, **kwargs)
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    return orjson.loads(await response.read())


# -- dataset -------------------------------------------------------------------------------


def test_generation_is_deterministic() -> None:
    first, second = generate(SEED), generate(SEED)
    assert first == second
    assert orjson.dumps(first.members) == orjson.dumps(second.members)
    assert generate(SEED + 1).members != first.members


def test_dataset_shape() -> None:
    data = get_dataset()
    assert list(data.members) == [str(n) for n in range(1001, 1051)] == list(MEMBER_IDS)
    assert list(data.providers) == list(PROVIDER_IDS) and len(PROVIDER_IDS) == 40
    assert all(20 <= len(own) <= 200 for own in data.claims_by_member.values())
    assert sum(len(own) for own in data.claims_by_member.values()) == len(data.claims)
    assert "CLM-000001" in data.claims
    assert all(re.fullmatch(r"CLM-\d{6}", claim_id) for claim_id in data.claims)
    for claim in data.claims.values():
        assert claim["total_amount"] == sum(i["amount"] * i["quantity"] for i in claim["items"])
        assert (claim["approved_amount"] is not None) == (claim["status"] in ("approved", "paid"))
        assert claim["history"][-1]["status"] == claim["status"]
    assert all(5 <= len(own) <= 30 for own in data.notifications.values())
    assert len(data.policies) == 50 and len(data.policies["POL-1001"]["terms"]) > 4000


# -- every service -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SERVICES))
async def test_healthz_and_json_errors(client: MakeClient, name: str) -> None:
    http = await client(SERVICES[name]())
    assert await get_json(http, "/healthz") == {"status": "ok", "service": name}
    assert await get_json(http, "/no/such/route", 404) == {"error": "not found"}


async def test_latency_knob_delays_requests_but_not_healthz(
    client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LATENCY_ENV, "150")
    http = await client(members_app())
    started = time.perf_counter()
    await get_json(http, "/healthz")
    assert time.perf_counter() - started < 0.1
    started = time.perf_counter()
    await get_json(http, "/members/1001")
    assert time.perf_counter() - started >= 0.15


def test_latency_knob_rejects_garbage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LATENCY_ENV, "fast")
    with pytest.raises(ValueError, match="EDGE_DEMO_LATENCY_MS must be a number"):
        members_app()


# -- members -------------------------------------------------------------------------------


async def test_member_detail_and_list(client: MakeClient) -> None:
    http = await client(members_app())
    member = await get_json(http, "/members/1001")
    expected = {
        "id", "member_number", "first_name", "last_name", "date_of_birth", "email", "phone",
        "address", "plan", "enrollment_date", "status", "dependents", "emergency_contact",
        "notes",
    }  # fmt: skip
    assert expected <= member.keys()
    assert member["member_number"].endswith("-001001") and member["phone"].startswith("+62")
    assert member["plan"]["name"] in ("Basic", "Standard", "Premium")
    assert {"street", "city", "province", "postal_code", "country"} <= member["address"].keys()
    assert await get_json(http, "/members/999", 404) == {"error": "member not found"}
    page = await get_json(http, "/members?page=3&size=20")
    assert (page["page"], page["size"], page["total"]) == (3, 20, 50)
    assert [m["id"] for m in page["items"]] == [str(n) for n in range(1041, 1051)]


# -- claims --------------------------------------------------------------------------------


async def test_claims_filter_and_paging(client: MakeClient) -> None:
    http = await client(SERVICES["claims"]())
    own = get_dataset().claims_by_member["1001"]
    paid = [claim for claim in own if claim["status"] == "paid"]
    first = await get_json(http, "/claims?member_id=1001&status=paid&size=5")
    paging = (first["page"], first["size"], first["total"], first["has_more"])
    assert paging == (1, 5, len(paid), True)
    assert [c["id"] for c in first["items"]] == [c["id"] for c in paid[:5]]
    times = [c["submitted_at"] for c in first["items"]]
    assert times == sorted(times, reverse=True)
    last_page = -(-len(paid) // 5)
    last = await get_json(http, f"/claims?member_id=1001&status=paid&size=5&page={last_page}")
    assert last["has_more"] is False and 1 <= len(last["items"]) <= 5
    default = await get_json(http, "/claims")
    assert default["size"] == 20 and default["total"] == len(get_dataset().claims)
    assert (await get_json(http, "/claims?size=500"))["size"] == 100
    assert (await get_json(http, "/claims?member_id=42"))["total"] == 0
    await get_json(http, "/claims?status=lost", 422)
    await get_json(http, "/claims?page=0", 422)
    claim = await get_json(http, "/claims/CLM-000001")
    assert claim["member_id"] == "1001" and claim["documents"] is not None
    await get_json(http, "/claims/CLM-999999", 404)


NEW_CLAIM = {
    "member_id": "1002",
    "provider_id": "PRV-003",
    "service_date": "2026-03-10",
    "items": [
        {"benefit_code": "CONS-GP", "amount": 250_000, "quantity": 1},
        {"benefit_code": "PHA-GEN", "amount": 45_000, "quantity": 3},
    ],
}


async def test_post_claim_creates_and_counts(client: MakeClient) -> None:
    http = await client(SERVICES["claims"]())
    assert await get_json(http, "/_stats") == {"created": 0}
    response = await http.post("/claims", json=NEW_CLAIM)
    assert response.status == 201
    created = await response.json()
    assert response.headers["Location"] == f"/claims/{created['id']}"
    assert created["id"] == f"CLM-{len(get_dataset().claims) + 1:06d}"
    assert (created["status"], created["total_amount"]) == ("submitted", 385_000)
    assert await get_json(http, response.headers["Location"]) == created
    listed = await get_json(http, "/claims?member_id=1002&status=submitted&size=100")
    assert created["id"] in [c["id"] for c in listed["items"]]
    await http.post("/claims", json=NEW_CLAIM)
    assert await get_json(http, "/_stats") == {"created": 2}


async def test_listing_claims_stays_a_page_however_many_are_created(
        client: MakeClient) -> None:
    """Created claims come first, newest first, in the member's list and in all claims;
    totals and pages count them; other members' creations are not in a member's list."""
    http = await client(SERVICES["claims"]())
    before = await get_json(http, "/claims?member_id=1002&size=100")
    everyone = (await get_json(http, "/claims?size=1"))["total"]
    other = next(m for m in get_dataset().members if m != "1002")
    made = []
    for n in range(60):
        body = {**NEW_CLAIM, "member_id": "1002" if n % 3 == 0 else other}
        response = await http.post("/claims", json=body)
        assert response.status == 201
        made.append(await response.json())
    mine = [c["id"] for c in reversed(made) if c["member_id"] == "1002"]
    page = await get_json(http, "/claims?member_id=1002&size=5&page=2")
    assert page["total"] == before["total"] + len(mine)
    assert [c["id"] for c in page["items"]] == mine[5:10]
    assert len(mine) == 20  # so page 2 of 20 is the dataset's first 20
    second = await get_json(http, "/claims?member_id=1002&size=20&page=2")
    assert [c["id"] for c in second["items"]] == [c["id"] for c in before["items"][:20]]
    first = await get_json(http, "/claims?size=3")
    assert first["total"] == everyone + 60
    assert [c["id"] for c in first["items"]] == [c["id"] for c in reversed(made[-3:])]
    submitted = await get_json(http, "/claims?member_id=1002&status=submitted&size=100")
    assert {c["id"] for c in submitted["items"]} >= set(mine)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"{not json", "body: must be JSON"),
        (b"[]", "body: must be a JSON object"),
        (orjson.dumps({**NEW_CLAIM, "member_id": "9"}), "member_id: unknown member"),
        (orjson.dumps({**NEW_CLAIM, "service_date": "soon"}), "service_date: must be a date"),
        (orjson.dumps({**NEW_CLAIM, "items": []}), "items: must be a list of 1 to 50 items"),
        (
            orjson.dumps({**NEW_CLAIM, "items": [{"benefit_code": "CONS-GP", "amount": -1}]}),
            "items[0].amount: must be a positive integer (IDR)",
        ),
    ],
)
async def test_post_claim_rejects_bad_input(client: MakeClient, body: bytes, detail: str) -> None:
    http = await client(SERVICES["claims"]())
    response = await http.post("/claims", data=body, headers={"Content-Type": "application/json"})
    assert response.status == 422
    error = await response.json()
    assert error["error"] == "invalid claim"
    assert any(d.startswith(detail) for d in error["details"]), error
    assert await get_json(http, "/_stats") == {"created": 0}


# -- providers and images ------------------------------------------------------------------


async def test_providers(client: MakeClient) -> None:
    http = await client(providers_app())
    provider = await get_json(http, "/providers/PRV-001")
    assert provider["logo_url"] == "/providers/PRV-001/logo.png"
    assert provider["photos"][0] == "/providers/PRV-001/photos/1.jpg"
    city = provider["address"]["city"]
    found = await get_json(http, "/providers", params={"city": city.upper(), "size": 100})
    assert found["total"] >= 1 and all(p["address"]["city"] == city for p in found["items"])
    pharmacies = await get_json(http, "/providers?type=pharmacy&size=100")
    assert pharmacies["total"] >= 1 and {p["type"] for p in pharmacies["items"]} == {"pharmacy"}
    jakarta = await get_json(http, "/providers?city=jakarta&size=100")
    cities = {p["address"]["city"] for p in jakarta["items"]}
    assert cities and all(c.startswith("Jakarta ") for c in cities)
    await get_json(http, "/providers?type=spa", 422)
    await get_json(http, "/providers/PRV-999", 404)


@pytest.mark.parametrize(
    ("url", "fmt", "size"),
    [
        ("/providers/PRV-001/logo.png", "PNG", (512, 512)),
        ("/providers/PRV-001/photos/1.jpg", "JPEG", (1600, 1200)),
        ("/providers/documents/DOC-000001.jpg", "JPEG", (1200, 1600)),
    ],
)
async def test_images_are_real_and_revalidate(
    client: MakeClient, url: str, fmt: str, size: tuple[int, int]
) -> None:
    http = await client(providers_app())
    response = await http.get(url)
    assert response.status == 200
    body = await response.read()
    with Image.open(io.BytesIO(body)) as image:
        assert (image.format, image.size) == (fmt, size)
        image.load()
    etag = response.headers["ETag"]
    assert response.headers["Last-Modified"]
    again = await http.get(url)
    assert await again.read() == body and again.headers["ETag"] == etag
    cached = await http.get(url, headers={"If-None-Match": etag})
    assert cached.status == 304


async def test_unknown_images_are_404(client: MakeClient) -> None:
    http = await client(providers_app())
    photos = len(get_dataset().providers["PRV-002"]["photos"])
    await get_json(http, f"/providers/PRV-002/photos/{photos + 1}.jpg", 404)
    await get_json(http, "/providers/PRV-999/logo.png", 404)
    await get_json(http, "/providers/documents/DOC-999999.jpg", 404)


# -- benefits, policies, notifications -----------------------------------------------------


async def test_benefits_summary_and_check(client: MakeClient) -> None:
    http = await client(benefits_app())
    summary = await get_json(http, "/benefits/1001/summary")
    assert summary["remaining_amount"] == summary["annual_limit"] - summary["used_amount"]
    assert isinstance(summary["usage_percentage"], float)
    assert sum(c["used"] for c in summary["categories"]) == summary["used_amount"]
    await get_json(http, "/benefits/9999/summary", 404)

    check = {"member_id": "1001", "benefit_code": "CONS-GP", "amount": 100_000}
    response = await http.post("/benefits/check", json=check)
    result = await response.json()
    assert result["eligible"] is True and result["reason"] == "covered"
    assert result["copay_amount"] == 100_000 * result["copay_percentage"] // 100
    too_much = await http.post("/benefits/check", json={**check, "amount": 10**12})
    assert (await too_much.json())["eligible"] is False
    bad = await http.post("/benefits/check", json={**check, "benefit_code": "SPA-01"})
    assert bad.status == 422


async def test_policy_etag_and_304(client: MakeClient) -> None:
    http = await client(policies_app())
    response = await http.get("/policies/POL-1001")
    assert response.status == 200 and response.content_type == "application/json"
    policy = await response.json()
    assert policy["holder"]["member_id"] == "1001" and len(policy["terms"]) > 4000
    assert set(policy["coverage"]) == {"inpatient", "outpatient", "dental", "optical", "maternity"}
    etag = response.headers["ETag"]
    assert response.headers["Last-Modified"]
    for if_none_match in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        cached = await http.get("/policies/POL-1001", headers={"If-None-Match": if_none_match})
        assert cached.status == 304, if_none_match
        assert cached.headers["ETag"] == etag and await cached.read() == b""
    stale = await http.get("/policies/POL-1001", headers={"If-None-Match": '"stale"'})
    assert stale.status == 200
    listed = await get_json(http, "/policies?member_id=1001")
    assert [p["id"] for p in listed["items"]] == ["POL-1001"]
    await get_json(http, "/policies/POL-0", 404)


async def test_notifications_unread_filter(client: MakeClient) -> None:
    http = await client(notifications_app())
    own = get_dataset().notifications["1001"]
    unread = await get_json(http, "/notifications?member_id=1001&unread=true&size=100")
    assert [n["id"] for n in unread["items"]] == [n["id"] for n in own if not n["read"]]
    assert unread["unread_count"] == unread["total"]
    read = await get_json(http, "/notifications?member_id=1001&unread=false&size=100")
    assert read["total"] + unread["total"] == len(own)
    await get_json(http, "/notifications?unread=maybe", 422)


# -- chaos ---------------------------------------------------------------------------------


async def test_big_streams_exactly_n_mib(client: MakeClient) -> None:
    http = await client(SERVICES["chaos"]())
    response = await http.get("/big?mb=3")
    assert response.headers["Content-Length"] == str(3 * 1024 * 1024)
    total = 0
    async for chunk in response.content.iter_any():
        total += len(chunk)
    assert total == 3 * 1024 * 1024


async def test_drip_delivers_chunks_as_they_are_written(client: MakeClient) -> None:
    http = await client(SERVICES["chaos"]())
    response = await http.get("/drip?chunks=3&interval=150")
    assert response.headers["Transfer-Encoding"] == "chunked"
    arrivals, lines = [], []
    while line := await response.content.readline():
        arrivals.append(time.perf_counter())
        lines.append(orjson.loads(line))
    assert [line["seq"] for line in lines] == [0, 1, 2]
    assert all(b - a >= 0.1 for a, b in zip(arrivals, arrivals[1:], strict=False))


async def test_malformed_is_invalid_json(client: MakeClient) -> None:
    http = await client(SERVICES["chaos"]())
    response = await http.get("/malformed")
    assert response.status == 200 and response.content_type == "application/json"
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(await response.read())


async def test_drop_breaks_the_body(client: MakeClient) -> None:
    http = await client(SERVICES["chaos"]())
    response = await http.get("/drop")
    assert response.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()


async def test_echo_reports_what_arrived(client: MakeClient) -> None:
    http = await client(SERVICES["chaos"]())
    body = bytes(range(256)) * 1024
    headers = {"X-Trace": "t-1", "Content-Type": "application/octet-stream"}
    response = await http.post("/echo/some/path?a=1&a=2", data=body, headers=headers)
    echo = await response.json()
    assert (echo["method"], echo["path"]) == ("POST", "/echo/some/path")
    assert (echo["query_string"], echo["query"]) == ("a=1&a=2", {"a": ["1", "2"]})
    assert echo["headers"]["X-Trace"] == "t-1"
    assert ["X-Trace", "t-1"] in echo["header_list"]
    assert echo["body_length"] == len(body)
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert echo["body"] is None  # too big (and not UTF-8) to echo back
    small = await (await http.get("/echo", headers={"Accept": "text/plain"})).json()
    assert (small["method"], small["body_length"], small["body"]) == ("GET", 0, "")


async def test_status_flaky_and_slow(client: MakeClient) -> None:
    http = await client(SERVICES["chaos"]())
    assert (await get_json(http, "/status/503", 503))["status"] == 503
    assert (await http.get("/status/204")).status == 204
    await get_json(http, "/status/99", 422)
    statuses = [(await http.get("/flaky")).status for _ in range(4)]
    assert statuses == [500, 200, 500, 200]
    started = time.perf_counter()
    assert (await get_json(http, "/slow?seconds=0.1"))["slept_seconds"] == 0.1
    assert time.perf_counter() - started >= 0.1
    with pytest.raises(asyncio.TimeoutError):
        await http.get("/slow?seconds=5", timeout=aiohttp.ClientTimeout(total=0.1))


# -- upstreams -----------------------------------------------------------------------------


async def test_start_upstreams_on_free_ports() -> None:
    assert set(DEFAULT_PORTS) == set(SERVICES)
    upstreams = await start_upstreams({"members": 0, "chaos": 0})
    try:
        assert [u.name for u in upstreams] == ["members", "chaos"]
        async with aiohttp.ClientSession() as session:
            for upstream in upstreams:
                assert re.fullmatch(r"http://127\.0\.0\.1:\d+", upstream.url)
                async with session.get(f"{upstream.url}/healthz") as response:
                    assert (await response.json())["service"] == upstream.name
    finally:
        await stop_upstreams(upstreams)
    with pytest.raises(ValueError, match="unknown demo services: billing"):
        await start_upstreams({"billing": 0})
