"""History and pagination on a real 2-of-3 cluster (issue 15, item 6), through the client
library (every answer checked against /openapi.json by the cluster's clients).

Seven sign requests on node-0: one signed, two rejected, one cancelled, three pending. The
listing keeps them all, newest first; pages of three carry a cursor to the next page and
none after the last; a request made while paging does not shift the pages; the filters
(status, key, initiator, time) combine; every bad query value is a 400 with its exact code;
``GET /v1/keys`` is paged too."""

from __future__ import annotations

import pytest

from api.client import ApplianceAPIError
from appliance.paging import encode_cursor
from tests.cluster_fixtures import cluster_fixture, cluster_marks, digest_of

pytestmark = cluster_marks("history")

cluster = cluster_fixture()


async def _bad(coro, code: str, message: str) -> None:
    with pytest.raises(ApplianceAPIError) as ei:
        await coro
    assert (ei.value.status, ei.value.code, ei.value.message) == (400, code, message)


async def test_finished_requests_are_kept_paged_and_filtered(cluster):
    key = await cluster.client("admin").create_key(threshold=2)
    kid = key["key_id"]
    ini, app, aud = cluster.client("initiator"), cluster.client("approver"), cluster.client("auditor")
    made = [await ini.request_signature(kid, digest_of(f"history {i}")) for i in range(7)]
    ids = [r["request_id"] for r in made]
    await app.approve(ids[0])
    await ini.wait_signature(ids[0], timeout=120)
    await app.reject(ids[1])
    await app.reject(ids[2], "not this one")
    await ini.cancel(ids[3])
    newest_first = ids[::-1]

    # pages of three: a cursor until the last page; a request made meanwhile shifts nothing
    pages, cursor = [], None
    while True:
        page = await aud.sign_requests_page(limit=3, cursor=cursor, status="all")
        pages.append([r["request_id"] for r in page["sign_requests"]])
        if len(pages) == 1:
            late = await ini.request_signature(kid, digest_of("history: made while paging"))
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [newest_first[:3], newest_first[3:6], newest_first[6:]]
    everything = await aud.list_sign_requests(status="all")
    # without a status: the open ones, as GET /v1/sign-requests always listed them
    assert [r["request_id"] for r in await aud.list_sign_requests()] == [late["request_id"], ids[6], ids[5], ids[4]]
    assert [r["request_id"] for r in everything] == [late["request_id"], *newest_first]
    assert [r["request_id"] async for r in aud.iter_sign_requests(page_size=2, status="all")] == \
        [late["request_id"], *newest_first]
    by_id = {r["request_id"]: r for r in everything}
    assert [by_id[i]["status"] for i in ids] == ["signed", "rejected", "rejected", "cancelled",
                                                 "pending", "pending", "pending"]
    assert by_id[ids[0]]["signature"]["der"]

    # filters, alone and combined
    async def listed(**filters) -> list[str]:
        return [r["request_id"] for r in await aud.list_sign_requests(**filters)]

    assert await listed(status="pending") == [late["request_id"], ids[6], ids[5], ids[4]]
    assert await listed(status=("signed", "cancelled")) == [ids[3], ids[0]]
    assert await listed(status="rejected") == [ids[2], ids[1]]
    assert [r["request_id"] for r in await ini.pending_requests()] == [late["request_id"], ids[6], ids[5], ids[4]]
    assert await listed(key_id=kid, initiator="initiator", status="all") == [late["request_id"], *newest_first]
    assert await listed(key_id="key_" + "0" * 24) == []
    assert await listed(initiator="approver") == []
    mid = by_id[ids[3]]["created"]
    assert await listed(created_after=mid, status="pending") == [late["request_id"], ids[6], ids[5], ids[4]]
    assert await listed(created_before=mid, status="all") == [ids[2], ids[1], ids[0]]
    assert await listed(created_after=by_id[ids[0]]["created"], created_before=mid, status="all") == [ids[2], ids[1]]

    # every bad query value: 400 with its exact code
    q = "/v1/sign-requests"
    await _bad(aud.request("GET", q, query={"limit": 0}), "bad_limit", "limit must be an integer from 1 to 500")
    await _bad(aud.request("GET", q, query={"limit": 501}), "bad_limit", "limit must be an integer from 1 to 500")
    await _bad(aud.request("GET", q, query={"cursor": "garbage!"}), "bad_cursor",
               "cursor is not one this listing gave (pass next_cursor as it came)")
    keys = await aud.keys_page(limit=1)
    assert [k["key_id"] for k in keys["keys"]] == [kid] and keys["next_cursor"] is None
    await _bad(aud.request("GET", q, query={"status": "open"}), "bad_status",
               "status must be all or one of pending, signing, signed, failed, rejected, cancelled, expired")
    await _bad(aud.request("GET", q, query={"created_after": "yesterday"}), "bad_time",
               "created_after must be Unix seconds (digits, up to 9 decimals)")
    await _bad(aud.request("GET", q, query={"key_id": "key_../../x"}), "bad_id", "key_id is not a well-formed key id")
    a_requests_cursor = encode_cursor("sign_requests", 1.0, "req_" + "0" * 32)  # not one of /v1/keys
    await _bad(aud.request("GET", "/v1/keys", query={"cursor": a_requests_cursor}), "bad_cursor",
               "cursor is not one this listing gave (pass next_cursor as it came)")
    await _bad(aud.request("GET", "/v1/keys", query={"limit": "x"}), "bad_limit",
               "limit must be an integer from 1 to 500")

