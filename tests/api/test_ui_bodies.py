"""The approval console's POST bodies are capped per route before they are read (issue 17
review, finding 3): the challenge and sign-out take nothing (or ``{}``), the others 16 KB;
more is 413 ``body_too_large``, whether the length is announced or the body is chunked.
In process: the node's app over plain HTTP (aiohttp's test server)."""

from __future__ import annotations

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from api.app import make_app
from api.routes.ui import MAX_UI_BODY
from tests.bare_node import bare_node


@pytest_asyncio.fixture
async def client(tmp_path):
    node = bare_node(tmp_path, nodes=2)
    node.hsm = object()  # the auth middleware only checks that there is one
    async with TestClient(TestServer(make_app(node))) as c:
        yield c
    node.store.close()
    node.cpu.shutdown(wait=False)


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
