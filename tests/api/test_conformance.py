"""api/conformance.py: an answer the document does not describe is caught (every client
LocalCluster hands out runs this check on every response)."""

from __future__ import annotations

import json

import pytest
from aiohttp import web

from api.client import ApplianceClient
from api.auth import generate_user_key
from api.conformance import ContractViolation, ResponseContract, undocumented_fields
from api import bodies
from appliance.testing import LocalCluster

KEY = "key_" + "a" * 24
REQ = "req_" + "b" * 32
SIGN_REQUEST = {"request_id": REQ, "key_id": KEY, "status": "pending", "signers": ["node-1", "node-2"],
                "decisions": [{"approver": "approver", "decision": "approve", "signed_at": 1}]}


def _check(method: str, path: str, status: int, body: object, ctype: str = "application/json") -> None:
    ResponseContract().check(method, path, status, ctype, json.dumps(body).encode())


def test_a_documented_answer_passes():
    _check("GET", f"/v1/sign-requests/{REQ}", 200, SIGN_REQUEST)
    _check("GET", f"/v1/sign-requests/{REQ}", 404, {"error": {"code": "not_found", "message": "no"}})
    _check("GET", "/v1/no-such-route", 404, {"error": {"code": "no_route", "message": "no"}})  # not a route


def test_an_undocumented_status_is_caught():
    with pytest.raises(ContractViolation, match=r"GET /v1/keys -> 409: status not documented"):
        _check("GET", "/v1/keys", 409, {"error": {"code": "key_exists", "message": "x"}})


def test_an_undocumented_field_is_caught_at_any_depth():
    with pytest.raises(ContractViolation, match=r"fields \['\$.surprise'\] are not in SignRequest"):
        _check("GET", f"/v1/sign-requests/{REQ}", 200, SIGN_REQUEST | {"surprise": 1})
    deep = SIGN_REQUEST | {"decisions": [{"approver": "a", "decision": "approve", "extra": True}]}
    assert undocumented_fields(deep, bodies.SignRequest) == ["$.decisions[0].extra"]


def test_a_body_of_the_wrong_shape_is_caught():
    with pytest.raises(ContractViolation, match="does not fit SignRequest"):
        _check("GET", f"/v1/sign-requests/{REQ}", 200, {"request_id": REQ})  # key_id, status missing
    with pytest.raises(ContractViolation, match="does not fit Error"):
        _check("GET", f"/v1/sign-requests/{REQ}", 404, {"code": "not_found"})


@pytest.mark.asyncio
async def test_the_client_runs_the_check_on_every_answer(unused_tcp_port):
    async def wrong(request: web.Request) -> web.Response:
        return web.json_response(SIGN_REQUEST | {"surprise": 1})

    app = web.Application()
    app.router.add_get("/v1/sign-requests/{request_id}", wrong)
    runner = web.AppRunner(app)
    await runner.setup()
    port = unused_tcp_port
    await web.TCPSite(runner, "127.0.0.1", port).start()
    priv, _ = generate_user_key()
    try:
        async with ApplianceClient(f"http://127.0.0.1:{port}", "u", priv,
                                   observe=ResponseContract().check) as c:
            with pytest.raises(ContractViolation, match=r"\$.surprise"):
                await c.get_sign_request(REQ)
    finally:
        await runner.cleanup()
    assert LocalCluster().contract is not None and LocalCluster(check_responses=False).contract is None
