"""api/errors.py is the one map from domain errors to HTTP; domain errors carry no status."""

from __future__ import annotations

import ast
import inspect
import json
import pathlib

import pytest

import appliance
from api.errors import DENIED, STATUS, error_response, error_status, public_error, status_of
from appliance.config import PeerInfo
from appliance.errors import ApplianceError, PolicyDenied, ServiceError
from appliance.payloads.errors import DigestMismatch, PayloadError, SignatureMismatch
from appliance.policy import REASONS
from appliance.request_use import RequestUseRefused
from appliance.transport import PeerError

ROOT = pathlib.Path(appliance.__file__).parent
#: the classes whose first argument (or code=) is an error code
CODED = {"ServiceError", "PolicyDenied", "RequestUseRefused", "PayloadError", "DigestMismatch",
         "SignatureMismatch"}


def _raised_codes() -> dict[str, set[str]]:
    """class name -> every literal code the appliance package passes to it."""
    found: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) in CODED):
                continue
            name = node.func.id
            args = [kw.value for kw in node.keywords if kw.arg == "code"]
            if name not in ("DigestMismatch", "SignatureMismatch") and node.args:
                args.append(node.args[0])
            for a in args:
                if isinstance(a, ast.Constant) and isinstance(a.value, str):
                    found.setdefault(name, set()).add(a.value)
    return found


def test_every_code_the_services_raise_has_its_status():
    codes = _raised_codes()
    assert {"ServiceError", "PolicyDenied", "RequestUseRefused", "PayloadError"} <= set(codes)
    missing = sorted(c for name, cs in codes.items() if name != "PolicyDenied" for c in cs if c not in STATUS)
    assert missing == []
    assert DigestMismatch("m").code == "digest_mismatch" and STATUS["digest_mismatch"] == 409
    assert SignatureMismatch("m").code == "signature_mismatch" and STATUS["signature_mismatch"] == 500


def test_no_domain_error_carries_an_http_status():
    """Before: NodeError(status, ...), PolicyDenied.status, PayloadError.http_status,
    AuditUnavailable.status, RequestUseRefused(status, ...)."""
    carriers = []
    for path in ROOT.rglob("*.py"):
        mod = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
        if mod.startswith("appliance.tss") or mod.endswith("testing"):
            continue
        module = __import__(mod, fromlist=["_"])
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, ApplianceError) and cls.__module__ == mod:
                init = vars(cls).get("__init__")
                takes = init is not None and "status" in inspect.signature(init).parameters
                if {"status", "http_status"} & set(vars(cls)) or takes:
                    carriers.append(f"{mod}.{name}")
    assert carriers == []


@pytest.mark.parametrize("code", ["request_mismatch", "bad_request"])
def test_a_refusal_is_403_whatever_its_code_and_the_same_code_as_bad_input_is_400(code):
    """Both kept from before: a coordinator's job refused by a party with request_mismatch or
    bad_request is 403 (test_security_review); a client's body that differs from its signed
    request is 400 request_mismatch."""
    assert error_status(PolicyDenied(code, "refused")) == DENIED == 403
    assert error_status(ServiceError(code, "bad input")) == 400


def test_every_policy_reason_is_a_refusal():
    assert {error_status(PolicyDenied(r)) for r in REASONS} == {403}


@pytest.mark.parametrize("exc, status, body", [
    (ServiceError("quorum_unreachable", "2 down", missing_nodes=["node-2"]), 503,
     {"code": "quorum_unreachable", "message": "2 down", "missing_nodes": ["node-2"]}),
    (ServiceError("protocol_abort", "bad proof", culprits=["node-3"]), 502,
     {"code": "protocol_abort", "message": "bad proof", "culprits": ["node-3"]}),
    (RequestUseRefused("use_not_confirmed", "1 of 2"), 403, {"code": "use_not_confirmed", "message": "1 of 2"}),
    (PayloadError("malformed_psbt", "truncated"), 400, {"code": "malformed_psbt", "message": "truncated"}),
    (PolicyDenied("self_approval", "own request"), 403, {"code": "self_approval", "message": "own request"}),
    (ServiceError("import_share_rejected", "x"), 422, {"code": "import_share_rejected", "message": "x"}),
])
def test_error_response_is_the_status_and_the_error_object(exc, status, body):
    resp = error_response(exc)
    assert (resp.status, json.loads(resp.body)) == (status, {"error": body})


def test_an_unknown_code_is_a_500_not_a_guess():
    assert status_of("no_such_code") == 500


PEER = PeerInfo(id="node-2", index=1, url="https://127.0.0.1:1", tls_cert="", identity_key=b"",
                transport_key=b"")


@pytest.mark.parametrize("status, code, kind, relayed", [
    (403, "request_mismatch", PolicyDenied, 403),       # a party's refusal stays a refusal
    (409, "request_already_signed", ServiceError, 409),
    (422, "import_share_rejected", ServiceError, 422),  # was 502: the code's own status now
    (404, "unknown_key", ServiceError, 404),            # was 502
])
def test_a_peers_error_keeps_its_code_and_the_table_gives_the_status(status, code, kind, relayed):
    err = PeerError(PEER, "refused", status, {"error": {"code": code, "message": "why"}})
    exc = err.service_error("node-2 refused the job: why")
    assert type(exc) is kind and (exc.code, exc.message) == (code, "node-2 refused the job: why")
    assert error_status(exc) == relayed
    assert PeerError(PEER, "HTTP 500", 500, {}).service_error().code == "peer_refused"


def test_a_recorded_error_shows_clients_its_status_as_before():
    """Records keep the error without a status; clients still see {status, code, message}."""
    denied = PolicyDenied("expired", "the request expired").to_error()
    assert denied == {"code": "expired", "message": "the request expired", "denied": True}
    assert public_error(denied) == {"status": 403, "code": "expired", "message": "the request expired"}
    failed = ServiceError("quorum_unreachable", "down", missing_nodes=["node-3"]).to_error()
    assert public_error(failed) == {"status": 503, "code": "quorum_unreachable", "message": "down",
                                    "missing_nodes": ["node-3"]}
    # a record an earlier release wrote keeps its status; its 403 is read back as a refusal
    old = {"status": 403, "code": "request_mismatch", "message": "m"}
    assert public_error(old) == old and isinstance(ServiceError.from_error(old), PolicyDenied)
    assert type(ServiceError.from_error({"code": "request_mismatch", "message": "m"})) is ServiceError
