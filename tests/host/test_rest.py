"""REST API: reads, token-guarded writes, error codes and the OpenAPI document."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from http_fakes import FakeDaemon
from hypothesis import given
from hypothesis import strategies as st

from rackctl.http_server import create_app, parse_bind
from rackctl.openapi import openapi_document

pytestmark = pytest.mark.timeout(30)

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def daemon() -> FakeDaemon:
    return FakeDaemon()


@pytest.fixture
async def client(daemon: FakeDaemon) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(create_app(daemon, TOKEN))) as c:
        yield c


async def test_list_devices(client: TestClient) -> None:
    resp = await client.get("/api/devices")
    assert resp.status == 200
    body = await resp.json()
    assert [(d["id"], d["board"], d["online"]) for d in body] == [
        (1, "power_shelf", True),
        (2, "cdu", False),
    ]
    assert body[0]["identity"]["serial"] == "A1"


async def test_device_detail_lists_registers(client: TestClient) -> None:
    body = await (await client.get("/api/devices/1")).json()
    regs = {r["name"]: r for r in body["registers"]}
    assert regs["ovp_limit"]["access"] == "protected"
    assert regs["vout_setpoint"]["min"] == 48.0


@pytest.mark.parametrize("path", ["/api/devices/9", "/api/devices/x", "/api/devices/9/values"])
async def test_unknown_device_is_404(client: TestClient, path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 404
    assert "error" in await resp.json()


async def test_values(client: TestClient) -> None:
    body = await (await client.get("/api/devices/1/values")).json()
    assert body["dc_bus_v"] == {"value": 48.25, "unit": "V", "ts": 1090.0}
    assert body["model"]["value"] == "PS-6"


async def test_history_range_and_resolution(client: TestClient) -> None:
    resp = await client.get(
        "/api/devices/1/history", params={"register": "dc_bus_v", "from": "1020", "to": "1050"}
    )
    body = await resp.json()
    assert [p[0] for p in body["points"]] == [1020.0, 1030.0, 1040.0]  # [from, to)
    assert all(len(p) == 2 for p in body["points"])
    resp = await client.get(
        "/api/devices/1/history",
        params={"register": "dc_bus_v", "from": "1000", "to": "1090", "resolution": "50"},
    )
    points = (await resp.json())["points"]
    assert [p[0] for p in points] == [1000.0, 1050.0]
    ts, avg, lo, hi = points[0]
    assert (avg, lo, hi) == (pytest.approx(48.2), 48.0, pytest.approx(48.4))


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({}, 400),
        ({"register": "nope"}, 404),
        ({"register": "dc_bus_v", "from": "yesterday"}, 400),
        ({"register": "dc_bus_v", "from": "nan"}, 400),
        ({"register": "dc_bus_v", "to": "inf"}, 400),
        ({"register": "dc_bus_v", "from": "2000", "to": "1000"}, 400),
        ({"register": "dc_bus_v", "resolution": "-1"}, 400),
    ],
)
async def test_history_bad_queries(client: TestClient, params: dict, status: int) -> None:
    resp = await client.get("/api/devices/1/history", params=params)
    assert resp.status == status
    assert (await resp.json())["error"]


async def test_alarms_and_active_filter(client: TestClient) -> None:
    all_alarms = await (await client.get("/api/alarms")).json()
    assert [a["id"] for a in all_alarms] == [1, 2, 3]
    active = await (await client.get("/api/alarms", params={"active": "true"})).json()
    assert [a["id"] for a in active] == [1, 3]


async def test_counters(client: TestClient) -> None:
    body = await (await client.get("/api/counters")).json()
    assert body["2"]["timeouts"] == 7


WRITE_PATHS = [
    "/api/devices/1/registers/vout_setpoint",
    "/api/devices/1/registers/does_not_exist",
    "/api/devices/99/registers/x",
    "/api/alarms/1/ack",
    "/api/alarms/999/ack",
]


@pytest.mark.parametrize("path", WRITE_PATHS)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["none", "wrong", "basic"],
)
async def test_writes_without_token_are_401_before_body(
    client: TestClient, daemon: FakeDaemon, path: str, headers: dict
) -> None:
    # invalid JSON and unknown names must not change the answer: auth comes first
    resp = await client.post(path, data=b"{not json", headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert daemon.writes == []
    assert not daemon.alarms.list()[0].acked


async def test_no_token_configured_disables_writes(daemon: FakeDaemon) -> None:
    async with TestClient(TestServer(create_app(daemon, None))) as c:
        resp = await c.post(
            "/api/devices/1/registers/vout_setpoint", json={"value": 50}, headers=AUTH
        )
        assert resp.status == 401
        resp = await c.post(
            "/api/devices/1/registers/vout_setpoint", json={"value": 50},
            headers={"Authorization": "Bearer "},
        )
        assert resp.status == 401
    assert daemon.writes == []


async def test_write_ok(client: TestClient, daemon: FakeDaemon) -> None:
    resp = await client.post(
        "/api/devices/1/registers/vout_setpoint", json={"value": 50.5}, headers=AUTH
    )
    assert resp.status == 200
    assert await resp.json() == {"device": 1, "register": "vout_setpoint", "value": 50.5}
    assert daemon.writes == [(1, "vout_setpoint", 50.5, False)]


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/api/devices/1/registers/vout_setpoint", {"value": 99}, 400),
        ("/api/devices/1/registers/vout_setpoint", {"value": True}, 400),
        ("/api/devices/1/registers/vout_setpoint", {"val": 50}, 400),
        ("/api/devices/1/registers/vout_setpoint", [50], 400),
        ("/api/devices/1/registers/vout_setpoint", {"value": 50, "unlock": "yes"}, 400),
        ("/api/devices/1/registers/nope", {"value": 50}, 404),
        ("/api/devices/7/registers/vout_setpoint", {"value": 50}, 404),
        ("/api/devices/1/registers/ovp_limit", {"value": 55}, 403),
        ("/api/devices/1/registers/dc_bus_v", {"value": 55}, 403),
    ],
)
async def test_write_errors(
    client: TestClient, daemon: FakeDaemon, path: str, body: object, status: int
) -> None:
    resp = await client.post(path, data=json.dumps(body), headers=AUTH)
    assert resp.status == status
    assert (await resp.json())["error"]
    assert daemon.writes == []


async def test_write_invalid_json_with_token_is_400(client: TestClient) -> None:
    resp = await client.post(
        "/api/devices/1/registers/vout_setpoint", data=b"{not json", headers=AUTH
    )
    assert resp.status == 400


async def test_protected_write_with_unlock(client: TestClient, daemon: FakeDaemon) -> None:
    resp = await client.post(
        "/api/devices/1/registers/ovp_limit", json={"value": 55, "unlock": True}, headers=AUTH
    )
    assert resp.status == 200
    assert daemon.writes == [(1, "ovp_limit", 55, True)]


async def test_ack_alarm(client: TestClient, daemon: FakeDaemon) -> None:
    resp = await client.post("/api/alarms/1/ack", headers=AUTH)
    assert resp.status == 200
    assert (await resp.json())["acked"] is True
    assert daemon.alarms.list()[0].acked
    assert (await client.post("/api/alarms/999/ack", headers=AUTH)).status == 404


async def test_openapi_documents_every_route(client: TestClient) -> None:
    doc = await (await client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    documented = {
        (method.upper(), path) for path, ops in doc["paths"].items() for method in ops
    }
    served = set()
    for route in client.app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if path.startswith("/api/") and route.method != "HEAD":
            served.add((route.method, path))
    assert served == documented
    # every write is declared as needing the bearer token
    for (method, path) in documented:
        op = doc["paths"][path][method.lower()]
        assert ("security" in op) == (method == "POST")
        assert "401" in op["responses"] or method == "GET"


def test_openapi_refs_resolve() -> None:
    doc = openapi_document()
    schemas = doc["components"]["schemas"]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if ref is not None:
                assert ref.removeprefix("#/components/schemas/") in schemas, ref
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)


async def test_metrics_served(client: TestClient) -> None:
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert "rack_register_volts" in await resp.text()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:9000", ("127.0.0.1", 9000)), (":9000", ("127.0.0.1", 9000)),
     ("9000", ("127.0.0.1", 9000)), ("[::1]:80", ("::1", 80)), ("0.0.0.0:0", ("0.0.0.0", 0))],
)
def test_parse_bind(text: str, expected: tuple[str, int]) -> None:
    assert parse_bind(text) == expected


@pytest.mark.parametrize("text", ["host:port", "1.2.3.4:70000", ""])
def test_parse_bind_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_bind(text)


@given(
    st.sampled_from(["127.0.0.1", "0.0.0.0", "localhost", "::1", ""]),
    st.integers(0, 65535),
)
def test_parse_bind_round_trip(host: str, port: int) -> None:
    text = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    assert parse_bind(text) == (host or "127.0.0.1", port)
