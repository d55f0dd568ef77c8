"""Request bodies decoded once at the edge (api/bodies.py, api.routes.common.body_of) and the
OpenAPI document generated from them. In process: no node, no cluster."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import msgspec
import pytest

from api import bodies
from api.app import errors_middleware
from api.openapi import ROUTES, openapi_document
from api.routes import client
from api.routes.common import NODE_KEY, body_of
from appliance.errors import ServiceError
from appliance.policy import Request
from appliance.request_claims import Created

STATEMENT = {"type": "appliance/request/v1", "cluster_id": "c", "policy_hash": "ab" * 32, "action": "keygen",
             "key_id": None, "initiator": "admin", "nonce": "n", "created_at": 1, "expires_at": 2,
             "derivation_path": None, "digest": None, "payload_type": None, "payload_hash": None,
             "params": {"threshold": 2}, "network": None}
SIGNED = {"statement": STATEMENT, "signature": "00" * 64}
DECISION = {"approval": {"statement": {"decision": "approve"}, "signature": "00"}}


class FakeRequest(dict):
    """What a handler reads of an aiohttp request: the raw body, the user, the app, match_info."""

    def __init__(self, body: object, *, app: dict | None = None, match_info: dict | None = None) -> None:
        super().__init__(raw_body=json.dumps(body).encode(), user="admin")
        self.app = app or {}
        self.match_info = match_info or {}


def decode(struct, body):
    return asyncio.run(body_of(FakeRequest(body), struct))


def code_of(struct, body) -> str:
    with pytest.raises(ServiceError) as ei:
        decode(struct, body)
    return ei.value.code


@pytest.mark.parametrize("struct, body, code", [
    # the codes the services answered for these fields before bodies were typed
    (bodies.CreateKey, {"threshold": "2", "request": SIGNED}, "bad_threshold"),
    (bodies.CreateKey, {"threshold": True, "request": SIGNED}, "bad_threshold"),
    (bodies.CreateKey, {"request": SIGNED}, "bad_threshold"),
    (bodies.CreateKey, {"threshold": 2, "nodes": "node-1", "request": SIGNED}, "bad_nodes"),
    (bodies.CreateKey, {"threshold": 2, "nodes": [1, 2], "request": SIGNED}, "bad_nodes"),
    (bodies.CreateKey, {"threshold": 2, "paillier_bits": 1024, "request": SIGNED}, "bad_paillier_bits"),
    (bodies.CreateKey, {"threshold": 2}, "missing_request"),
    (bodies.CreateKey, {"threshold": 2, "request": None}, "missing_request"),
    (bodies.CreateKey, {"threshold": 2, "request": {"statement": STATEMENT}}, "bad_request_statement"),
    (bodies.CreateKey, {"threshold": 2, "request": {**SIGNED, "extra": 1}}, "bad_request_statement"),
    (bodies.CreateKey, {"threshold": 2, "request": {**SIGNED, "statement": {**STATEMENT, "x": 1}}},
     "bad_request_statement"),
    (bodies.CreateSignRequest, {"digest": "zz" * 32}, "bad_digest"),
    (bodies.CreateSignRequest, {"digest": 5, "request": SIGNED}, "bad_digest"),
    (bodies.CreateSignRequest, {"digest": "ab" * 32}, "missing_request"),
    (bodies.CreateSignRequest, {"digest": "ab" * 32, "request": {"invalid": "x"}, "signers": 1}, "bad_signers"),
    (bodies.CreateSignRequest, {"signers": "node-1", "request": SIGNED}, "bad_signers"),
    (bodies.CreateSignRequest, {"derivation_path": 7, "request": SIGNED}, "bad_derivation_path"),
    (bodies.CreateSignRequest, {"payload_type": "zip", "payload": "x", "request": SIGNED}, "bad_payload_type"),
    (bodies.CreateSignRequest, {"network": "moon", "request": SIGNED}, "bad_network"),
    (bodies.Decide, {}, "missing_approval"),
    (bodies.Decide, {"approval": None}, "missing_approval"),
    (bodies.Decide, {"approval": {"statement": {}}}, "bad_approval"),
    (bodies.Reshare, {"threshold": 2, "request": SIGNED}, "bad_nodes"),
    (bodies.Reshare, {"nodes": ["node-1", "node-2"], "request": SIGNED}, "bad_threshold"),
    (bodies.ImportKey, {"request": SIGNED}, "bad_import_bundle"),
    (bodies.ImportKey, {"bundle": {}, "paillier_bits": None, "request": SIGNED}, "bad_paillier_bits"),
    (bodies.PolicyUpdate, {"policy": {}}, "bad_policy_update"),
    (bodies.PolicyUpdate, {"policy": {}, "previous_policy_hash": "AB", "signatures": []}, "bad_policy_update"),
    (bodies.Verify, {"digest": "ab" * 32}, "bad_signature_format"),
    (bodies.Verify, {"digest": 1, "signature": "30"}, "bad_digest"),
    (bodies.Verify, {"message": 1, "signature": "30"}, "bad_message"),
    (bodies.Verify, {"message": "00", "message_encoding": "latin1", "signature": "30"}, "bad_message_encoding"),
    (bodies.Verify, {"message": "00", "signature": {"rsv": 1}}, "bad_signature_format"),
    (bodies.Refresh, {"request": 1}, "bad_request_statement"),
])
def test_a_bad_field_answers_the_services_code_for_it(struct, body, code):
    assert code_of(struct, body) == code


def test_a_body_that_is_not_an_object_is_still_bad_json_and_an_empty_one_is_an_empty_object():
    assert code_of(bodies.CreateKey, ["not", "an", "object"]) == "bad_json"
    assert asyncio.run(body_of({"raw_body": b""}, bodies.Empty)) == bodies.Empty()


def test_a_deep_body_is_refused_before_it_is_parsed():
    resp = asyncio.run(errors_middleware({"raw_body": b"[" * 10_000 + b"]" * 10_000},
                                         lambda r: body_of(r, bodies.CreateKey)))
    assert (resp.status, json.loads(resp.body)["error"]["code"]) == (400, "too_deep")


def test_a_signed_statement_goes_to_the_service_with_exactly_the_fields_it_was_signed_with():
    body = decode(bodies.CreateKey, {"threshold": 2, "request": SIGNED, "ignored": 1})
    assert msgspec.to_builtins(body.request) == SIGNED


def test_a_sign_requests_statement_is_left_to_the_service_which_names_a_bad_payload_first():
    """The client sends ``{"invalid": ...}`` for a payload it cannot hash: the node must still
    answer the payload decoder's code (tests/test_payloads_http.py), so this body's statement
    is checked by the service, after the payload."""
    invalid = {"invalid": "psbt payload does not decode"}
    body = decode(bodies.CreateSignRequest, {"payload": "!!", "payload_type": "psbt", "request": invalid})
    assert body.request == invalid


class FakeKeys:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    async def create(self, user, threshold, nodes, paillier_bits, request=None, scheme=None) -> Created:
        self.calls.append((threshold, nodes, paillier_bits, request) + ((scheme,) if scheme else ()))
        return Created({"operation_id": "op_" + "0" * 24, "status": "pending"}, True)


class FakeNode:
    def __init__(self) -> None:
        self.keys = FakeKeys()


def test_a_float_paillier_bits_is_refused_at_the_edge_not_handed_to_the_service():
    """Regression: ``2048.0 in (2048, 3072)`` is true, so the service let a float through
    (stored and sent to every node as 2048.0)."""
    node = FakeNode()
    req = FakeRequest({"threshold": 2, "paillier_bits": 2048.0, "request": SIGNED}, app={NODE_KEY: node})
    resp = asyncio.run(errors_middleware(req, client.create_key))
    assert (resp.status, json.loads(resp.body)["error"]["code"]) == (400, "bad_paillier_bits")
    assert node.keys.calls == []
    ok = FakeRequest({"threshold": 2, "paillier_bits": 2048, "request": SIGNED}, app={NODE_KEY: node})
    assert asyncio.run(errors_middleware(ok, client.create_key)).status == 202
    assert node.keys.calls == [(2, None, 2048, SIGNED)]


def test_an_unknown_scheme_is_refused_at_the_edge_with_bad_scheme():
    node = FakeNode()
    req = FakeRequest({"threshold": 2, "scheme": "schnorr", "request": SIGNED}, app={NODE_KEY: node})
    resp = asyncio.run(errors_middleware(req, client.create_key))
    assert (resp.status, json.loads(resp.body)["error"]["code"]) == (400, "bad_scheme")
    assert node.keys.calls == []
    ok = FakeRequest({"threshold": 2, "scheme": "ed25519", "request": SIGNED}, app={NODE_KEY: node})
    assert asyncio.run(errors_middleware(ok, client.create_key)).status == 202
    assert node.keys.calls == [(2, None, None, SIGNED, "ed25519")]


# ---------------------------------------------------------------------------------------
# the OpenAPI document


def resolve(doc: dict, schema: dict) -> dict:
    ref = schema["$ref"]
    assert ref.startswith("#/components/schemas/")
    return doc["components"]["schemas"][ref.rsplit("/", 1)[1]]


def test_every_json_body_has_a_typed_schema_and_an_example_that_fits_it():
    doc = openapi_document()
    for r in ROUTES:
        op = doc["paths"][r.path][r.method.lower()]
        if r.auth == "peer":
            continue  # peer bodies: CBOR, or objects each service checks itself (not typed yet)
        if r.body is None:
            assert "requestBody" not in op, r.path
            continue
        media = op["requestBody"]["content"]["application/json"]
        schema = resolve(doc, media["schema"])
        assert schema["type"] == "object" and set(schema["properties"]) == set(r.body.__struct_fields__)
        if r.body is not bodies.Empty:
            assert media["example"] == r.example
            msgspec.convert(r.example, r.body, strict=True)  # raises if it does not fit
        for status, resp in op["responses"].items():
            if int(status) >= 400:
                assert resolve(doc, resp["content"]["application/json"]["schema"])["required"] == ["error"]


def test_the_signed_statement_is_typed_as_the_policy_has_it():
    doc = openapi_document()
    create = doc["paths"]["/v1/keys"]["post"]
    key_body = resolve(doc, create["requestBody"]["content"]["application/json"]["schema"])
    signed = resolve(doc, key_body["properties"]["request"])
    assert signed["required"] == ["statement", "signature"] and signed["additionalProperties"] is False
    statement = resolve(doc, signed["properties"]["statement"])
    fields = {f.name for f in dataclasses.fields(Request)} | {"type"}
    assert set(statement["properties"]) == fields and set(statement["required"]) == fields
    assert statement["properties"]["created_at"] == {"type": "integer"}
    assert resolve(doc, create["responses"]["202"]["content"]["application/json"]["schema"])["title"] == "Operation"


def test_the_documents_schemas_are_valid_json_schema():
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    doc = openapi_document()
    for name, schema in doc["components"]["schemas"].items():
        jsonschema_rs.validator_for({**schema, "components": doc["components"]})  # raises if invalid
        assert name == schema["title"]
