"""schemathesis against a running node's ``/openapi.json`` (a real 2-of-3 LocalCluster).

The document is fetched without authentication (``/openapi.json`` is open); every generated
request is then signed with RFC 9421 (``api.auth.sign_request`` over the exact method, URL and
body bytes that go on the wire) by a user holding a role the operation accepts, so the fuzzing
reaches the handlers rather than stopping at authentication.

What must hold, for positive (schema-valid) and negative (schema-violating) examples of every
operation, peer routes included (they must refuse a client without a pinned certificate):
- no 5xx other than a documented 501 "not implemented yet" (no 500, no crash), and every
  error body is the documented ``{"error": {"code", "message"}}``;
- every answer fits the document (schemathesis's ``status_code_conformance``,
  ``content_type_conformance`` and ``response_schema_conformance``, strict: any failure fails
  the test), tampered and unsigned requests included;
- a refused request (4xx) changes nothing: keys, operations and pending sign requests stay
  as they were;
- every node process is still running and ready afterwards.

Key operations that start a DKG, refresh or reshare (``POST /v1/keys``, ``.../refresh``,
``.../reshare``) get negative examples only, so fuzzing never starts a multi-second
protocol job. Examples per operation: a few in ``make test``, many more in ``make soak``.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time

import pytest

from tests.cluster_fixtures import cluster_fixture, cluster_marks, digest_of
from tests.fuzzing import SOAK, examples
from tests.signing_flow import approve_if_needed

pytestmark = cluster_marks("fuzz-api")

cluster = cluster_fixture()

NO_POSITIVE = {"create_key", "refresh", "reshare"}  # would start a long protocol job
ALLOWED_5XX = {501}  # documented "not implemented yet" routes (issue 8 fills them in)


class _Adapter:
    """A requests adapter pinned to the node's certificate (the appliance's own TLS context)."""

    @staticmethod
    def make(ctx: ssl.SSLContext):
        from requests.adapters import HTTPAdapter

        class A(HTTPAdapter):
            def init_poolmanager(self, *a, **kw):
                kw["ssl_context"] = ctx
                return super().init_poolmanager(*a, **kw)

            def cert_verify(self, conn, url, verify, cert):  # the context decides
                return None

        return A()


def _state(sess, base: str, user: str, key) -> tuple[str, set]:
    """What a refused request must leave alone, as seen through the API: the keys, and the
    pending sign requests (which may only shrink meanwhile, as earlier ones finish)."""
    import requests

    from api.auth import sign_request

    out = []
    for path in ("/v1/keys", "/v1/sign-requests"):
        url = base + path
        req = requests.Request("GET", url, headers=sign_request("GET", url, b"", user, key)).prepare()
        out.append(sess.send(req, timeout=30).json())
    return (json.dumps(out[0], sort_keys=True), {x["request_id"] for x in out[1]["sign_requests"]})


def _valid_json(body: bytes, schema: dict | None) -> bool:
    import jsonschema_rs  # schemathesis's own validator

    try:
        value = json.loads(body) if body else None
    except ValueError:
        return False
    return schema is not None and jsonschema_rs.validator_for(schema).is_valid(value)


def _register_cbor(schemathesis) -> None:
    """Peer message batches are CBOR: let schemathesis send what it generates as CBOR."""
    import cbor2

    @schemathesis.serializer("application/cbor")
    def _cbor(ctx, value):
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        try:
            return cbor2.dumps(value)
        except Exception:
            return json.dumps(value, default=str).encode()


def _run_fuzz(base: str, ctx: ssl.SSLContext, doc: dict, user_keys: dict, key_id: str,
              n_examples: int) -> dict:
    import requests
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from schemathesis import GenerationMode
    from schemathesis.core.failures import FailureGroup
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    from api.auth import load_private_key, sign_request

    user_keys = {u: load_private_key(k) for u, k in user_keys.items()}
    _register_cbor(schemathesis)
    schema = schemathesis.openapi.from_dict(doc)
    sess = requests.Session()
    sess.mount("https://", _Adapter.make(ctx))
    stats: dict = {"requests": 0, "by_status": {}, "failures": [], "accepted": []}

    strict = [status_code_conformance, content_type_conformance, response_schema_conformance]
    ops = [r.ok() for r in schema.get_all_operations()]
    for op in ops:
        raw = op.definition.raw
        op_id = raw.get("operationId", "")
        roles = raw.get("x-roles") or []
        user = roles[0] if roles else "auditor"
        key = user_keys[user]
        signed_route = any("httpMessageSignature" in sec for sec in raw.get("security", []))
        body_schema = (raw.get("requestBody", {}).get("content", {}).get("application/json", {})
                       .get("schema"))
        if body_schema is not None:  # a $ref into the document's components/schemas
            body_schema = {**body_schema, "components": doc["components"]}
        modes = [GenerationMode.NEGATIVE] if op_id in NO_POSITIVE else [GenerationMode.POSITIVE,
                                                                        GenerationMode.NEGATIVE]
        strategies = []
        for mode in modes:
            strategies.append(op.as_strategy(generation_mode=mode))
            if "{key_id}" in op.path:  # also aim at the real key, so handlers go past the lookup
                strategies.append(op.as_strategy(generation_mode=mode, path_parameters={"key_id": key_id}))

        @settings(max_examples=n_examples, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)
        @given(case=st.one_of(strategies), tamper=st.sampled_from(["none"] * 6 + ["digest", "stale", "nosig"]))
        def check(case, tamper):
            kw = case.as_transport_kwargs(base_url=base)
            headers = {k: v for k, v in kw.get("headers", {}).items()
                       if k.lower() not in ("signature", "signature-input", "content-digest")}
            prepared = requests.Request(kw["method"], kw["url"], headers=headers, params=kw.get("params"),
                                        data=kw.get("data"), json=kw.get("json"),
                                        cookies=kw.get("cookies")).prepare()
            body = prepared.body or b""
            if isinstance(body, str):
                body = body.encode()
            if op_id in NO_POSITIVE and _valid_json(body, body_schema):  # noqa: B023 (called within the iteration)
                return  # a "negative" example that is valid after all: it would start a job
            if not signed_route and tamper != "none":  # noqa: B023 (called within the iteration)
                return  # open and peer routes do not look at request signatures
            signed = sign_request(prepared.method, prepared.url, body, user, key)  # noqa: B023 (called within the iteration)
            if tamper == "digest":
                signed["Content-Digest"] = "sha-256=:" + "A" * 43 + "=:"
            elif tamper == "stale":
                import datetime

                signed = sign_request(prepared.method, prepared.url, body, user, key,  # noqa: B023 (called within the iteration)
                                      created=datetime.datetime.now(datetime.timezone.utc)
                                      - datetime.timedelta(hours=1))
            if tamper != "nosig":
                prepared.headers.update(signed)
            mutating = prepared.method != "GET"
            before = _state(sess, base, "admin", user_keys["admin"]) if mutating else None
            resp = sess.send(prepared, timeout=60)
            stats["requests"] += 1
            stats["by_status"][resp.status_code] = stats["by_status"].get(resp.status_code, 0) + 1
            where = f"{prepared.method} {prepared.path_url[:120]} body={body[:120]!r} tamper={tamper}"
            try:  # the answer is one the document describes (status, content type, body schema)
                case.validate_response(resp, checks=strict)  # noqa: B023 (called within the iteration)
            except FailureGroup as exc:  # a BaseExceptionGroup: one failure per check that failed
                what = "; ".join(str(e).split("\n")[0] for e in exc.exceptions)
                stats["failures"].append(f"{resp.status_code} not as documented: {what[:400]} <- {where}")
            if resp.status_code >= 500 and resp.status_code not in ALLOWED_5XX:
                stats["failures"].append(f"{resp.status_code} {resp.text[:200]} <- {where}")
                return
            if resp.status_code >= 400:
                try:
                    err = resp.json()["error"]
                    assert isinstance(err["code"], str) and isinstance(err["message"], str)
                except Exception:
                    stats["failures"].append(f"undocumented error body {resp.text[:200]!r} <- {where}")
                    return
                if tamper != "none" and resp.status_code != 401:
                    stats["failures"].append(f"tampered auth not refused with 401 ({resp.status_code}) <- {where}")
                if mutating:
                    after = _state(sess, base, "admin", user_keys["admin"])
                    if after[0] != before[0] or not after[1] <= before[1]:
                        stats["failures"].append(f"refused request changed state <- {where}")
            else:
                if tamper != "none":
                    stats["failures"].append(f"tampered auth accepted ({resp.status_code}) <- {where}")
                if mutating:
                    stats["accepted"].append(f"{resp.status_code} {op_id}")  # noqa: B023 (called within the iteration)
                if op_id in NO_POSITIVE:  # noqa: B023 (called within the iteration)
                    stats["failures"].append(f"schema-violating key operation accepted <- {where}")

        check()
    return stats


async def test_schemathesis_openapi_no_5xx_no_state_change(cluster):
    admin = cluster.client("admin", node=0)
    key = await admin.create_key(threshold=2)
    # one signed request so that sign-request routes have a real request id to look at
    ini = cluster.client("initiator", node=0)
    req = await ini.request_signature(key["key_id"], digest_of("fuzz-api"))
    await approve_if_needed(cluster.client("approver", node=0), req)  # the default policy's step
    await ini.wait_signature(req["request_id"], timeout=120)
    doc = await _get_open(cluster.urls[0] + "/openapi.json", cluster._server_ctx(0))  # no signature
    assert doc == await admin.openapi()
    n = examples(10, 300)
    t0 = time.perf_counter()
    stats = await asyncio.to_thread(_run_fuzz, cluster.urls[0], cluster._server_ctx(0), doc,
                                    cluster.user_keys, key["key_id"], n)
    took = time.perf_counter() - t0
    print(f"\nschemathesis: {stats['requests']} requests in {took:.1f} s over {len(doc['paths'])} paths, "
          f"statuses {dict(sorted(stats['by_status'].items()))}, accepted mutating: {len(stats['accepted'])}")
    assert not stats["failures"], "\n".join(stats["failures"][:20])
    assert stats["requests"] >= 2 * n * len(doc["paths"]) // 3
    for i in range(cluster.n):
        assert cluster.running(i), f"{cluster.node_ids[i]} died:\n{cluster.log_tail(i)}"
        assert (await cluster.client("auditor", node=i).readyz())["ready"]
    # and the node still signs
    again = await ini.request_signature(key["key_id"], digest_of("after fuzzing"))
    await approve_if_needed(cluster.client("approver", node=0), again)
    assert (await ini.wait_signature(again["request_id"], timeout=120))["status"] == "signed"


@pytest.mark.soak
async def test_schemathesis_soak_every_node(cluster):
    """make soak: the same against the other nodes too, with many more examples."""
    assert SOAK or True
    admin = cluster.client("admin", node=0)
    keys = await admin.list_keys()
    key_id = keys[0]["key_id"] if keys else (await admin.create_key(threshold=2))["key_id"]
    doc = await admin.openapi()
    for i in range(1, cluster.n):
        stats = await asyncio.to_thread(_run_fuzz, cluster.urls[i], cluster._server_ctx(i), doc,
                                        cluster.user_keys, key_id, examples(5, 40))
        print(f"\nnode {i}: {stats['requests']} requests, statuses {stats['by_status']}")
        assert not stats["failures"], "\n".join(stats["failures"][:20])
        assert cluster.running(i)


async def _get_open(url: str, ctx: ssl.SSLContext) -> dict:
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        async with s.get(url) as r:  # no Signature, no client certificate
            assert r.status == 200, await r.text()
            return json.loads(await r.read())


async def _post_raw(url: str, ctx: ssl.SSLContext, body: bytes, headers: dict) -> tuple[int, dict]:
    import aiohttp
    from yarl import URL

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        async with s.post(URL(url, encoded=True), data=body, headers=headers) as r:
            return r.status, json.loads(await r.read())


async def test_deeply_nested_bodies_get_400_and_the_node_lives(cluster):
    """Issue 12 item 3: once an EIP-712 request had loaded eth-account (whose py_ecc raised the
    recursion limit to 100000), a 198 KB JSON body nested 99,000 deep segfaulted the node; CBOR
    peer bodies likewise. Now: 400 ``too_deep`` for a user's JSON, a peer's JSON and a peer's
    CBOR, and the node still runs and is ready."""
    from api.auth import load_private_key, sign_request
    from appliance.payloads import samples

    admin = cluster.client("admin", node=0)
    keys = await admin.list_keys()
    key_id = keys[0]["key_id"] if keys else (await admin.create_key(threshold=2))["key_id"]
    ini = cluster.client("initiator", node=0)
    owner = (await ini.address(key_id, "eth"))["address"]
    typed = samples.sample_permit(chain_id=1, token="0xdAC17F958D2ee523a2206206994597C13D831ec7", owner=owner,
                                  spender="0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359", value=5)
    req = await ini.request_signature(key_id, payload=typed, payload_type="eip712")  # eth-account loaded
    assert req["status"] in ("pending", "signing")

    deep_json = b"[" * 99_000 + b"]" * 99_000
    path = f"/v1/keys/{key_id}/sign-requests"
    headers = sign_request("POST", cluster.urls[0] + path, deep_json, "initiator",
                           load_private_key(cluster.user_keys["initiator"]))
    headers["Content-Type"] = "application/json"
    status, body = await _post_raw(cluster.urls[0] + path, cluster._server_ctx(0), deep_json, headers)
    assert (status, body["error"]["code"]) == (400, "too_deep"), body

    peer = cluster.peer_ssl_context(1, 0)
    status, body = await _post_raw(cluster.urls[0] + "/v1/peer/jobs", peer, deep_json,
                                   {"Content-Type": "application/json"})
    assert (status, body["error"]["code"]) == (400, "too_deep"), body
    deep_cbor = b"\x81" * 99_000 + b"\x00"
    status, body = await _post_raw(cluster.urls[0] + "/v1/peer/jobs/job_0123456789abcdef01234567/messages", peer, deep_cbor,
                                   {"Content-Type": "application/cbor"})
    assert (status, body["error"]["code"]) == (400, "too_deep"), body

    assert cluster.running(0), cluster.log_tail(0)
    assert (await cluster.client("auditor", node=0).readyz())["ready"]
