"""Example bodies of ``/openapi.json``'s success responses, one per response type (api/bodies.py)
or per operation where one type is not enough. The key and signature formats are computed from
one fixed public key and signature with :mod:`appliance.formats` (what the node itself adds), so
they are real values, not placeholders. ``tests/api/test_openapi_doc.py`` checks each against
its schema (jsonschema) and against the Struct it documents (:class:`api.conformance.ResponseContract`).
"""

from __future__ import annotations

from typing import Any

from api import bodies
from appliance import __version__, formats

#: a fixed secp256k1 public key (the generator point G, compressed): an example only
PUBLIC_KEY = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
KEY_ID = "key_0a1b2c3d4e5f60718293a4b5"
REQUEST_ID = "req_" + "5c" * 16
OP_ID = "op_0a1b2c3d4e5f60718293a4b5"
NODES = ["node-0", "node-1", "node-2"]
NETWORK = "mainnet"
CREATED = 1765000000.25

_STATEMENT = {"type": "appliance/request/v1", "cluster_id": "cluster-1", "policy_hash": "ab" * 32,
              "action": "sign", "key_id": KEY_ID, "initiator": "initiator", "nonce": "n-1",
              "created_at": 1765000000, "expires_at": 1765086400, "derivation_path": "m/0/1",
              "digest": "11" * 32, "payload_type": None, "payload_hash": None, "params": None,
              "network": None}
SIGNED = {"statement": _STATEMENT, "signature": "30" * 64}

_SIG = {"der": "3044022079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
               "02201f0b1cfd8ae0a3ae2d1e7f6bc1ac2d1dc2d9b0c6a1ee6e1f8e0c7f2b1a3d5e7f",
        "r": "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
        "s": "1f0b1cfd8ae0a3ae2d1e7f6bc1ac2d1dc2d9b0c6a1ee6e1f8e0c7f2b1a3d5e7f",
        "recovery_id": 0}


#: one export line: the entry's stored canonical bytes verbatim, then its hash (AuditEntry.line)
_AUDIT_LINE = ('{"entry":{"action":"sign","actor":"initiator","decision":"pending","digest":"' + "11" * 32
               + '","key":"' + KEY_ID + '","node":"node-0","prev":"' + "00" * 32 + '","reason":null,'
               '"seq":1,"subject":"' + REQUEST_ID + '","time":"2025-12-06T05:46:40Z",'
               '"type":"appliance/audit/v1"},"hash":"' + "cd" * 32 + '"}\n')


def _key() -> dict:
    return {"key_id": KEY_ID, "public_key": PUBLIC_KEY, "threshold": 2, "nodes": NODES, "epoch": 0,
            "paillier_bits": 2048, "status": "active", "created": CREATED,
            **formats.public_key_formats(bytes.fromhex(PUBLIC_KEY), NETWORK)}


def _operation() -> dict:
    return {"operation_id": OP_ID, "kind": "keygen", "key_id": None, "status": "pending",
            "created": CREATED, "updated": CREATED,
            "request": {"statement": {**_STATEMENT, "action": "keygen", "key_id": None, "derivation_path": None,
                                      "digest": None, "params": {"threshold": 2}},
                        "signature": "30" * 64},
            "decisions": [],
            "progress": {"phase": "waiting_for_approval", "done": 0, "total": 1, "detail": "1 more of admin",
                         "completed": []}}


def _sign_request() -> dict:
    return {"request_id": REQUEST_ID, "key_id": KEY_ID, "status": "signed", "digest": "11" * 32,
            "derivation_path": "m/0/1", "initiator": "initiator", "signers": NODES[:2],
            "created": CREATED, "updated": CREATED + 1.5, "expires_at": 1765086400, "request": SIGNED,
            "decisions": [{"approver": "approver", "decision": "approve", "signed_at": 1765000001}],
            "signature": formats.signature_formats(_SIG), "public_key": PUBLIC_KEY}


def _checkpoint(node: str) -> dict:
    return {"checkpoint": {"type": "appliance/audit-checkpoint/v1", "node": node, "seq": 42,
                           "head": "cd" * 32, "time": 1765000100},
            "signature": "30" * 64, "cosignatures": {"node-1": "31" * 64}}


def _pinned(i: int) -> dict:
    return {"node_id": NODES[i], "index": i, "url": f"https://10.0.0.{10 + i}:8443",
            "tls_cert": "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n",
            "tls_cert_sha256": f"{i:02x}" * 32}


def response_examples() -> dict[Any, Any]:
    """Success-response examples, by response Struct, or by operationId (a route without a
    JSON response Struct, or one whose Struct another example fits better)."""
    key = _key()
    derived = {k: v for k, v in key.items() if k not in (
        "threshold", "nodes", "epoch", "paillier_bits", "status", "created")}
    derived = {**derived, "path": "m/0/1", "depth": 2, "chain_code": "87" * 32,
               "xpub": "xpub6AHA9hZDN11k2ijHMeS5QqHx2KP9aMBRhTDqANMnwVtdyw2TDYRmF8PjpvwUFcL1Et8Hj59S3gTSMcUQ"
                       "5gAqTz3Wd8EsMTmF3DChhqPQBnU"}
    quarantined = {"node_id": "node-2", "since": CREATED, "reason": "identifiable abort in a signing job",
                   "job_id": "job_0a1b2c3d4e5f60718293a4b5"}
    return {
        bodies.Health: {"status": "ok", "node_id": "node-0", "version": __version__},
        bodies.Readiness: {"ready": True, "node_id": "node-0", "hsm": True, "audit": True,
                           "primes": {"source": "generated", "safe": 4, "blum": 4}},
        bodies.OpenAPIDocument: {"openapi": "3.1.0", "info": {"title": "Threshold-signing appliance node",
                                                             "version": __version__},
                                 "servers": [{"url": "https://10.0.0.10:8443"}], "paths": {},
                                 "components": {"schemas": {}}},
        bodies.Operation: _operation(),
        bodies.KeyList: {"keys": [key]},
        bodies.Key: {**key, "presignatures": {"node-0,node-1": 8}},
        bodies.KeyVersions: {"key_id": KEY_ID, "status": "active", "epoch": 1, "created": 1767225600.0,
                             "versions": [{"epoch": 0, "created": 1767225600.0, "committed": 1767225601.0,
                                           "superseded": 1767312000.0, "destroyed": 1767312030.0},
                                          {"epoch": 1, "created": 1767311990.0, "committed": 1767312000.0}]},
        bodies.SignRequest: _sign_request(),
        bodies.UISignRequest: {**_sign_request(), "rule": "[signing]"},
        bodies.SignRequestList: {"sign_requests": [{**_sign_request(), "status": "pending", "signature": None,
                                                    "decisions": []}]},
        bodies.ApprovalStatement: {
            "statement": {"type": "appliance/approval/v1", "cluster_id": "cluster-1", "policy_hash": "ab" * 32,
                          "request_id": "req_0a1b2c3d4e5f60718293a4b5", "action": "sign", "key_id": KEY_ID,
                          "derivation_path": "m/0/1", "digest": None, "payload_type": "eth_tx",
                          "payload_hash": "cd" * 32, "params": None, "initiator": "initiator",
                          "request_expires_at": 1765086400, "approver": "approver", "decision": "approve",
                          "signed_at": 1765000000, "expires_at": 1765086400},
            "challenge": "Xk9Ok0uFQJ1wGm1tYxAA6aS4m8R3hIV0Bx3lR1cGZx8",
            "credential_ids": ["3q2-7wAAAAAAAAAAAAAAAA"], "rp_id": "appliance.example"},
        bodies.VerifyResult: {"valid": True, "low_s": True, "digest": "11" * 32},
        bodies.Derived: derived,
        bodies.Address: {"key_id": KEY_ID, "kind": "eth", "address": key["addresses"]["eth"],
                         "public_key": PUBLIC_KEY, "path": "m", "network": None},
        bodies.AuditAnchor: {"type": "appliance/audit-anchor/v1", "node": "node-0",
                             "witnessed": [_checkpoint("node-1")], "own": _checkpoint("node-0")},
        bodies.PolicyView: {"cluster_id": "cluster-1", "policy_hash": "ab" * 32, "version": 2,
                            "policy": {"cluster_id": "cluster-1", "version": 2, "users": []}, "updates": 1},
        bodies.PolicyApplied: {"policy_hash": "ab" * 32, "version": 2, "applied": True,
                               "nodes": {"node-0": "applied", "node-1": "applied", "node-2": "current"}},
        bodies.ClusterCerts: {"version": 0, "nodes": [_pinned(i) for i in range(3)]},
        bodies.CertApplied: {"version": 1, "node_id": "node-2", "tls_cert_sha256": "ef" * 32, "applied": True,
                             "nodes": {"node-0": "applied", "node-1": "applied", "node-2": "applied"}},
        bodies.QuarantineList: {"nodes": [quarantined]},
        bodies.QuarantineCleared: {**quarantined, "cleared": True},
        bodies.UIChallenge: {"challenge": "Xk9Ok0uFQJ1wGm1tYxAA6aS4m8R3hIV0Bx3lR1cGZx8", "rp_id": "appliance.example"},
        bodies.UISession: {"user": "approver", "expires_at": 1765000900.0},
        bodies.UISignedOut: {"signed_out": True},
        bodies.UIPasskeyEntry: {"passkey": {"id": "3q2-7wAAAAAAAAAAAAAAAA", "public_key": "pQECAyYgASFYIA",
                                            "alg": -7, "label": "laptop"}},
        bodies.UIMe: {"user": "approver", "roles": ["approver"]},
        bodies.UIAudit: {"entries": [{"seq": 41, "time": 1765000000.0, "actor": "initiator",
                                      "action": "sign_request", "decision": "pending", "reason": None}]},
        # text answers (no JSON Struct)
        "ui_page": "<!doctype html>...", "ui_enrol": "<!doctype html>...",
        "ui_script": "\"use strict\";...", "ui_style": "body { ... }",
        "metrics": "# HELP appliance_up 1 while the node runs\n# TYPE appliance_up gauge\nappliance_up 1\n",
        "audit": _AUDIT_LINE,
    }
