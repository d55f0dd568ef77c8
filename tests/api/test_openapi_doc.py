"""Issue 15 item 7: ``/openapi.json`` is a valid OpenAPI 3.1 document (openapi-spec-validator),
with a typed schema for every request body and every documented response, and an example for
every request body and success response that itself fits its schema (jsonschema) and the Struct
it documents (msgspec, no undocumented field). In process: the document is generated from the
route tables, which is what every node serves (the live answers are checked against it by every
LocalCluster client and by tests/api/test_fuzz_api.py)."""

from __future__ import annotations

import json
import re

import jsonschema
import msgspec
import pytest
from openapi_spec_validator import validate

from api import bodies
from api.conformance import ResponseContract
from api.openapi import ROUTES, openapi_document

DOC = openapi_document()

#: where a body is genuinely free-form (no fixed shape to type), and why
PEER_UNTYPED = ("peer-to-peer JSON checked field by field by the service it goes to; peer "
                "routes are internal (pinned certificates only) and not typed yet")
FREE_FORM: dict[tuple[str, str], str] = {
    (r.method, r.path): PEER_UNTYPED for r in ROUTES if r.auth == "peer"
}

#: an id of each kind for a concrete path
IDS = {"key_id": "key_0a1b2c3d4e5f60718293a4b5", "op_id": "op_0a1b2c3d4e5f60718293a4b5",
       "job_id": "job_0a1b2c3d4e5f60718293a4b5", "request_id": "req_" + "5c" * 16, "node_id": "node-2"}


def _ops():
    for path, ops in DOC["paths"].items():
        for method, op in ops.items():
            yield method.upper(), path, op


def _resolve(schema: dict) -> dict:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    return DOC["components"]["schemas"][ref.rsplit("/", 1)[1]]


def _typed(schema: dict) -> bool:
    """A schema that says what is in the body: an object with named properties (or the empty
    body), a string (text, JSON Lines, CBOR bytes)."""
    s = _resolve(schema)
    if s.get("type") == "string":
        return True
    return s.get("type") == "object" and (bool(s.get("properties")) or s.get("title") == "Empty"
                                          and s.get("additionalProperties") is not True)


def _validate(example, schema: dict) -> None:
    jsonschema.Draft202012Validator({**schema, "components": DOC["components"]}).validate(example)


def test_the_document_is_valid_openapi_3_1():
    assert DOC["openapi"] == "3.1.0"
    validate(DOC)  # openapi-spec-validator: raises on an invalid document
    json.dumps(DOC)  # and it is plain JSON


def test_every_body_and_response_is_typed_but_the_listed_free_form_ones():
    untyped = []
    for method, path, op in _ops():
        free = (method, path) in FREE_FORM
        for ctype, media in op.get("requestBody", {}).get("content", {}).items():
            if not _typed(media["schema"]) and not free:
                untyped.append(f"{method} {path} request {ctype}")
        for status, resp in op["responses"].items():
            for ctype, media in resp.get("content", {}).items():
                if not _typed(media["schema"]) and not free:
                    untyped.append(f"{method} {path} {status} {ctype}")
    assert untyped == []
    # the exemptions are real: each names an operation whose body is not typed
    for method, path in FREE_FORM:
        op = DOC["paths"][path][method.lower()]
        media = [m for r in op["responses"].values() for m in r.get("content", {}).values()]
        media += list(op.get("requestBody", {}).get("content", {}).values())
        assert any(not _typed(m["schema"]) for m in media), f"{method} {path} is typed: drop it from FREE_FORM"


def test_every_request_body_and_success_response_has_an_example_that_fits():
    missing, checked = [], 0
    for method, path, op in _ops():
        free = (method, path) in FREE_FORM
        for ctype, media in op.get("requestBody", {}).get("content", {}).items():
            if ctype != "application/json" or free:
                continue
            if "example" not in media:
                missing.append(f"{method} {path} request")
                continue
            _validate(media["example"], media["schema"])
            checked += 1
        for status, resp in op["responses"].items():
            if int(status) >= 400 or free:
                continue
            for ctype, media in resp.get("content", {}).items():
                if "example" not in media:
                    missing.append(f"{method} {path} {status} {ctype}")
                    continue
                _validate(media["example"], media["schema"])
                checked += 1
    assert missing == []
    assert checked >= 40


@pytest.mark.parametrize("route", [r for r in ROUTES if r.auth != "peer"],
                         ids=lambda r: f"{r.method} {r.path}")
def test_examples_fit_the_structs_they_document(route):
    """The request example decodes as the route's body Struct (strictly, as the edge does); each
    success example passes the check every LocalCluster client makes of a live answer."""
    op = DOC["paths"][route.path][route.method.lower()]
    if route.body is not None:
        msgspec.convert(op["requestBody"]["content"]["application/json"]["example"], route.body, strict=True)
    path = re.sub(r"{([^}]+)}", lambda m: IDS[m.group(1)], route.path)
    for status, resp in op["responses"].items():
        for ctype, media in resp.get("content", {}).items():
            if "example" in media:
                ex = media["example"]
                raw = ex.encode() if isinstance(ex, str) else json.dumps(ex).encode()
                ResponseContract().check(route.method, path, int(status), ctype, raw)


def test_the_readiness_503_example_is_not_ready():
    media = DOC["paths"]["/readyz"]["get"]["responses"]["503"]["content"]["application/json"]
    assert media["example"]["ready"] is False and media["example"]["reason"]
    msgspec.convert(media["example"], bodies.Readiness, strict=True)
