"""The network class from every hint a client sends: Save-Data, ECT, Downlink and RTT
(RFC 8942 client hints, with thresholds in `devices.network`) and X-Network-Type; the
slowest wins. Routes that read it ask for the hints (Accept-CH, and Critical-CH when
configured), name them in Vary, and `edge explain` shows which hint said what."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict

from edge.config import ConfigError, Devices, load_config
from edge.context import DeviceClassifier
from edge.demo.services import SERVICES

from .conftest import services_yaml, write_config

ROUTES = {"r.yaml": """
routes:
  - route: GET /claims/{claim_id}
    source: {service: claims, path: "/claims/{claim_id}"}
    auth: {jwt: "off"}
    shape:
      fields:
        default: "*"
        slow: "id,status"
        medium: "id,status,total_amount,provider(name)"
"""}


@pytest.mark.parametrize("headers, network", [
    ({"Downlink": "0.3"}, "slow"),
    ({"Downlink": "0.4"}, "slow"),
    ({"Downlink": "1.0"}, "medium"),
    ({"Downlink": "10"}, "fast"),
    ({"RTT": "1500"}, "slow"),
    ({"RTT": "300"}, "medium"),
    ({"RTT": "50"}, "fast"),
    ({"ECT": "4g", "Downlink": "0.3"}, "slow"),  # the slowest sign wins
    ({"ECT": "2g", "Downlink": "10", "RTT": "50"}, "slow"),
    ({"X-Network-Type": "wifi", "RTT": "300"}, "medium"),
    ({"Save-Data": "on", "Downlink": "10"}, "slow"),
    ({"Downlink": "fast", "RTT": "-5"}, "unknown"),  # not numbers: ignored
    ({"Downlink": "1e9", "RTT": "99999999"}, "unknown"),
    ({}, "unknown"),
])
def test_the_network_class_from_every_hint(headers: dict[str, str], network: str) -> None:
    profile = DeviceClassifier(Devices()).profile(headers)
    assert profile.network == network
    assert set(profile.used_headers) == set(headers) - {"Downlink", "RTT"} | {
        h for h in ("Downlink", "RTT") if h in headers and network != "unknown"} \
        if "Save-Data" not in headers else {"Save-Data"}


def test_thresholds_come_from_the_config() -> None:
    devices = Devices.model_validate(
        {"network": {"slow": {"max_downlink": 1.0, "min_rtt": "2s"},
                     "medium": {"max_downlink": 5, "min_rtt": "500ms"}}})
    classify = DeviceClassifier(devices)
    assert classify.profile({"Downlink": "0.9"}).network == "slow"
    assert classify.profile({"Downlink": "4"}).network == "medium"
    assert classify.profile({"RTT": "1500"}).network == "medium"
    assert classify.profile({"RTT": "2000"}).network == "slow"
    by = classify.profile({"Downlink": "0.9", "ECT": "4g"}).network_by
    assert by == ("ECT: 4g → fast", "Downlink: 0.9 Mbit/s → slow")


def test_thresholds_out_of_order_are_refused_with_their_place(tmp_path: Path) -> None:
    write_config(tmp_path, "devices:\n  network:\n    slow: {max_downlink: 3}\n"
                 "    medium: {max_downlink: 1}\n", {})
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path, {})
    assert "edge.yaml:3:" in str(err.value)
    assert "slow.max_downlink must not be above medium.max_downlink" in str(err.value)


@pytest.fixture
async def claims(upstream: Any) -> str:
    return str(await upstream(SERVICES["claims"]()))


async def test_a_slow_downlink_gets_the_slow_body(make_edge: Any, claims: str) -> None:
    edge = await make_edge(services_yaml({"claims": claims}), ROUTES)
    full = await (await edge.get("/claims/CLM-000001")).json()
    slow = await edge.get("/claims/CLM-000001", headers={"Downlink": "0.3"})
    assert await slow.json() == {"id": full["id"], "status": full["status"]}
    medium = await (await edge.get("/claims/CLM-000001", headers={"RTT": "400"})).json()
    assert set(medium) == {"id", "status", "total_amount", "provider"}
    assert slow.headers["Accept-CH"] == "ECT, Downlink, RTT"
    assert "Critical-CH" not in slow.headers
    vary = slow.headers["Vary"].split(", ")
    assert {"Save-Data", "ECT", "Downlink", "RTT", "X-Network-Type"} <= set(vary)


async def test_critical_hints_and_explain(make_edge: Any, claims: str) -> None:
    extra = "devices:\n  network: {critical: true}\n"
    edge = await make_edge(services_yaml({"claims": claims}, extra), ROUTES)
    resp = await edge.get("/claims/CLM-000001")
    assert resp.headers["Critical-CH"] == "ECT, Downlink, RTT"
    record = await edge.edge.handler.explain(
        "GET", "/claims/CLM-000001", CIMultiDict({"Downlink": "0.3", "ECT": "3g"}))
    profile = next(s for s in record["steps"] if s["stage"] == "profile")
    assert profile["network"] == "slow"
    assert profile["network_by"] == ["ECT: 3g → medium", "Downlink: 0.3 Mbit/s → slow"]
