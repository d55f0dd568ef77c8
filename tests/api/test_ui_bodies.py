"""The approval console's POST bodies are capped per route before they are read (issue 17
review, finding 3): the challenge and sign-out take nothing (or ``{}``), the others 16 KB;
more is 413 ``body_too_large``, whether the length is announced or the body is chunked.
In process: the node's app over plain HTTP (aiohttp's test server)."""

from __future__ import annotations

import pytest
import pytest_asyncio

from api.routes.common import NODE_KEY
from api.routes.ui import MAX_UI_BODY, ROUTES
from tests.bare_node import bare_app_client

ROUTES_BY_OP = {r.handler.__name__: r for r in ROUTES}


@pytest_asyncio.fixture
async def client(tmp_path):
    async with bare_app_client(tmp_path) as c:
        yield c


async def _chunks(data: bytes):
    for i in range(0, len(data), 4096):
        yield data[i:i + 4096]


@pytest.mark.asyncio
@pytest.mark.parametrize("path, size", [("challenge", 3), ("sign-out", 3), ("sign-in", MAX_UI_BODY + 1),
                                        ("registrations", MAX_UI_BODY + 1)])
@pytest.mark.parametrize("chunked", [False, True])
async def test_a_console_body_over_its_routes_cap_is_refused_unread(client, path, size, chunked):
    body = b"{" + b" " * (size - 2) + b"}"
    data = _chunks(body) if chunked else body
    resp = await client.post("/ui/api/" + path, data=data, headers={"Content-Type": "application/json"})
    got = await resp.json()
    assert (resp.status, got["error"]["code"]) == (413, "body_too_large"), got
    limit = 2 if path in ("challenge", "sign-out") else MAX_UI_BODY
    assert got["error"]["message"] == f"a console request body is at most {limit} bytes"


@pytest.mark.asyncio
async def test_an_empty_or_bracketed_challenge_body_is_still_taken(client):
    for data in (b"", b"{}"):
        resp = await client.post("/ui/api/sign-out", data=data)
        assert resp.status == 200, await resp.text()


@pytest.mark.asyncio
async def test_console_answers_are_hsts_and_a_sign_in_before_the_store_opens_is_not_ready(client):
    page = await client.get("/ui/")
    assert page.status == 200 and page.headers["Strict-Transport-Security"] == "max-age=31536000"
    node = client.server.app[NODE_KEY]
    node.hsm = None  # starting: the HSM (and so the node) is not open yet
    ui = ROUTES_BY_OP["ui_sign_in"]
    resp = await client.post("/ui/api/sign-in", json=ui.example)
    got = await resp.json()
    assert (resp.status, got["error"]["code"], got["error"]["message"]) == (
        503, "not_ready", f"{node.me.id} is not ready: {node.fault or 'starting'}")
    assert resp.headers["Strict-Transport-Security"] == "max-age=31536000"
