"""``ApplianceClient``: the async Python client of a node's HTTP API.

    async with ApplianceClient("https://127.0.0.1:8443", "alice", key_pem,
                               server_cert=node_cert_pem) as c:
        key = await c.create_key(threshold=2)                 # waits for the DKG
        req = await c.request_signature(key["key_id"], digest)
        done = await c.wait_signature(req["request_id"])      # {"signature": {...}, "public_key"}

Every request is signed with the user's key (RFC 9421, :mod:`appliance_client.httpsig`; the
node checks it in :mod:`api.auth`). A refused call
raises :class:`ApplianceAPIError` with ``status`` (HTTP) and ``code`` (and ``culprits`` /
``missing_nodes`` when the node names them).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from dataclasses import replace
from pathlib import Path
from collections.abc import AsyncIterator, Sequence
from typing import Any, Callable
from urllib.parse import urlencode

import aiohttp
from yarl import URL

from appliance_client.bounded import loads_json
from appliance_client.grammar import PolicyError
from appliance_client.httpsig import load_private_key, sign_request
from appliance_client.ids import url_path
from appliance_client.statements import (Approval, CertUpdate, Request, WebAuthnAssertion, b64url,
                                         import_request_params, make_approval, make_request, new_nonce)
from appliance_client.tls import client_context, leaf_pem_of


ProgressCallback = Callable[[dict], None]  # wait_operation's on_progress: the operation's progress


def _progress_key(progress: dict) -> tuple:
    """What makes a progress report new (not its timestamp)."""
    return (progress.get("phase"), progress.get("done"), progress.get("total"), progress.get("detail"),
            len(progress.get("completed") or ()))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jws_signing_input(header: dict, payload: bytes) -> str:
    """RFC 7515's signing input of an ES256K JWS: ``BASE64URL(header) '.' BASE64URL(payload)``,
    the header's ``alg`` set to ES256K (appliance.formats.jws_signing_input makes the same)."""
    hdr = json.dumps({**header, "alg": "ES256K"}, separators=(",", ":"), sort_keys=True).encode()
    return f"{_b64url(hdr)}.{_b64url(payload)}"


class ApplianceAPIError(Exception):
    """A call the node refused or that failed: ``status``, ``code``, ``message``, ``culprits``,
    ``missing_nodes``."""

    def __init__(self, status: int, code: str, message: str = "", *, culprits: list[str] | None = None,
                 missing_nodes: list[str] | None = None, body: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.culprits = culprits
        self.missing_nodes = missing_nodes
        self.body = body

    @classmethod
    def from_error(cls, status: int, err: dict, body: Any = None) -> "ApplianceAPIError":
        return cls(int(err.get("status", status)), str(err.get("code", "error")), str(err.get("message", "")),
                   culprits=err.get("culprits"), missing_nodes=err.get("missing_nodes"), body=body)


class ApplianceClient:
    """One user talking to one node."""

    def __init__(self, url: str, user: str, private_key: Any, *, server_cert: str | None = None,
                 ca_file: str | Path | None = None, timeout: float = 120.0,
                 observe: Callable[[str, str, int, str, bytes], None] | None = None) -> None:
        """``private_key``: PEM (str/bytes), a path to a PEM file, or a cryptography key
        (Ed25519 or P-256). ``server_cert``: the node's certificate PEM to pin; ``ca_file``:
        a CA bundle instead; neither: the system trust store. ``observe(method, path, status,
        content_type, body)``: called with every response before it is decoded (e.g.
        :meth:`api.conformance.ResponseContract.check`; what it raises, the call raises)."""
        self.url = url.rstrip("/")
        self.user = user
        if isinstance(private_key, Path) or (isinstance(private_key, str) and "-----BEGIN" not in private_key):
            private_key = Path(private_key).read_bytes()
        if isinstance(private_key, (str, bytes)):
            private_key = load_private_key(private_key)
        self._key = private_key
        self._ssl = client_context(server_cert, ca_file=ca_file) if self.url.startswith("https") else None
        self.timeout = timeout
        self.observe = observe
        self._session: aiohttp.ClientSession | None = None
        #: sent as ``X-Request-Id`` with each request when set; the node's answer's id (its
        #: own when none was sent) is kept in ``last_request_id``
        self.request_id: str | None = None
        self.last_request_id: str | None = None

    # -- plumbing -------------------------------------------------------------------------

    async def __aenter__(self) -> "ApplianceClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            conn = aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else False, limit=100)
            self._session = aiohttp.ClientSession(connector=conn)
        return self._session

    def signed_headers(self, method: str, url: str, body: bytes) -> dict[str, str]:
        return sign_request(method, url, body, self.user, self._key)

    async def request(self, method: str, path: str | URL, body: Any = None, query: dict | None = None, *,
                      sign: bool = True, timeout: float | None = None, raw: bool = False) -> Any:
        """Send one request; the decoded JSON (or bytes with ``raw``), or ApplianceAPIError.
        ``path``: a fixed route, or one with ids made by :func:`appliance_client.ids.url_path`."""
        q = {k: v for k, v in (query or {}).items() if v is not None}
        url = self.url + str(path) + ("?" + urlencode(q) if q else "")
        data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.request_id is not None:
            headers["X-Request-Id"] = self.request_id
        if sign:
            headers.update(self.signed_headers(method, url, data))
        t = aiohttp.ClientTimeout(total=timeout or self.timeout)
        try:
            async with self._http().request(method, URL(url, encoded=True), data=data or None,
                                            headers=headers, timeout=t) as resp:
                content = await resp.read()
                self.last_request_id = resp.headers.get("X-Request-Id")
                if self.observe is not None:
                    self.observe(method, URL(url, encoded=True).raw_path, resp.status, resp.content_type, content)
                if resp.status >= 400:
                    try:
                        err = loads_json(content).get("error", {})
                    except (ValueError, AttributeError):
                        err = {}
                    raise ApplianceAPIError(resp.status, err.get("code", "http_error"),
                                            err.get("message", content[:200].decode(errors="replace")),
                                            culprits=err.get("culprits"), missing_nodes=err.get("missing_nodes"))
                if raw:
                    return content
                return loads_json(content) if content else {}
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ServerFingerprintMismatch) as exc:
            # the node answered with a certificate this client does not trust: not the pinned
            # one (server_cert) or not from the CA (ca_file): an authentication failure
            why = getattr(getattr(exc, "certificate_error", None), "verify_message", None) or type(exc).__name__
            raise ApplianceAPIError(503, "server_certificate_rejected",
                                    f"{self.url}: the node's TLS certificate was rejected ({why}): not the "
                                    "pinned certificate, or not from the trusted CA") from None
        except aiohttp.ClientConnectionError as exc:
            raise ApplianceAPIError(503, "node_unreachable", f"{self.url}: {type(exc).__name__}") from None

    # -- open routes ----------------------------------------------------------------------

    async def healthz(self) -> dict:
        return await self.request("GET", "/healthz", sign=False)

    async def readyz(self) -> dict:
        return await self.request("GET", "/readyz", sign=False)

    async def metrics(self) -> str:
        return (await self.request("GET", "/metrics", raw=True)).decode()

    async def openapi(self) -> dict:
        return await self.request("GET", "/openapi.json")

    # -- keys -----------------------------------------------------------------------------

    async def operation(self, operation_id: str, wait: float = 0) -> dict:
        return await self.request("GET", url_path("v1", "operations", operation_id), query={"wait": wait or None})

    async def wait_operation(self, operation_id: str, timeout: float = 600.0, *,
                             on_progress: ProgressCallback | None = None) -> dict:
        """Wait for a final status; the operation (done) or ApplianceAPIError (failed).
        ``on_progress(progress)``: called with the operation's ``progress`` (phase, done, total,
        completed phases: api/README.md, Progress) each time it changed; the node answers a
        long-poll as soon as it changes."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            remaining = deadline - time.monotonic()
            op = await self.operation(operation_id, wait=max(0.1, min(30.0, remaining)))
            progress = op.get("progress")
            if on_progress is not None and progress is not None and _progress_key(progress) != last:
                last = _progress_key(progress)
                on_progress(progress)
            if op["status"] == "done":
                return op
            if op["status"] in ("failed", "cancelled", "rejected", "expired"):
                raise ApplianceAPIError.from_error(502, op.get("error") or {"code": op["status"]}, op)
            if remaining <= 0:
                raise TimeoutError(f"operation {operation_id} still {op['status']}")

    async def create_key(self, threshold: int, nodes: list[str] | None = None, *,
                         scheme: str = "ecdsa-secp256k1", paillier_bits: int | None = None,
                         timeout: float = 600.0, on_progress: ProgressCallback | None = None) -> dict:
        """Run a DKG and wait for it: ``key_id``, ``public_key`` (hex), ``threshold``, ``nodes``...
        ``scheme``: ``ecdsa-secp256k1`` (CGGMP), ``schnorr-bip340`` or ``ed25519`` (FROST; then
        ``public_key`` is 32 bytes: for BIP340 the x-only Taproot output key, api/README.md
        Schemes). ``on_progress``: as :meth:`wait_operation`."""
        op = await self.start_key_creation(threshold, nodes, scheme=scheme, paillier_bits=paillier_bits)
        op = await self.wait_operation(op["operation_id"], timeout, on_progress=on_progress)
        result = op.get("result") or {}
        key = dict(result.get("key") or {})
        key.setdefault("key_id", result.get("key_id", op.get("key_id")))
        key.setdefault("public_key", result.get("public_key"))
        key["operation_id"] = op["operation_id"]
        return key

    async def start_key_creation(self, threshold: int, nodes: list[str] | None = None, *,
                                 scheme: str = "ecdsa-secp256k1", paillier_bits: int | None = None) -> dict:
        """Ask for a DKG and return its operation at once (``operation_id``, ``status``:
        ``pending`` while it waits for the admin quorum: :meth:`approve_operation`). The
        signed request's params carry ``scheme`` unless it is the default."""
        body: dict[str, Any] = {"threshold": threshold}
        if nodes is not None:
            body["nodes"] = nodes
        if paillier_bits is not None:
            body["paillier_bits"] = paillier_bits
        params: dict[str, Any] = {"threshold": threshold, **({"nodes": nodes} if nodes is not None else {})}
        if scheme != "ecdsa-secp256k1":
            body["scheme"] = scheme
            params["scheme"] = scheme
        return await self._signed_post("/v1/keys", body, action="keygen", params=params)

    async def list_keys(self) -> list[dict]:
        """Every active key, oldest first (all pages)."""
        return [k async for k in self.iter_keys()]

    async def keys_page(self, *, limit: int | None = None, cursor: str | None = None) -> dict:
        """One page of ``GET /v1/keys``: ``keys`` and ``next_cursor`` (None on the last page)."""
        return await self.request("GET", "/v1/keys", query={"limit": limit, "cursor": cursor})

    async def iter_keys(self, *, page_size: int | None = None) -> AsyncIterator[dict]:
        """Every active key, oldest first, fetched a page at a time."""
        cursor = None
        while True:
            page = await self.keys_page(limit=page_size, cursor=cursor)
            for key in page["keys"]:
                yield key
            cursor = page.get("next_cursor")
            if cursor is None:
                return

    async def get_key(self, key_id: str) -> dict:
        return await self.request("GET", url_path("v1", "keys", key_id))

    async def derive(self, key_id: str, path: str) -> dict:
        return await self.request("GET", url_path("v1", "keys", key_id, "derive"), query={"path": path})

    async def address(self, key_id: str, kind: str, path: str | None = None) -> dict:
        return await self.request("GET", url_path("v1", "keys", key_id, "address"), query={"kind": kind, "path": path})

    async def refresh(self, key_id: str, *, timeout: float = 600.0,
                      on_progress: ProgressCallback | None = None) -> dict:
        op = await self.start_refresh(key_id)
        return await self.wait_operation(op["operation_id"], timeout, on_progress=on_progress)

    async def start_refresh(self, key_id: str) -> dict:
        """Ask for a refresh and return its operation at once (pending while it waits for the
        admin quorum)."""
        return await self._signed_post(url_path("v1", "keys", key_id, "refresh"), {}, action="refresh",
                                       key_id=key_id, params={})

    async def disable_key(self, key_id: str, *, timeout: float = 600.0) -> dict:
        """Disable a key on every holder (a key change under the key-change quorum); waits for
        the operation (an approval by admins first, where the policy asks for more than one)."""
        return await self._lifecycle("disable", key_id, timeout)

    async def enable_key(self, key_id: str, *, timeout: float = 600.0) -> dict:
        return await self._lifecycle("enable", key_id, timeout)

    async def delete_key(self, key_id: str, *, timeout: float = 600.0) -> dict:
        """Delete a key: every holder destroys its sealed shares and presignatures (two phases)."""
        return await self._lifecycle("delete", key_id, timeout)

    async def request_lifecycle(self, action: str, key_id: str) -> dict:
        """``POST /v1/keys/{key_id}/{action}`` (disable, enable, delete) without waiting: the operation."""
        return await self._signed_post(url_path("v1", "keys", key_id, action), {}, action=action, key_id=key_id,
                                       params={})

    async def _lifecycle(self, action: str, key_id: str, timeout: float, *,
                         on_progress: ProgressCallback | None = None) -> dict:
        op = await self.request_lifecycle(action, key_id)
        return await self.wait_operation(op["operation_id"], timeout, on_progress=on_progress)

    async def key_versions(self, key_id: str) -> dict:
        """The key's epochs with their dates, as the node asked records them."""
        return await self.request("GET", url_path("v1", "keys", key_id, "versions"))

    async def reshare(self, key_id: str, threshold: int, nodes: list[str], *, timeout: float = 600.0,
                      on_progress: ProgressCallback | None = None) -> dict:
        op = await self.start_reshare(key_id, threshold, nodes)
        return await self.wait_operation(op["operation_id"], timeout, on_progress=on_progress)

    async def start_reshare(self, key_id: str, threshold: int, nodes: list[str]) -> dict:
        """Ask for a reshare and return its operation at once."""
        body = {"threshold": threshold, "nodes": nodes}
        return await self._signed_post(url_path("v1", "keys", key_id, "reshare"), body, action="reshare",
                                       key_id=key_id, params=dict(body))

    async def approve_operation(self, operation_id: str) -> dict:
        """An admin's approval of a key operation waiting for the policy's admin quorum."""
        op = await self.operation(operation_id)
        return await self.request("POST", url_path("v1", "operations", operation_id, "approvals"),
                                  {"approval": (await self._decision(op["request"], "approve")).to_json()})

    # -- the policy: signed statements ------------------------------------------------------

    async def policy(self, refresh: bool = False) -> dict:
        """``GET /v1/policy`` (cached): ``cluster_id``, ``policy_hash``, ``version``, ``policy``."""
        if refresh or getattr(self, "_policy_cache", None) is None:
            self._policy_cache = await self.request("GET", "/v1/policy")
        return self._policy_cache

    async def update_policy(self, update: dict) -> dict:
        """``POST /v1/policy`` with a :class:`appliance.policy.PolicyUpdate` (as JSON) signed by
        the current policy's admins; the node forwards it to every node."""
        out = await self.request("POST", "/v1/policy", update)
        self._policy_cache = None
        return out

    # -- TLS certificates: rotation ---------------------------------------------------------

    async def tls_certs(self) -> dict:
        """``GET /v1/cluster/tls-certs``: ``version`` (certificate updates applied) and the
        pinned certificate of every node (``node_id``, ``tls_cert``, ``tls_cert_sha256``)."""
        return await self.request("GET", "/v1/cluster/tls-certs")

    async def cert_update(self, node_id: str, tls_cert_pem: str) -> CertUpdate:
        """The next certificate update replacing ``node_id``'s pin with ``tls_cert_pem`` (its
        leaf), unsigned: each admin adds a signature (``.signed_by(user, key)``)."""
        certs, pol = await self.tls_certs(), await self.policy(refresh=True)
        pinned = {n["node_id"]: n["tls_cert_sha256"] for n in certs["nodes"]}
        if node_id not in pinned:
            raise ValueError(f"no node {node_id!r} in the cluster")
        return CertUpdate(pol["cluster_id"], pol["policy_hash"], certs["version"] + 1, node_id, pinned[node_id],
                          leaf_pem_of(tls_cert_pem))

    async def rotate_tls_cert(self, update: dict) -> dict:
        """``POST /v1/cluster/tls-certs`` with a signed :class:`appliance_client.CertUpdate` (as
        JSON): applied by the rotated node, this one and every other node."""
        return await self.request("POST", "/v1/cluster/tls-certs", update)

    def _rule(self, pol: dict, action: str, key_id: str | None) -> dict:
        p = pol["policy"]
        if action != "sign":
            return p["key_changes"]
        return p["signing"].get("keys", {}).get(key_id) or p["signing"]

    async def _statement(self, action: str, *, key_id: str | None = None, nonce: str | None = None,
                         refresh: bool = False, **fields: Any):

        pol = await self.policy(refresh)
        rule = self._rule(pol, action, key_id)
        return make_request(self._key, cluster_id=pol["cluster_id"], policy_hash=pol["policy_hash"],
                            initiator=self.user, now=time.time(), ttl_s=rule["request_ttl_s"],
                            action=action, key_id=key_id, nonce=nonce, **fields)

    async def _signed_post(self, path: str | URL, body: dict, *, action: str, key_id: str | None = None,
                           nonce: str | None = None, **fields: Any) -> dict:
        """POST ``body`` with the user's signed request statement; once more with a fresh
        policy if the node's changed meanwhile (policy_mismatch)."""

        nonce = nonce or new_nonce()
        for attempt in (0, 1):
            sr = await self._statement(action, key_id=key_id, nonce=nonce, refresh=attempt == 1, **fields)
            try:
                return await self.request("POST", path, {**body, "request": sr.to_json()})
            except ApplianceAPIError as exc:
                if exc.code != "policy_mismatch" or attempt == 1:
                    raise
        raise AssertionError("unreachable")

    async def _decision(self, request_json: dict, decision: str, reason: str = "", view: dict | None = None):
        """The user's signed decision on a request (its statement as the node shows it; a sign
        request's ``view`` gives what it binds of the decoded summary and network)."""

        req = Request.from_statement(request_json["statement"])
        pol = await self.policy()
        if pol["policy_hash"] != req.policy_hash:
            pol = await self.policy(refresh=True)
        rule = self._rule(pol, req.action, req.key_id)
        return make_approval(self._key, req, approver=self.user, now=time.time(),
                             ttl_s=rule["approval_ttl_s"], decision=decision, reason=reason,
                             decoded=(view or {}).get("decoded"), network=(view or {}).get("network"))

    async def import_key(self, bundle: dict, *, refresh: bool = False, paillier_bits: int | None = None,
                         timeout: float = 600.0) -> dict:
        """Hand an import bundle (from ``appliance key import``) to the nodes and wait: the
        operation's result (``key_id``, ``public_key``, ``epoch``, ``recommendation``...).
        ``refresh``: refresh the key right after (recommended: the dealer's machine saw the
        whole key) — an ordinary signed refresh request; ``refreshed`` and ``epoch`` tell."""

        body: dict[str, Any] = {"bundle": bundle}
        if paillier_bits is not None:
            body["paillier_bits"] = paillier_bits
        try:
            params = import_request_params(bundle)
        except PolicyError:
            # a request naming no bundle: the node reads the bundle first and names its problem
            params = {"bundle_hash": "0" * 64, "public_key": "0" * 66, "threshold": 1, "nodes": []}
        op = await self._signed_post("/v1/keys/import", body, action="import", params=params)
        op = await self.wait_operation(op["operation_id"], timeout)
        result = dict(op.get("result") or {})
        result.setdefault("key_id", op.get("key_id"))
        result["operation_id"] = op["operation_id"]
        if refresh:
            r = await self.refresh(result["key_id"], timeout=timeout)
            rr = r.get("result") or {}
            result.update(refreshed=True, epoch=rr.get("epoch"), refresh_operation_id=r["operation_id"])
            result.pop("recommendation", None)
        return result


    # -- signing --------------------------------------------------------------------------

    async def request_signature(self, key_id: str, digest: bytes | None = None, derivation_path: str | None = None,
                                *, payload: Any = None, payload_type: str | None = None,
                                signers: list[str] | None = None, network: str | None = None,
                                nonce: str | None = None) -> dict:
        """Create a sign request, signed with this user's key (the initiator's statement the
        policy asks for): ``request_id``, ``status`` (``pending`` until approved, or
        ``signing``). ``signers`` names the nodes; ``network`` the Bitcoin network of a PSBT;
        ``nonce`` is the idempotency key (the same nonce again returns the same request)."""
        body: dict[str, Any] = {}
        if digest is not None:
            if not isinstance(digest, (bytes, bytearray)):
                raise TypeError("digest must be bytes")
            body["digest"] = bytes(digest).hex()
        if derivation_path is not None:
            body["derivation_path"] = derivation_path
        if payload is not None:
            body["payload"] = payload
        if payload_type is not None:
            body["payload_type"] = payload_type
        if signers is not None:
            body["signers"] = signers
        if network is not None:
            body["network"] = network
        path = url_path("v1", "keys", key_id, "sign-requests")
        try:
            cache = self.__dict__.setdefault("_sent", {})
            if nonce is not None and (key_id, nonce) in cache:  # a retry: the same statement
                return await self.request("POST", path, {**body, "request": cache[(key_id, nonce)]})
            fields = dict(digest=body.get("digest"), derivation_path=derivation_path,
                          payload=payload, payload_type=payload_type, network=network)
            for attempt in (0, 1):
                sr = await self._statement("sign", key_id=key_id, nonce=nonce, refresh=attempt == 1,
                                           **fields)
                if nonce is not None:
                    cache[(key_id, nonce)] = sr.to_json()
                try:
                    return await self.request("POST", path, {**body, "request": sr.to_json()})
                except ApplianceAPIError as exc:
                    if exc.code != "policy_mismatch" or attempt == 1 or nonce is not None:
                        raise
        except PolicyError as exc:  # what cannot even be put in a statement: let the node say it
            return await self.request("POST", path, {**body, "request": {"invalid": str(exc)[:200]}})
        raise AssertionError("unreachable")

    async def get_sign_request(self, request_id: str, wait: float = 0) -> dict:
        return await self.request("GET", url_path("v1", "sign-requests", request_id), query={"wait": wait or None})

    async def pending_requests(self) -> list[dict]:
        """The open requests (pending approval, or signing), newest first."""
        return await self.list_sign_requests(status=("pending", "signing"))

    async def sign_requests_page(self, *, status: str | Sequence[str] | None = None, key_id: str | None = None,
                                 initiator: str | None = None, created_after: float | None = None,
                                 created_before: float | None = None, limit: int | None = None,
                                 cursor: str | None = None) -> dict:
        """One page of ``GET /v1/sign-requests`` (this node's requests, newest first):
        ``sign_requests`` and ``next_cursor`` (None on the last page). ``status``: one or
        several of pending, signing, signed, failed, rejected, cancelled, expired; times in
        Unix seconds (exclusive); the filters combine."""
        statuses = status if status is None or isinstance(status, str) else ",".join(status)
        query = {"status": statuses, "key_id": key_id, "initiator": initiator,
                 "created_after": _seconds(created_after), "created_before": _seconds(created_before),
                 "limit": limit, "cursor": cursor}
        return await self.request("GET", "/v1/sign-requests", query=query)

    async def iter_sign_requests(self, *, page_size: int | None = None, **filters: Any) -> AsyncIterator[dict]:
        """Every request matching ``filters`` (those of :meth:`sign_requests_page`), newest
        first, fetched a page at a time."""
        cursor = None
        while True:
            page = await self.sign_requests_page(limit=page_size, cursor=cursor, **filters)
            for req in page["sign_requests"]:
                yield req
            cursor = page.get("next_cursor")
            if cursor is None:
                return

    async def list_sign_requests(self, **filters: Any) -> list[dict]:
        """Every request matching ``filters`` (all pages), newest first."""
        return [r async for r in self.iter_sign_requests(**filters)]

    async def approve(self, request_id: str) -> dict:
        """Approve a pending request: this user signs a decision bound to the request as the
        node shows it (``GET /v1/sign-requests/{id}``: its statement and what the node decoded)."""
        return await self._decide(request_id, "approve", "approvals")

    async def reject(self, request_id: str, reason: str | None = None) -> dict:
        """Reject a pending request; ``reason`` is part of the signed statement (every node
        checks it; the initiator sees it in the request's ``decisions``)."""
        return await self._decide(request_id, "reject", "rejections", reason=reason)

    async def cancel(self, request_id: str) -> dict:
        """The initiator withdraws their own pending request."""
        return await self._decide(request_id, "cancel", "cancel")

    async def _decide(self, request_id: str, decision: str, route: str, reason: str | None = None) -> dict:
        req = await self.get_sign_request(request_id)
        if "request" not in req:
            raise ApplianceAPIError(409, "not_pending", f"request {request_id} carries no statement")
        body: dict[str, Any] = {"approval": (await self._decision(req["request"], decision, reason or "",
                                                                   req)).to_json()}
        return await self.request("POST", url_path("v1", "sign-requests", request_id, route), body)

    # -- passkey (WebAuthn) decisions ----------------------------------------------------------

    async def approval_statement(self, request_id: str, decision: str = "approve", reason: str | None = None) -> dict:
        """``GET /v1/sign-requests/{id}/approval-statement``: the statement this user signs with a
        passkey (a rejection's ``reason`` in it), its ``challenge`` (base64url SHA-256 of the
        statement's canonical JSON), the user's ``credential_ids`` and the policy's ``rp_id``."""
        return await self.request("GET", url_path("v1", "sign-requests", request_id, "approval-statement"),
                                  query={"decision": decision, "reason": reason})

    async def submit_passkey_decision(self, request_id: str, statement: dict,
                                      assertion: WebAuthnAssertion | dict) -> dict:
        """Post a decision signed with a passkey: ``statement`` as the node gave it, and the
        authenticator's ``assertion`` (a :class:`WebAuthnAssertion`, or its JSON: base64url
        ``credential_id``, ``authenticator_data``, ``client_data_json``, ``signature``)."""
        a = Approval.from_statement(statement)
        wa = assertion if isinstance(assertion, WebAuthnAssertion) else WebAuthnAssertion.from_json(assertion)
        route = {"approve": "approvals", "reject": "rejections"}.get(a.decision)
        if route is None:
            raise ValueError("a passkey decision is approve or reject")
        return await self.request("POST", url_path("v1", "sign-requests", request_id, route),
                                  {"approval": replace(a, webauthn=wa).to_json()})

    async def decide_with_passkey(self, request_id: str, authenticator: Callable[..., Any],
                                  decision: str = "approve", reason: str | None = None) -> dict:
        """Fetch the statement, have ``authenticator(challenge=bytes, credential_ids=[...],
        rp_id=str)`` make the assertion (what a page does with navigator.credentials.get),
        and post it."""
        got = await self.approval_statement(request_id, decision, reason)
        challenge = Approval.from_statement(got["statement"]).challenge()
        if b64url(challenge) != got["challenge"]:  # the node's challenge is the statement's hash
            raise ValueError("the node's challenge is not SHA-256 of its statement")
        assertion = authenticator(challenge=challenge, credential_ids=got["credential_ids"],
                                  rp_id=got["rp_id"])
        return await self.submit_passkey_decision(request_id, got["statement"], assertion)

    async def wait_signature(self, request_id: str, timeout: float = 120.0) -> dict:
        """Wait until signed: the request with ``signature`` {der, r, s, recovery_id} and
        ``public_key``; ApplianceAPIError if it failed (e.g. 502 with culprits)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            req = await self.get_sign_request(request_id, wait=max(0.1, min(30.0, remaining)))
            if req["status"] == "signed":
                return req
            if req["status"] in ("failed", "rejected", "cancelled", "expired"):
                raise ApplianceAPIError.from_error(502, req.get("error") or {"code": req["status"]}, req)
            if remaining <= 0:
                raise TimeoutError(f"sign request {request_id} still {req['status']}")

    async def sign(self, key_id: str, digest: bytes, *, timeout: float = 120.0,
                   approver: "ApplianceClient | None" = None, **kw: Any) -> dict:
        """request_signature -> approve (by ``approver``, if the request waits for one) ->
        wait_signature."""
        req = await self.request_signature(key_id, digest, **kw)
        if approver is not None and req.get("status") == "pending":
            await approver.approve(req["request_id"])
        return await self.wait_signature(req["request_id"], timeout)

    async def verify(self, digest: bytes | None, signature: dict | str, *, public_key: str | None = None,
                     key_id: str | None = None, message: bytes | None = None, scheme: str | None = None) -> bool:
        """``POST /v1/verify``: ``signature`` (DER hex, or a signature view: ``der``, ``r``/``s``,
        ``rsv``, ``jws``; ``sig`` for a ``schnorr-bip340`` or ``ed25519`` key, whose ``scheme``
        is given with a ``public_key``) of ``digest``, or of ``message`` (give one of them)."""
        return bool((await self.verify_result(digest, signature, public_key=public_key, key_id=key_id,
                                              message=message, scheme=scheme))["valid"])

    async def verify_result(self, digest: bytes | None, signature: dict | str, *, public_key: str | None = None,
                            key_id: str | None = None, message: bytes | None = None,
                            scheme: str | None = None) -> dict:
        """``POST /v1/verify``'s answer: ``valid``, the ``digest`` verified, and ``low_s``
        (ECDSA) or ``scheme`` (Schnorr)."""
        body: dict[str, Any] = {"signature": signature}
        if scheme is not None:
            body["scheme"] = scheme
        if digest is not None:
            body["digest"] = digest.hex()
        if message is not None:
            body["message"] = base64.b64encode(message).decode("ascii")
            body["message_encoding"] = "base64"
        if public_key is not None:
            body["public_key"] = public_key
        if key_id is not None:
            body["key_id"] = key_id
        return await self.request("POST", "/v1/verify", body)

    async def sign_jws(self, key_id: str, payload: bytes, header: dict | None = None, *,
                       approver: "ApplianceClient | None" = None, timeout: float = 120.0, **kw: Any) -> dict:
        """A compact ES256K JWS (RFC 8812) of ``payload``: the signing input
        ``BASE64URL(header).BASE64URL(payload)`` (``alg`` ES256K) is hashed with SHA-256, that
        digest signed (as :meth:`sign`: the policy must allow a raw digest), and the node's
        ``signature.jws`` appended. Returns the signed request's view with ``jws``, the compact
        JWS."""
        signing_input = jws_signing_input(header or {}, payload)
        done = await self.sign(key_id, hashlib.sha256(signing_input.encode("ascii")).digest(),
                               approver=approver, timeout=timeout, **kw)
        return {**done, "jws": f"{signing_input}.{done['signature']['jws']}"}

    # -- quarantine -----------------------------------------------------------------------

    async def quarantined(self) -> list[dict]:
        """Nodes this node left out of quorums after an identifiable abort named them."""
        return (await self.request("GET", "/v1/quarantine"))["nodes"]

    async def clear_quarantine(self, node_id: str) -> dict:
        """Admin: let ``node_id`` sign again (on the node this client talks to)."""
        return await self.request("DELETE", url_path("v1", "quarantine", node_id))

    # -- audit ----------------------------------------------------------------------------

    async def audit(self, since: int = 0) -> list[dict]:
        """The node's audit entries after ``since`` (each with its ``hash``), from the JSON
        Lines export (checkpoint lines left out: :meth:`audit_export` has everything)."""
        out = []
        for line in (await self.audit_export(since)).splitlines():
            if not line.strip():
                continue
            obj = json.loads(line)
            if "entry" in obj:
                out.append({**obj["entry"], "hash": obj["hash"]})
        return out

    async def audit_export(self, since: int = 0) -> bytes:
        """``GET /v1/audit`` as served: JSON Lines for ``appliance audit verify FILE``."""
        return await self.request("GET", "/v1/audit", query={"since": since or None}, raw=True)

    async def audit_checkpoints(self, *, raw: bool = False) -> dict | bytes:
        """``GET /v1/audit/checkpoints``: the newest checkpoint this node witnessed for each
        peer and its own newest co-signed one (the anchor of ``appliance audit verify``);
        ``raw``: the body as served."""
        return await self.request("GET", "/v1/audit/checkpoints", raw=raw)


__all__ = ["ApplianceClient", "ApplianceAPIError"]


def _seconds(t: float | None) -> str | None:
    """A time as the query takes it: Unix seconds, exact (a request's ``created`` given back
    selects by that very value; a float's shortest repr has at most 9 decimals here)."""
    if t is None:
        return None
    if isinstance(t, int) or float(t).is_integer():
        return str(int(t))
    text = repr(float(t))
    return text if "e" not in text else f"{t:.9f}"


def run(coro):  # small convenience for scripts
    return asyncio.run(coro)
