"""``GET /openapi.json``: generated from the route tables (api/routes/), so the document and
what is served cannot drift apart."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from api import bodies
from api.examples import response_examples
from api.routes import client, peer, ui
from api.routes.common import Route
from appliance import __version__
from appliance.ids import GRAMMARS
from appliance.node import Node

REQUEST_ID_SCHEMA = {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$", "example": "checkout-7f3a.2"}

#: every route, in the order they are registered
ROUTES: tuple[Route, ...] = client.ROUTES + peer.ROUTES + ui.ROUTES


def openapi_document(node: Node | None = None) -> dict:
    """The document of every route :data:`ROUTES` serves (``node``: its URL as the server)."""
    paths: dict[str, dict] = {}
    refs, schemas = _schemas()
    err_schema = refs[bodies.Error]
    examples = response_examples()
    for r in ROUTES:
        op: dict[str, Any] = {"summary": r.summary, "operationId": r.handler.__name__}
        params = [{"name": name, "in": "path", "required": True, "schema": _id_schema(name)}
                  for name in _path_params(r.path)]
        params += [{"name": n, "in": "query", "required": False, "schema": {"type": t}, "description": d}
                   for n, t, d in r.query]
        params.append({"$ref": "#/components/parameters/XRequestId"})
        if params:
            op["parameters"] = params
        if r.body is not None:
            media: dict[str, Any] = {"schema": refs[r.body]}
            if r.example is not None:
                media["example"] = r.example
            op["requestBody"] = {"required": r.method == "POST" and bool(bodies.required_fields(r.body)),
                                 "content": {"application/json": media}}
        elif r.content_type == "application/cbor":
            op["requestBody"] = {"required": True, "content": {"application/cbor": {"schema": {
                "type": "string", "format": "binary"}}}}
        responses: dict[str, Any] = {}
        for status in documented_statuses(r):
            if status < 400 or (r.failure_is_response and status in r.responses):
                ctype = r.content_type if r.method == "GET" else "application/json"
                if ctype == "application/cbor":
                    ctype = "application/json"
                schema = (refs[r.response] if r.response is not None else {"type": "object"}) \
                    if ctype == "application/json" else {"type": "string"}
                text = "OK" if status == 200 else "Accepted" if status < 400 else _STATUS_TEXT.get(status, "Error")
                out: dict[str, Any] = {"schema": schema}
                example = examples.get(r.handler.__name__, examples.get(r.response))
                if example is not None and (status < 400 or r.response is bodies.Readiness):
                    out["example"] = _failure_example(example) if status >= 400 else example
                responses[str(status)] = {"description": text, "content": {ctype: out}}
            else:
                responses[str(status)] = {"description": _STATUS_TEXT.get(status, "Error"),
                                          "content": {"application/json": {"schema": err_schema}}}
        if r.auth == "user":
            op["security"] = [{"httpMessageSignature": []}]
            op["x-roles"] = list(r.roles)
        elif r.auth == "peer":
            op["security"] = [{"pinnedMutualTLS": []}]
            op["tags"] = ["peer"]
        elif r.auth == "ui":
            op["security"] = [{"consoleSession": []}]
            op["tags"] = ["console"]
        elif r.auth == "metrics":
            op["security"] = [{"metricsBearer": []}, {"metricsMutualTLS": []}, {"httpMessageSignature": []}]
            op["x-open"] = 'only with [metrics] auth = "none"'
        for resp in responses.values():  # every answer carries the request's id (api/request_log.py)
            resp["headers"] = {"X-Request-Id": {"$ref": "#/components/headers/XRequestId"}}
        op["responses"] = responses
        paths.setdefault(r.path, {})[r.method.lower()] = op
    servers = [{"url": node.me.url}] if node is not None else []
    return {
        "openapi": "3.1.0",
        "info": {"title": "Threshold-signing appliance node", "version": __version__,
                 "description": "Client requests are signed with RFC 9421 HTTP Message Signatures "
                                "(label sig1, covering @method @authority @path @query content-digest; "
                                "created, keyid = user id, nonce). Peer routes need a pinned client certificate."},
        "servers": servers,
        "paths": paths,
        "components": {
            "securitySchemes": {
                "httpMessageSignature": {"type": "apiKey", "in": "header", "name": "Signature",
                                         "description": "RFC 9421 signature (with Signature-Input "
                                                        "and Content-Digest)"},
                "pinnedMutualTLS": {"type": "mutualTLS",
                                    "description": "client certificate pinned in the cluster configuration"},
                "metricsBearer": {"type": "http", "scheme": "bearer",
                                  "description": "the scraper's token ([metrics] bearer_token_file)"},
                "metricsMutualTLS": {"type": "mutualTLS",
                                     "description": "the scraper's certificate ([metrics] client_certs)"},
                "consoleSession": {"type": "apiKey", "in": "cookie", "name": "appliance_ui",
                                   "description": "the approval console's session (a passkey sign-in, "
                                                  "POST /ui/api/sign-in); reads only"},
            },
            "schemas": schemas,
            "parameters": {"XRequestId": {
                "name": "X-Request-Id", "in": "header", "required": False, "schema": REQUEST_ID_SCHEMA,
                "description": "the caller's id for this request (else the node makes one): returned in "
                               "the response, in the node's log lines and in the audit entries it causes"}},
            "headers": {"XRequestId": {
                "description": "the request's id: the caller's X-Request-Id if well formed, else a fresh one",
                "schema": REQUEST_ID_SCHEMA}},
        },
    }


def _failure_example(example: dict) -> dict:
    """/readyz's 503 example: the same body, not ready, with a reason."""
    return {**example, "ready": False, "hsm": False, "reason": "the HSM is not answering"}


def documented_statuses(r: Route) -> list[int]:
    """Every status route ``r`` answers with: its own (``r.responses``) and what the edge
    answers for any route of its kind: 400 for a malformed id in the path or a body that is
    not JSON or too deep, 408 and 413 for a body too slow or too large, 401 for a user route
    not signed by a user, 403 for a user without the route's roles or a peer route without a
    pinned certificate, 503 before the
    node is ready (or while its HSM or audit log is away), 500 for a bug."""
    out = set(r.responses) | {500}
    if r.auth != "open":
        out.add(503)
    if any(n in GRAMMARS for n in _path_params(r.path)):
        out.add(400)
    if r.method == "POST":
        out |= {400, 408, 413}
    if r.auth in ("user", "metrics", "ui"):
        out.add(401)
    if r.roles:
        out.add(403)
    if r.auth == "peer":
        out.add(403)
    return sorted(out)


_STATUS_TEXT = {400: "Bad input", 401: "Not authenticated", 403: "Forbidden", 404: "Unknown",
                408: "Body too slow", 409: "Wrong state", 413: "Too large", 422: "Unusable import",
                500: "Internal error", 501: "Not implemented yet",
                502: "Protocol abort (culprits)", 503: "Not ready or quorum unreachable (missing_nodes)"}


def _schemas() -> tuple[dict[type, dict], dict[str, dict]]:
    """Each body Struct's ``$ref`` and ``components/schemas`` (generated by msgspec)."""
    types = [bodies.Error, *dict.fromkeys(t for r in ROUTES for t in (r.body, r.response) if t is not None)]
    refs, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    return dict(zip(types, refs)), components


def _id_schema(name: str) -> dict:
    if name in GRAMMARS:
        return {"type": "string", "pattern": f"^{GRAMMARS[name].pattern}$"}
    return {"type": "string"}


def _path_params(path: str) -> list[str]:
    return re.findall(r"{([^}]+)}", path)
