"""History and pagination (issue 15 item 6) in process: the store's paged listings over a real
SQLite database (order, cursors across inserts, filters, the indexes they use), the service's
pages and expiry, and every query parameter's exact error code."""

from __future__ import annotations

import base64
import dataclasses
import json

import pytest

from appliance import paging
from appliance.errors import ServiceError
from appliance.ids import BadId
from appliance.keys.service import KeyService
from appliance.signing import states
from appliance.signing.requests import SignRequests
from appliance.storage import NodeStore
from appliance.policy.model import ApprovalGroup
from appliance.ui_access import read_scope
from tests.node.fakes import FakeKeys, Users

KEY_A = "key_" + "a" * 24
KEY_B = "key_" + "b" * 24


def rid(i: int) -> str:
    return f"req_{i:032x}"


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def store(tmp_path):
    clock = Clock()
    s = NodeStore(tmp_path / "node.db", clock=clock)
    s.clock = clock
    for key_id in (KEY_A, KEY_B):
        s.core.put_key(key_id, threshold=2, participants=[0, 1, 2], public_key=b"\x02" + b"\x11" * 32,
                       chain_code=b"\x00" * 32)
        s.key_status.add(key_id, "active", 2048)
    yield s
    s.close()


def _add(store, i: int, *, key=KEY_A, initiator="initiator", status="pending", at: float | None = None):
    if at is not None:
        store.clock.t = at
    store.put_sign_request(rid(i), key, b"\x11" * 32, "m", initiator, None, status=status)


def _page(store, *, after=None, limit=100, **kw):
    args = {"statuses": None, "key_id": None, "initiator": None, "created_after": None, "created_before": None}
    args.update(kw)
    return [r["request_id"] for r in store.page_sign_requests(
        args["statuses"], args["key_id"], args["initiator"], args["created_after"], args["created_before"],
        after, limit)]


def test_requests_come_newest_first_ties_by_id_and_a_cursor_survives_inserts(store):
    t0 = store.clock.t
    for i in range(1, 6):
        _add(store, i, at=t0 + i)
    _add(store, 7, at=t0 + 5)  # same second as 5: the id breaks the tie
    first = store.page_sign_requests(None, None, None, None, None, None, 3)
    assert [r["request_id"] for r in first] == [rid(7), rid(5), rid(4)]
    after = (first[-1]["created"], first[-1]["request_id"])
    _add(store, 8, at=t0 + 10)  # newer than the cursor: not on later pages, nothing repeats
    assert _page(store, after=after, limit=3) == [rid(3), rid(2), rid(1)]
    assert _page(store, after=(t0 + 5, rid(7)), limit=3) == [rid(5), rid(4), rid(3)]
    assert _page(store, after=(t0 + 1, rid(1))) == []


def test_filters_combine_and_cancelled_is_the_statements_final_status(store):
    t0 = store.clock.t
    _add(store, 1, at=t0 + 1)
    _add(store, 2, key=KEY_B, at=t0 + 2, status="signing")
    _add(store, 3, initiator="initiator2", at=t0 + 3)
    _add(store, 4, at=t0 + 4)
    store.update_sign_request(rid(2), status="signed", signature={"der": "30"})
    store.move_sign_request(rid(4), status="rejected", expected_status="pending")
    _add(store, 5, at=t0 + 5)
    store.move_sign_request(rid(5), status="rejected", expected_status="pending")
    store.put_statement(rid(5), rid(5), "sign", KEY_A, {"statement": {}})
    store.set_statement_final(rid(5), "cancelled")
    assert _page(store, statuses=("pending",)) == [rid(3), rid(1)]
    assert _page(store, statuses=("signed", "rejected")) == [rid(4), rid(2)]
    assert _page(store, statuses=("cancelled",)) == [rid(5)]
    assert _page(store, key_id=KEY_B) == [rid(2)]
    assert _page(store, initiator="initiator2") == [rid(3)]
    assert _page(store, created_after=t0 + 2, created_before=t0 + 5) == [rid(4), rid(3)]
    assert _page(store, key_id=KEY_A, statuses=("pending",), initiator="initiator") == [rid(1)]
    # finished requests are kept: every one is still listed
    assert _page(store) == [rid(5), rid(4), rid(3), rid(2), rid(1)]


def test_the_listings_use_their_indexes(store):
    db = store.database
    plans = {
        "all": "SELECT request_id FROM sign_requests r ORDER BY r.created_at DESC, r.request_id DESC LIMIT 3",
        "key": "SELECT request_id FROM sign_requests r WHERE r.key_id = 'k' "
               "ORDER BY r.created_at DESC, r.request_id DESC LIMIT 3",
        "initiator": "SELECT request_id FROM sign_requests r WHERE r.initiator = 'u' "
                     "ORDER BY r.created_at DESC, r.request_id DESC LIMIT 3",
        "keys": "SELECT key_id FROM keys k WHERE (k.created_at, k.key_id) > (0, '') "
                "ORDER BY k.created_at, k.key_id LIMIT 3",
    }
    used = {name: " ".join(r[-1] for r in db.query("EXPLAIN QUERY PLAN " + sql)) for name, sql in plans.items()}
    assert "sign_requests_page" in used["all"] and "TEMP B-TREE" not in used["all"]
    assert "sign_requests_key_page" in used["key"] and "TEMP B-TREE" not in used["key"]
    assert "sign_requests_initiator_page" in used["initiator"]
    assert "keys_page" in used["keys"] and "TEMP B-TREE" not in used["keys"]


def test_keys_page_oldest_first_active_only(store):
    store.clock.t += 10
    store.core.put_key("key_" + "c" * 24, threshold=2, participants=[0, 1, 2], public_key=b"\x02" + b"\x22" * 32,
                       chain_code=b"\x00" * 32)
    store.key_status.add("key_" + "c" * 24, "pending", 2048)
    keys = store.page_keys("active", None, 10)
    assert [k["key_id"] for k in keys] == [KEY_A, KEY_B]
    assert [k["key_id"] for k in store.page_keys("active", (keys[0]["created"], KEY_A), 10)] == [KEY_B]
    assert [k["key_id"] for k in store.page_keys(None, None, 10)] == [KEY_A, KEY_B, "key_" + "c" * 24]


# -- the service ---------------------------------------------------------------------------


class _Svc(SignRequests):
    """The listing of SignRequests over a real store, with expiry and the view stubbed out."""

    def __init__(self, store, expired: set[str]) -> None:
        self.requests = lambda: store
        self.expired = expired
        self.store = store

    def _expire_if_due(self, req):
        if req["request_id"] in self.expired and req["status"] == states.PENDING:
            self.store.move_sign_request(req["request_id"], status="expired", expected_status="pending")
        return self.store.get_sign_request(req["request_id"])

    def view(self, req):
        return {"request_id": req["request_id"], "status": req["status"]}


def test_the_service_pages_with_a_cursor_and_expires_due_requests_first(store):
    t0 = store.clock.t
    for i in range(1, 8):
        _add(store, i, at=t0 + i)
    svc = _Svc(store, expired={rid(2)})
    got, cursor = [], None
    while True:
        query = paging.page_query("sign_requests", "3", cursor)
        out = svc.list_page(paging.SignRequestFilter(), query)
        got.append([r["request_id"] for r in out["sign_requests"]])
        cursor = out["next_cursor"]
        if cursor is None:
            break
    assert got == [[rid(7), rid(6), rid(5)], [rid(4), rid(3), rid(2)], [rid(1)]]
    pending = svc.list_page(paging.SignRequestFilter(statuses=("pending",)), paging.PageQuery(limit=10))
    assert rid(2) not in [r["request_id"] for r in pending["sign_requests"]]
    assert svc.list_page(paging.SignRequestFilter(statuses=("expired",)), paging.FIRST_PAGE)["sign_requests"] == \
        [{"request_id": rid(2), "status": "expired"}]
    # exactly a page's worth left: no cursor pointing at an empty page
    assert svc.list_page(paging.SignRequestFilter(), paging.PageQuery(limit=7))["next_cursor"] is None


def test_key_service_pages_active_keys():
    keys = FakeKeys()
    for i, c in enumerate("abc"):
        keys.rows["key_" + c * 24] = {"key_id": "key_" + c * 24, "created": 100.0 + i, "status": "active"}
    svc = KeyService.__new__(KeyService)
    svc.key_store = lambda: keys
    svc.shares = type("S", (), {"key_view": staticmethod(lambda r: {"key_id": r["key_id"]})})()
    first = svc.list_keys(paging.PageQuery(limit=2))
    assert first["keys"] == [{"key_id": "key_" + "a" * 24}, {"key_id": "key_" + "b" * 24}]
    rest = svc.list_keys(paging.page_query("keys", None, first["next_cursor"]))
    assert rest == {"keys": [{"key_id": "key_" + "c" * 24}], "next_cursor": None}


# -- the query's values: exact codes ------------------------------------------------------------


def _code(fn, *args, **kw):
    with pytest.raises((ServiceError, BadId)) as ei:
        fn(*args, **kw)
    return ei.value.code, ei.value.message


def _cursor(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


BAD_CURSOR = ("bad_cursor", "cursor is not one this listing gave (pass next_cursor as it came)")


@pytest.mark.parametrize("cursor", [
    "", "!!!", "a" * 300, "e30", _cursor(["keys", 1.0, KEY_A]), _cursor(["sign_requests", 1.0, "req_x"]),
    _cursor(["sign_requests", -1, rid(1)]), _cursor(["sign_requests", True, rid(1)]),
    _cursor(["sign_requests", "1", rid(1)]), _cursor(["sign_requests", 1.0]), "eyJ",
])
def test_a_cursor_not_given_by_the_listing_is_bad_cursor(cursor):
    assert _code(paging.decode_cursor, "sign_requests", cursor) == BAD_CURSOR


def test_a_cursor_round_trips_exactly():
    c = paging.encode_cursor("sign_requests", 1700000000.123456, rid(9))
    assert paging.decode_cursor("sign_requests", c) == (1700000000.123456, rid(9))
    assert "=" not in c


@pytest.mark.parametrize("limit", ["0", "501", "-1", "1.5", "x", "", "10000", " 5", "٣"])
def test_limit_outside_1_to_500_is_bad_limit(limit):
    assert _code(paging.parse_limit, limit) == ("bad_limit", "limit must be an integer from 1 to 500")


def test_limit_defaults_to_100_and_takes_500():
    assert (paging.parse_limit(None), paging.parse_limit("1"), paging.parse_limit("500")) == (100, 1, 500)


def test_status_repeated_or_comma_list_and_unknown_is_bad_status():
    assert paging.parse_statuses(["pending,signed", "pending", "cancelled"]) == ("pending", "signed", "cancelled")
    # none given: the open ones (the contract of GET /v1/sign-requests); all: no filter
    assert paging.parse_statuses([]) == paging.OPEN_STATUSES == ("pending", "signing")
    assert paging.parse_statuses(["all"]) is None and paging.parse_statuses(["signed,all"]) is None
    msg = "status must be all or one of pending, signing, signed, failed, rejected, cancelled, expired"
    for bad in (["open"], ["pending,"], [""], ["PENDING"], ["approved"]):
        assert _code(paging.parse_statuses, bad) == ("bad_status", msg)


@pytest.mark.parametrize("text", ["-1", "1e9", "nan", "inf", "1.1234567891", "", "1700000000 ", "0x10"])
def test_a_time_not_in_unix_seconds_is_bad_time(text):
    assert _code(paging.parse_time, "created_after", text) == (
        "bad_time", "created_after must be Unix seconds (digits, up to 9 decimals)")


def test_ids_in_filters_are_checked_against_their_grammar():
    ok = dict(status=[], key_id=None, initiator=None, created_after="1700000000.5", created_before=None)
    assert paging.sign_request_filter(**ok).created_after == 1700000000.5
    assert _code(paging.sign_request_filter, **{**ok, "key_id": "key_../x"}) == \
        ("bad_id", "key_id is not a well-formed key id")
    assert _code(paging.sign_request_filter, **{**ok, "initiator": "a b"}) == \
        ("bad_id", "initiator is not a well-formed initiator")


def test_the_console_lists_page_over_readable_rows_only(store):
    """The console's pending and history lists filter in the query (appliance.ui_access.
    read_scope, issue 17 review finding 4): a page is full of rows the person may read, and its
    cursor is never made from another row."""
    pol = Users().policy
    admins_only = dataclasses.replace(pol.signing, approvals=(ApprovalGroup(("admin",), 1),))
    pol = dataclasses.replace(pol, key_rules=((KEY_B, admins_only),))
    t0 = store.clock.t
    # newest first: 5 (B), 4 (A), 3 (B), 2 (B, the approver's own), 1 (A)
    for i, key, who in ((1, KEY_A, "initiator"), (2, KEY_B, "approver"), (3, KEY_B, "initiator"),
                        (4, KEY_A, "initiator"), (5, KEY_B, "initiator")):
        _add(store, i, key=key, initiator=who, at=t0 + i)

    def ids(scope, limit=100):
        return [r["request_id"] for r in store.page_sign_requests(None, None, None, None, None, None, limit,
                                                                 scope=scope)]
    pending = read_scope(pol, "approver", "pending")
    assert ids(pending) == [rid(4), rid(1)]  # keys under [signing], not their own
    assert ids(pending, limit=1) == [rid(4)]  # a full page: its last row (the cursor's) is readable
    assert ids(read_scope(pol, "approver", "history")) == [rid(4), rid(2), rid(1)]  # and their own
    assert ids(read_scope(pol, "admin", "pending")) == [rid(5), rid(3), rid(2)]
    assert ids(read_scope(pol, "nobody", "history")) == []
