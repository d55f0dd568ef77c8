"""The request id and the JSON access log, in process: the node's app (api.app.make_app) over
plain HTTP (aiohttp's test server), its log lines captured through appliance.logs.configure."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest
import pytest_asyncio
import schemathesis

from api.openapi import ROUTES, openapi_document
from appliance import logs
from tests.bare_node import bare_app_client

FRESH = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture
def captured():
    """The node's log lines (JSON) while the test runs; the root logger restored after."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()
    logs.configure("node-1", level=logging.INFO, stream=out)
    yield out
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in saved[0]:
        root.addHandler(h)
    root.setLevel(saved[1])
    logs.set_node(None)


@pytest_asyncio.fixture
async def client(tmp_path):
    async with bare_app_client(tmp_path) as c:
        yield c


def _events(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


@pytest.mark.asyncio
@pytest.mark.parametrize("given", ["abc-123", "A.b_c-9", "x" * 64])
async def test_a_well_formed_id_is_echoed(client, captured, given):
    resp = await client.get("/healthz", headers={"X-Request-Id": given})
    assert resp.status == 200
    assert resp.headers["X-Request-Id"] == given


@pytest.mark.asyncio
@pytest.mark.parametrize("given", [None, "", "x" * 65, "a b", "a/b", "id;drop", "ünï"])
async def test_a_missing_or_malformed_id_is_replaced_by_a_fresh_one(client, captured, given):
    headers = {} if given is None else {"X-Request-Id": given}
    first = await client.get("/healthz", headers=headers)
    second = await client.get("/healthz", headers=headers)
    assert FRESH.match(first.headers["X-Request-Id"])
    assert FRESH.match(second.headers["X-Request-Id"])
    assert first.headers["X-Request-Id"] != second.headers["X-Request-Id"]


@pytest.mark.asyncio
async def test_refusals_carry_the_id(client, captured):
    # 401: an unsigned client request; 404: no route; 405: wrong method
    for method, path, status, code in [("GET", "/v1/keys", 401, "unauthenticated"),
                                       ("GET", "/nowhere", 404, "no_route"),
                                       ("DELETE", "/healthz", 405, "method_not_allowed")]:
        resp = await client.request(method, path, headers={"X-Request-Id": f"r-{status}"})
        assert resp.status == status
        assert (await resp.json())["error"]["code"] == code
        assert resp.headers["X-Request-Id"] == f"r-{status}"


@pytest.mark.asyncio
async def test_one_access_event_per_request_with_the_route_template(client, captured):
    key_id = "key_" + "0" * 32
    resp = await client.get(f"/v1/keys/{key_id}", headers={"X-Request-Id": "shape-1"})
    assert resp.status == 401
    resp = await client.get("/nowhere", headers={"X-Request-Id": "shape-2"})
    assert resp.status == 404
    access = [e for e in _events(captured) if e["event"] == "http_request"]
    assert [e["request_id"] for e in access] == ["shape-1", "shape-2"]
    first, second = access
    assert {k: first[k] for k in ("method", "route", "status", "level", "logger", "node")} == {
        "method": "GET", "route": "/v1/keys/{key_id}", "status": 401, "level": "info",
        "logger": "appliance.access", "node": "node-1"}
    assert isinstance(first["duration_ms"], float) and first["duration_ms"] >= 0
    assert "user" not in first  # refused before authentication
    assert key_id not in json.dumps(access)  # the template, never the concrete path
    assert second["route"] == "unmatched" and second["status"] == 404
    # probes that succeed are debug (not written at info)
    await client.get("/healthz")
    assert [e for e in _events(captured) if e["event"] == "http_request"] == access


def test_stdlib_lines_come_out_as_json_with_the_bound_id(captured):
    logging.getLogger("appliance.node").warning("job %s failed here", "job_1")
    with logs.bound_request_id("bound-7"):
        logging.getLogger("appliance.node").info("inside %d", 2)
    with logs.bound_request_id("not valid!"):
        logging.getLogger("appliance.node").info("ignored id")
    a, b, c = _events(captured)
    assert {k: a[k] for k in ("event", "level", "logger", "node")} == {
        "event": "job job_1 failed here", "level": "warning", "logger": "appliance.node", "node": "node-1"}
    assert "request_id" not in a and "timestamp" in a
    assert b["event"] == "inside 2" and b["request_id"] == "bound-7"
    assert c["event"] == "ignored id" and "request_id" not in c


def test_the_openapi_document_names_x_request_id_on_every_operation():
    doc = openapi_document()
    ops = [(path, method, op) for path, item in doc["paths"].items() for method, op in item.items()]
    assert len(ops) == len(ROUTES)
    for path, method, op in ops:
        assert {"$ref": "#/components/parameters/XRequestId"} in op["parameters"], (method, path)
        for status, resp in op["responses"].items():
            assert resp["headers"] == {"X-Request-Id": {"$ref": "#/components/headers/XRequestId"}}, (
                method, path, status)
    assert doc["components"]["headers"]["XRequestId"]["schema"]["pattern"] == logs.REQUEST_ID_PATTERN.pattern
    schemathesis.openapi.from_dict(doc)  # the document still loads
