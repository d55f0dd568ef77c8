"""Depth-bounded parsing (issue 12 item 3): the JSON and CBOR pre-scans, and the recursion
limit that eth-account's import (py_ecc) raised to 100000."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.bounded import (
    MAX_CBOR_DEPTH,
    MAX_JSON_DEPTH,
    RECURSION_LIMIT,
    TooDeep,
    check_depth,
    check_json_depth,
    loads_json,
)
from tests.fuzzing import any_cbor, examples

ROOT = Path(__file__).resolve().parents[2]


def _nest_json(depth: int, open_: str = "[", close: str = "]") -> bytes:
    return (open_ * depth + close * depth).encode()


def test_json_depth_bound_is_exact():
    check_json_depth(_nest_json(MAX_JSON_DEPTH))
    with pytest.raises(TooDeep, match=f"deeper than {MAX_JSON_DEPTH}") as exc:
        check_json_depth(_nest_json(MAX_JSON_DEPTH + 1))
    assert exc.value.code == "too_deep"
    obj = b'{"a":' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 1)
    with pytest.raises(TooDeep):
        check_json_depth(obj)
    with pytest.raises(TooDeep):
        check_json_depth(obj.decode())  # str input too


def test_json_brackets_inside_strings_do_not_count():
    s = '{"a": "' + "[{" * 10_000 + '\\"[[' + '", "b": ["]]]]"]}'
    assert loads_json(s) == json.loads(s)
    # an unterminated string stops the scan; json refuses the document
    with pytest.raises(ValueError):
        loads_json(b'["' + b"[" * 1000)


@settings(max_examples=examples(200, 2000), deadline=None)
@given(st.recursive(st.one_of(st.none(), st.integers(), st.text(alphabet='[]{}"\\ab', max_size=8)),
                    lambda kids: st.one_of(st.lists(kids, max_size=3),
                                           st.dictionaries(st.text(alphabet='[]{}"\\', max_size=3), kids,
                                                           max_size=3)), max_leaves=30))
def test_json_scan_agrees_with_the_real_depth(value):
    def depth(v):
        if isinstance(v, list):
            return 1 + max((depth(x) for x in v), default=0)
        if isinstance(v, dict):
            return 1 + max((depth(x) for x in v.values()), default=0)
        return 0

    text = json.dumps(value)
    d = depth(value)
    check_json_depth(text, max_depth=d)
    if d:
        with pytest.raises(TooDeep):
            check_json_depth(text.encode(), max_depth=d - 1)


@settings(max_examples=examples(300, 3000), deadline=None)
@given(any_cbor(40))
def test_cbor_scan_agrees_with_the_real_depth(tree):
    def depth(v):
        if isinstance(v, list):
            return 1 + max((depth(x) for x in v), default=0)
        if isinstance(v, dict):
            return 1 + max((depth(x) for x in v.values()), default=0)
        if isinstance(v, int) and not -(2 ** 64) <= v < 2 ** 64:
            return 1  # a bignum is a tag (2 or 3) around a byte string: the decoder descends
        return 0

    try:
        raw = cbor2.dumps(tree)
    except (ValueError, TypeError, OverflowError):
        return
    d = depth(tree)
    check_depth(raw, max_depth=d)
    if d:
        with pytest.raises(TooDeep):
            check_depth(raw, max_depth=d - 1)


@pytest.mark.parametrize("prefix", [b"\x81", b"\xa1\x00", b"\xc1", b"\x9f", b"\xbf\x00"],
                         ids=["array", "map", "tag", "indefinite-array", "indefinite-map"])
def test_cbor_depth_bound_is_exact(prefix):
    ok = prefix * MAX_CBOR_DEPTH + b"\x01"
    check_depth(ok)
    with pytest.raises(TooDeep, match=f"deeper than {MAX_CBOR_DEPTH}"):
        check_depth(prefix * (MAX_CBOR_DEPTH + 1) + b"\x01")


def test_eth_typed_import_keeps_the_recursion_limit():
    """Importing eth-account (py_ecc) raised the limit to 100000; through our module it stays.
    A node loads eth-account only with the first EIP-712 payload (half a second of CPU)."""
    code = textwrap.dedent("""
        import sys
        before = sys.getrecursionlimit()
        import api.app
        assert "eth_account" not in sys.modules and "py_ecc" not in sys.modules
        from appliance.payloads.eth_typed import encode_typed_data
        encode_typed_data(full_message={
            "types": {"EIP712Domain": [{"name": "name", "type": "string"}],
                      "Mail": [{"name": "body", "type": "string"}]},
            "primaryType": "Mail", "domain": {"name": "x"}, "message": {"body": "hi"}})
        assert "py_ecc" in sys.modules
        assert sys.getrecursionlimit() == before, sys.getrecursionlimit()
        from appliance.bounded import check_recursion_limit
        check_recursion_limit()
        sys.setrecursionlimit(100000)
        try:
            check_recursion_limit()
        except RuntimeError as exc:
            assert "100000" in str(exc)
        else:
            raise SystemExit("a raised limit went unnoticed")
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert RECURSION_LIMIT == 1000


def test_deep_bodies_do_not_crash_even_with_a_raised_limit():
    """The 198 KB, 99,000-deep body that segfaulted a node (JSON through the API's body parser,
    CBOR through the peer decoders), with the limit py_ecc set: refused, the process lives."""
    code = textwrap.dedent("""
        import asyncio, json, sys
        sys.setrecursionlimit(100000)   # what importing eth-account did to a node
        from api.app import errors_middleware
        from api.routes.common import body_json
        from appliance.canonical import CanonicalError, parse_json
        from appliance.errors import EncodingError
        from appliance.transport import decode_batch
        from appliance.tss import wire
        from appliance.tss.keygen import KeygenShare
        from appliance.tss.protocol import Message, MessageRejected
        deep_json = b"[" * 99_000 + b"]" * 99_000
        deep_cbor = b"\\x81" * 99_000 + b"\\x00"
        resp = asyncio.run(errors_middleware({"raw_body": deep_json}, body_json))  # as a route sees it
        assert (resp.status, json.loads(resp.body)["error"]["code"]) == (400, "too_deep"), resp.body
        for fn, data, err in [(parse_json, deep_json, CanonicalError), (decode_batch, deep_cbor, MessageRejected),
                              (Message.decode, deep_cbor, MessageRejected),
                              (lambda d: wire.decode(d, KeygenShare), deep_cbor, EncodingError)]:
            try:
                fn(data)
            except err:
                pass
            else:
                raise SystemExit(f"{fn} accepted it")
        print("alive")
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "alive", (out.returncode, out.stderr[-2000:])
