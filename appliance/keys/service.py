"""Key operations a client asks for (create, import, refresh, reshare, disable, enable, delete): the signed request
checked against the policy's key-change quorum (else a pending operation admins approve),
then the job; operations have an id and a status. Also what a key's public data gives
(derivation, addresses) and its state as peers ask for it."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any, Callable

from appliance import paging, payloads
from appliance.cluster.health import PeerHealth
from appliance.errors import PolicyDenied, ServiceError
from appliance.ids import is_id, new_id, peer_path
from appliance.jobs.model import JobFailed, is_frost
from appliance.jobs.progress import ProgressBoard, waiting_for_approval
from appliance.key_import import ImportBundleError, parse_bundle, request_params
from appliance.keys import frost_keys
from appliance.keys.key_jobs import KeyChangeJob
from appliance.keys.lifecycle import KINDS as LIFECYCLE_KINDS
from appliance.keys.lifecycle import check_allowed
from appliance.keys.shares import ShareVault
from appliance.policy import (BIP340, BITCOIN_NETWORKS, DEFAULT_SCHEME, ED25519, SCHEMES, Approval, SignedRequest, check_approval,
                              evaluate)
from appliance.payloads.solana import b58 as solana_b58
from appliance.ports import KeyStore, Late, OperationStore, PeerLink, StatementStore
from appliance.recorder import Recorder
from appliance.request_claims import Created, NonceReused, RequestClaims
from appliance.runtime import Runtime
from appliance.statements import parse_approval, signed_request
from appliance.transport import PeerError
from appliance.tss import bip32, wire
from appliance.tss.frost import bip32 as frost_bip32
from appliance.tss.frost.reshare import FrostOldKey
from appliance.tss.group import Point
from appliance.tss.reshare import OldKeyInfo

log = logging.getLogger("appliance.node")

TERMINAL = ("done", "failed", "signed", "cancelled", "rejected", "expired")


def keygen_params(params: dict | None) -> dict:
    """A signed request's params with ``scheme`` left out when it names the default (an ECDSA
    keygen request may name it or not)."""
    p = dict(params or {})
    if p.get("scheme") == DEFAULT_SCHEME:
        del p["scheme"]
    return p


def require_ecdsa(row: dict, what: str) -> None:
    """``not_supported_for_scheme`` unless the key is an ECDSA key (what FROST keys do not
    have: the p2wpkh and eth addresses)."""
    scheme = row.get("scheme", DEFAULT_SCHEME)
    if scheme != DEFAULT_SCHEME:
        raise ServiceError("not_supported_for_scheme", f"{what} is not supported for a {scheme} key yet")


def require_derivable(row: dict) -> None:
    """BIP32 derivation: ECDSA and ``schnorr-bip340`` keys; ``ed25519`` keys have none
    (``not_supported_for_scheme``, saying why: appliance/tss/frost/bip32.py)."""
    if row.get("scheme", DEFAULT_SCHEME) == ED25519:
        raise ServiceError("not_supported_for_scheme", frost_bip32.ED25519_REFUSAL)


def _scheme_field(row: dict) -> dict:
    """A key change job's ``scheme`` (absent for an ECDSA key, as in older jobs)."""
    scheme = row.get("scheme", DEFAULT_SCHEME)
    return {} if scheme == DEFAULT_SCHEME else {"scheme": scheme}


def key_context(row: dict, path: str | None) -> payloads.KeyContext:
    """The decoder's view of the key ``row``: its stored public key (a FROST key's group
    element P: the decoder reduces a BIP340 key to x(P)), chain code, ``path`` and scheme."""
    return payloads.KeyContext(row["public_key"], row.get("chain_code") or None, path,
                               row.get("scheme") or DEFAULT_SCHEME)


class KeyService:
    def __init__(self, rt: Runtime, recorder: Recorder, shares: ShareVault, health: PeerHealth,
                 jobs: KeyChangeJob, coordinate: Callable, *, key_store: Late[KeyStore],
                 operations: Late[OperationStore], statements: Late[StatementStore], peers: PeerLink,
                 claims: RequestClaims | None = None, progress: ProgressBoard | None = None) -> None:
        self.rt = rt
        self.progress = progress  # what a running operation coordinated here is doing
        self.key_store = key_store
        self.operations = operations
        self.statements = statements
        self.link = peers
        self.recorder = recorder
        self.shares = shares
        self.health = health
        self.jobs = jobs
        self.coordinate = coordinate  # Coordinator.run
        self.claims = claims

    # -- client requests ------------------------------------------------------------------

    async def create(self, user, threshold: Any, node_ids: Any = None, paillier_bits: Any = None,
                     request: Any = None, scheme: Any = None) -> Created:
        """A DKG, once the signed request (action keygen, params {threshold, nodes?, scheme?})
        meets the policy's key-change quorum (else a pending operation waiting for admin
        approvals). ``scheme``: ecdsa-secp256k1 (CGGMP DKG + aux-info, the default) or
        schnorr-bip340 / ed25519 (FROST DKG, no Paillier); the signed params name a scheme
        other than the default (absent, or the default, for an ECDSA key)."""
        self._key_params(threshold, node_ids)
        scheme = DEFAULT_SCHEME if scheme is None else scheme
        if scheme not in SCHEMES:
            raise ServiceError("bad_scheme", f"scheme must be one of {', '.join(SCHEMES)}")
        bits = self.rt.config.paillier_bits if paillier_bits is None else paillier_bits
        if bits not in (2048, 3072):
            raise ServiceError("bad_paillier_bits", "paillier_bits must be 2048 or 3072")
        params = {"threshold": threshold, **({"nodes": node_ids} if node_ids is not None else {})}
        if scheme != DEFAULT_SCHEME:
            params["scheme"] = scheme
            bits = 0  # no aux-info for a FROST key
        body = {"threshold": threshold, "nodes": node_ids, "paillier_bits": bits, "scheme": scheme}
        view, sr = await self._key_operation(user, "keygen", None, params, request, body)
        if view is not None:
            return view
        return Created(await self._launch("keygen", user.id, sr, [], body), True)

    async def refresh(self, user, key_id: str, request: Any = None) -> Created:
        self.shares.active_key(key_id)
        view, sr = await self._key_operation(user, "refresh", key_id, {}, request, {})
        if view is not None:
            return view
        return Created(await self._launch("refresh", user.id, sr, [], {}), True)

    async def lifecycle(self, user, action: str, key_id: str, request: Any = None) -> Created:
        """``disable``, ``enable`` or ``delete`` (appliance/keys/lifecycle.py): a signed key-change
        request (params ``{}``) under the key-change quorum, run on every holder of the key."""
        check_allowed(self.shares.known_key(key_id)["status"], action)
        view, sr = await self._key_operation(user, action, key_id, {}, request, {})
        if view is not None:
            return view
        return Created(await self._launch(action, user.id, sr, [], {}), True)

    def versions(self, key_id: str) -> dict:
        """``GET /v1/keys/{key_id}/versions``: the key's epochs with their dates (this node's)."""
        row = self.shares.known_key(key_id)
        return {"key_id": key_id, "status": row["status"], "epoch": row["epoch"], "created": row["created"],
                "versions": self.key_store().key_versions(key_id)}

    async def reshare(self, user, key_id: str, threshold: Any, node_ids: Any, request: Any = None) -> Created:
        """Move the key to ``node_ids`` with ``threshold`` (same public key): the reachable
        current holders send, the new committee receives, runs aux-info and confirms; old
        shares are deleted only once every new member has confirmed (commit)."""
        rt = self.rt
        row = self.shares.active_key(key_id)
        if not isinstance(threshold, int) or isinstance(threshold, bool):
            raise ServiceError("bad_threshold", "threshold must be an integer")
        if not isinstance(node_ids, list) or not all(isinstance(x, str) for x in node_ids):
            raise ServiceError("bad_nodes", "nodes must be a list of node ids")
        new = sorted({rt.index_of(x) for x in node_ids})
        if len(new) != len(node_ids) or len(new) < 2:
            raise ServiceError("bad_nodes", "nodes must be at least two distinct node ids")
        if not 1 <= threshold <= len(new):
            raise ServiceError("bad_threshold", f"threshold must be between 1 and {len(new)}")
        if rt.index not in row["participants"]:
            raise ServiceError("not_a_holder", "send the reshare request to a node that holds the key")
        params = {"threshold": threshold, "nodes": node_ids}
        view, sr = await self._key_operation(user, "reshare", key_id, params, request, params)
        if view is not None:
            return view
        return Created(await self._launch("reshare", user.id, sr, [], params), True)

    async def import_key(self, user, body: Any, request: Any = None) -> Created:
        """``POST /v1/keys/import``: a key change like a keygen. The body carries the bundle and
        the initiator's signed ``import`` request (params: the bundle's hash, public key,
        threshold and nodes; the ``scheme`` of a FROST key's v2 bundle), which must meet the
        policy's key-change quorum (else a pending operation that admins approve); every node
        re-checks the request, its approvals and the bundle before it does anything. Every node
        checks its own share before anything is stored; then aux-info (an ECDSA key; a FROST
        key has none). A refresh right after is recommended (the dealer's machine saw the
        whole key)."""
        if not isinstance(body, dict):
            raise ServiceError("bad_body", "expected a JSON object")
        bundle = self._import_bundle(body.get("bundle"))
        if bundle.is_frost:  # no Paillier modulus, no aux-info: the bundle names the scheme
            if body.get("paillier_bits", 0) != 0:
                raise ServiceError("bad_paillier_bits", f"a {bundle.scheme} key has no Paillier modulus")
            bits = 0
        else:
            bits = body.get("paillier_bits", self.rt.config.paillier_bits)
            if bits not in (2048, 3072):
                raise ServiceError("bad_paillier_bits", "paillier_bits must be 2048 or 3072")
        spec_body = {"bundle": bundle.to_json(), "paillier_bits": bits}
        view, sr = await self._key_operation(user, "import", None, request_params(bundle), request, spec_body)
        if view is not None:
            return view
        return Created(await self._launch("import", user.id, sr, [], spec_body), True)

    def _import_bundle(self, obj: Any):
        """The parsed bundle, refused if its public key is already held here."""
        try:
            bundle = parse_bundle(obj, self.rt.cluster)
        except ImportBundleError as exc:
            raise ServiceError("bad_import_bundle", str(exc)) from None
        for k in self.key_store().list_keys(None):
            if k["public_key"] == bundle.public_key and k["status"] in ("active", "pending"):
                raise ServiceError("key_exists", f"this public key is already held as {k['key_id']}")
        return bundle

    def _key_params(self, threshold: Any, node_ids: Any) -> list[int]:
        rt = self.rt
        if not isinstance(threshold, int) or isinstance(threshold, bool):
            raise ServiceError("bad_threshold", "threshold must be an integer")
        if node_ids is None:
            parties = [n.index for n in rt.cluster.nodes]
        else:
            if not isinstance(node_ids, list) or not all(isinstance(x, str) for x in node_ids):
                raise ServiceError("bad_nodes", "nodes must be a list of node ids")
            parties = sorted({rt.index_of(x) for x in node_ids})
            if len(parties) != len(node_ids):
                raise ServiceError("bad_nodes", "nodes must not repeat")
        if len(parties) < 2:
            raise ServiceError("bad_nodes", "a key needs at least two nodes")
        if not 1 <= threshold <= len(parties):
            raise ServiceError("bad_threshold", f"threshold must be between 1 and {len(parties)}")
        return parties

    async def _key_operation(self, user, action: str, key_id: str | None, params: dict,
                             request: Any, spec_body: dict) -> tuple[Created | None, SignedRequest]:
        """The policy step of create/refresh/reshare/import: ``(None, request)`` if the operation
        may run now, else ``(the operation's view, request)`` (pending approvals, new; or the
        first operation of the same request sent again, not new). ``spec_body``: what is needed
        to build the job later."""
        rt = self.rt
        sr = signed_request(self.recorder, request, user)
        r = sr.request
        if r.action != action or r.key_id != key_id or keygen_params(r.params) != params:
            raise ServiceError("request_mismatch", "the body differs from the signed request "
                               "(action, key_id or params)")
        first = await self._first_operation(user, sr)
        if first is not None:  # the same request again (same initiator and nonce): the first operation
            return Created(first, False), sr
        decision = evaluate(rt.policy, sr, [], rt.clock.now())
        if decision.denied:
            raise self.recorder.refuse(PolicyDenied(decision.reason, decision.message), actor=user.id,
                                       action=f"{action}_request", key_id=key_id, subject=sr.request_id)
        if decision.allowed:
            return None, sr
        op_id = new_id("op_id")
        with self.recorder.together():  # the pending operation and its entry: one transaction
            self.recorder.write(user.id, f"{action}_request", key_id=key_id, subject=op_id,
                                decision="pending", reason=decision.reason)
            self.operations().put_operation(op_id, action, key_id, user.id, status="pending")
            self.statements().put_statement(sr.request_id, op_id, action, key_id, sr.to_json(), payload=spec_body)
        return Created(self.operation_view(self.operations().get_operation(op_id)), True), sr

    async def _first_operation(self, user, sr: SignedRequest) -> dict | None:
        """The operation of the first request under the request's (initiator, nonce), kept here
        or by its owner; None if this node runs it; NonceReused (audited) if the nonce was used
        for a different request (appliance/request_claims.py)."""
        r = sr.request
        try:
            here = self.claims.claim_here(sr, None) if self.claims is not None else None
            existing = self.statements().get_statement(sr.request_id)
            op = self.operations().get_operation(existing["subject"]) if existing is not None else None
            if op is not None:
                return self.operation_view(op)
            if self.claims is None:
                return None
            owner = await self.claims.claim_everywhere(sr, None, here)
        except NonceReused as exc:
            raise self.recorder.refuse(exc, actor=user.id, action=f"{r.action}_request", key_id=r.key_id,
                                       subject=sr.request_id, policy=False) from None
        if owner == self.rt.index:
            return None
        try:
            return await self.link.request(self.rt.peers[owner], "GET", peer_path("requests", sr.request_id),
                                           timeout=10.0)
        except PeerError:
            return None  # refused there, or the owner is down: this node runs it (once per request id)

    def peer_operation_of(self, request_id: str) -> dict:
        """``GET /v1/peer/requests/{id}``: the key operation of a request this node keeps."""
        st = self.statements().get_statement(request_id) if is_id("request_id", request_id) else None
        op = self.operations().get_operation(st["subject"]) if st is not None else None
        if op is None:
            raise ServiceError("not_found", "no key operation for that request here")
        return self.operation_view(op)

    async def _launch(self, kind: str, actor: str, sr, approvals: list, body: dict, *,
                      op_id: str | None = None) -> dict:
        """Run an allowed key change (its job carries the signed request and approvals, which
        every party checks); ``op_id``: the pending operation it was waiting as."""
        rt = self.rt
        job_id = new_id("job_id")
        if kind == "import":
            bundle = self._import_bundle(body["bundle"])
            await self.health.require_hsm()
            _, missing = await self.health.split_healthy(bundle.parties)
            if missing:
                raise ServiceError("quorum_unreachable", "every node of an imported key must be reachable",
                                   missing_nodes=rt.node_ids(missing))
            key_id = new_id("key_id")
            spec = {"job_id": job_id, "kind": "import", "key_id": key_id, "parties": bundle.parties,
                    "threshold": bundle.threshold, "paillier_bits": body["paillier_bits"],
                    "bundle": bundle.to_json(), **_scheme_field({"scheme": bundle.scheme})}
            if rt.index in bundle.parties:  # this node's own share first: refused before anything
                await self.jobs.check_import_share(spec)
        elif kind == "keygen":
            parties = self._key_params(body["threshold"], body.get("nodes"))
            _, missing = await self.health.split_healthy(parties)
            if missing:
                raise ServiceError("quorum_unreachable", "every node of a new key must be reachable",
                                   missing_nodes=rt.node_ids(missing))
            key_id = new_id("key_id")
            spec = {"job_id": job_id, "kind": "keygen", "key_id": key_id, "parties": parties,
                    "threshold": body["threshold"], "paillier_bits": body["paillier_bits"],
                    "scheme": body.get("scheme", DEFAULT_SCHEME)}
            if spec["scheme"] == DEFAULT_SCHEME:  # a pooled aux-info: the DKG only (else its own aux)
                aux_id = self.jobs.aux.choose(parties, body["paillier_bits"])
                if aux_id is not None:
                    spec["aux_id"] = aux_id
        elif kind in LIFECYCLE_KINDS:
            key_id = sr.request.key_id
            row = self.shares.known_key(key_id)
            check_allowed(row["status"], kind)
            if self.jobs.two_phase.key_change_running(key_id):
                raise ServiceError("key_change_in_progress", "another change of this key is under way")
            parties = row["participants"]
            _, missing = await self.health.split_healthy(parties)
            if missing:
                raise ServiceError("quorum_unreachable", f"every holder of the key must be reachable to {kind} it",
                                   missing_nodes=rt.node_ids(missing))
            spec = {"job_id": job_id, "kind": kind, "key_id": key_id, "parties": parties,
                    "threshold": row["threshold"], "epoch": row["epoch"]}
        elif kind == "refresh":
            key_id = sr.request.key_id
            row = self.shares.active_key(key_id)
            if self.jobs.two_phase.key_change_running(key_id):
                raise ServiceError("key_change_in_progress", "another change of this key is under way")
            parties = row["participants"]
            _, missing = await self.health.split_healthy(parties)
            if missing:
                raise ServiceError("quorum_unreachable", "every node of the key must be reachable to refresh",
                                   missing_nodes=rt.node_ids(missing))
            spec = {"job_id": job_id, "kind": "refresh", "key_id": key_id, "parties": parties,
                    "threshold": row["threshold"], "paillier_bits": row["paillier_bits"], "epoch": row["epoch"],
                    **_scheme_field(row)}
        else:
            key_id = sr.request.key_id
            row = self.shares.active_key(key_id)
            threshold, new = body["threshold"], sorted(rt.index_of(x) for x in body["nodes"])
            if self.jobs.two_phase.key_change_running(key_id):
                raise ServiceError("key_change_in_progress", "another change of this key is under way")
            old_holders = row["participants"]
            healthy, missing = await self.health.split_healthy(sorted(set(old_holders) | set(new)))
            missing_new = [p for p in missing if p in new]
            senders = await self._reshare_senders(row, [p for p in old_holders if p in healthy])
            if missing_new or len(senders) < row["threshold"]:
                raise ServiceError("quorum_unreachable", "the new committee and a quorum of holders must be reachable",
                                   missing_nodes=rt.node_ids(missing))
            share = await self.shares.load(row)
            spec = {"job_id": job_id, "kind": "reshare", "key_id": key_id,
                    "parties": sorted(set(senders) | set(new)), "senders": senders, "new_members": new,
                    "threshold": threshold, "old_threshold": row["threshold"],
                    "paillier_bits": row["paillier_bits"], "epoch": row["epoch"], **_scheme_field(row)}
            if is_frost(row):  # the FROST key's public state, and its chain code for newcomers
                spec.update(old_info=wire.encode(FrostOldKey.of(share)).hex(),
                            chain_code=(row.get("chain_code") or b"").hex())
            else:
                spec["old_info"] = wire.encode(OldKeyInfo.of(share)).hex()
        with self.recorder.together():  # the operation's state and its entry: one transaction
            if op_id is None:
                op_id = new_id("op_id")
                self.recorder.write(actor, f"{kind}_request", key_id=key_id, subject=op_id, decision="allowed",
                                    reason=f"request {sr.request_id}")
                self.operations().put_operation(op_id, kind, key_id, actor)
                self.statements().put_statement(sr.request_id, op_id, kind, key_id, sr.to_json(), payload=body)
            else:
                self.recorder.write(actor, f"{kind}_approved", key_id=key_id, subject=op_id, decision="allowed",
                                    reason=f"request {sr.request_id}")
                self.operations().set_operation_running(op_id, key_id)
        spec.update({"coordinator": rt.index, "operation_id": op_id, "actor": actor,
                     "request_id": sr.request_id, "request": sr.to_json(),
                     "approvals": [a.to_json() for a in approvals], "policy_hash": rt.policy.hash})
        rt.spawn(self._run_operation(op_id, spec))
        return self.operation_view(self.operations().get_operation(op_id))

    async def _reshare_senders(self, row: dict, candidates: list[int]) -> list[int]:
        """The reachable nodes that really hold the key at its current epoch (a node that lost
        its token and database, or runs an old backup, is a newcomer, not a sender)."""
        rt = self.rt

        async def holds(p: int) -> bool:
            if p == rt.index:
                return True
            try:
                v = await self.link.request(rt.peers[p], "GET", peer_path("keys", row["key_id"]), timeout=10.0)
            except PeerError:
                return False
            return isinstance(v, dict) and v.get("status") == "active" and v.get("epoch") == row["epoch"]

        oks = await asyncio.gather(*(holds(p) for p in candidates))
        return [p for p, ok in zip(candidates, oks) if ok]

    async def _run_operation(self, op_id: str, spec: dict) -> None:
        rt = self.rt
        try:
            result = await self.coordinate(spec)
            self.operations().finish_operation(op_id, "done", result=result)
            self.recorder.quiet(spec.get("actor"), f"{spec['kind']}_done", key_id=spec.get("key_id"),
                                subject=op_id, decision="done")
        except JobFailed as exc:
            self.operations().finish_operation(op_id, "failed", error=exc.error.to_error())
            self.recorder.quiet(spec.get("actor"), f"{spec['kind']}_failed", key_id=spec.get("key_id"),
                                subject=op_id, decision="failed", reason=exc.error.code)
        except Exception as exc:  # pragma: no cover - defensive
            log.exception("operation %s crashed", op_id)
            self.operations().finish_operation(op_id, "failed", error={"code": "internal", "message": type(exc).__name__})
        finally:
            if self.progress is not None:
                self.progress.finish(op_id)
            rt.waiters.notify(op_id)

    # -- operations -----------------------------------------------------------------------

    def operation_view(self, op: dict) -> dict:
        statements = self.statements()
        out = {"operation_id": op["op_id"], "kind": op["kind"], "key_id": op["key_id"],
               "status": op["status"], "created": op["created"], "updated": op["updated"]}
        if op["result"] is not None:
            out["result"] = op["result"]
        if op["error"] is not None:
            out["error"] = op["error"]
        st = statements.get_statement(op["op_id"])
        if st is not None:  # the signed request (what an approving admin signs over) and decisions
            out["request"] = st["request"]
            out["decisions"] = [{"approver": a["statement"]["approver"], "decision": a["statement"]["decision"]}
                                for a in statements.decisions(st["request_id"])]
        progress = self.progress.view(op["op_id"]) if self.progress is not None else None
        if progress is None and op["status"] == "pending" and st is not None:
            progress = self._approval_progress(st)
        if progress is not None:
            out["progress"] = progress
        return out

    def _approval_progress(self, st: dict) -> dict:
        """A pending operation's approvals counted so far of those the policy needs."""
        sr = SignedRequest.from_json(st["request"])
        existing = [Approval.from_json(x) for x in self.statements().decisions(sr.request_id)]
        decision = evaluate(self.rt.policy, sr, existing, self.rt.clock.now())
        more = sum(n for _, n in decision.missing)
        detail = "; ".join(f"{n} more of {', '.join(roles)}" for roles, n in decision.missing) or None
        return waiting_for_approval(len(decision.approvers), more, detail)

    async def get_operation(self, op_id: str, wait: float = 0.0) -> dict:
        rt = self.rt
        op = self.operations().get_operation(op_id)
        if op is None:
            raise ServiceError("not_found", "unknown operation")
        if wait > 0 and op["status"] not in TERMINAL:
            await rt.waiters.wait(op_id, wait)
            op = self.operations().get_operation(op_id)
        return self.operation_view(op)

    async def decide_operation(self, user, op_id: str, body: dict | None) -> dict:
        """``POST /v1/operations/{id}/approvals``: an admin's approval of a key change."""
        rt = self.rt
        op = self.operations().get_operation(op_id)
        st = self.statements().get_statement(op_id)
        if op is None or st is None:
            raise ServiceError("not_found", "unknown operation")
        a = parse_approval(self.recorder, body, "approve", user, passkeys=False)
        sr = SignedRequest.from_json(st["request"])
        existing = [Approval.from_json(x) for x in self.statements().decisions(sr.request_id)]
        now = rt.clock.now()
        problem = check_approval(rt.policy, sr.request, a, now, existing)
        if problem is not None:
            raise self.recorder.refuse(PolicyDenied(problem.reason, problem.message), actor=user.id,
                                       action="operation_approval", key_id=op["key_id"], subject=op_id)
        if op["status"] != "pending":
            raise ServiceError("not_pending", f"the operation is {op['status']}")
        outcome = evaluate(rt.policy, sr, [*existing, a], now)
        self.recorder.write(user.id, "operation_approval", key_id=op["key_id"], subject=op_id,
                            decision="accepted", reason=outcome.reason)
        if outcome.allowed:  # (a 503 from here records nothing: approve again later)
            await self._launch(op["kind"], user.id, sr, [*existing, a], st["payload"] or {}, op_id=op_id)
        self.statements().add_decision(sr.request_id, a.approver, a.decision, a.to_json())
        if outcome.denied:
            self.operations().finish_operation(op_id, "failed", error=PolicyDenied(outcome.reason, outcome.message).to_error())
            rt.metrics.policy_denied(outcome.reason)
            rt.waiters.notify(op_id)
        return self.operation_view(self.operations().get_operation(op_id))

    def fail_pending(self, err: dict) -> int:
        """A policy change: operations waiting for approvals under the old policy fail."""
        n = 0
        for op_id in self.operations().pending_operation_ids():
            self.operations().finish_operation(op_id, "failed", error=err)
            self.rt.waiters.notify(op_id)
            n += 1
        return n

    # -- public data ----------------------------------------------------------------------

    def list_keys(self, query: paging.PageQuery = paging.FIRST_PAGE) -> dict:
        """One page of the keys in use or disabled (a deleted key is left out; GET
        /v1/keys/{key_id} still shows it), oldest first: ``keys`` and ``next_cursor`` (None on
        the last page)."""
        rows = self.key_store().page_keys(("active", "disabled"), query.after, query.limit + 1)
        rows, cursor = paging.page("keys", rows, query, id_field="key_id")
        return {"keys": [self.shares.key_view(r) for r in rows], "next_cursor": cursor}

    def derive(self, key_id: str, path: Any) -> dict:
        row = self.shares.known_key(key_id)
        require_derivable(row)
        if not row.get("chain_code"):
            raise ServiceError("no_chain_code", "this key has no chain code")
        if row.get("scheme") == BIP340:
            return self._derive_bip340(row, path)
        try:
            d = bip32.derive(Point.from_bytes(row["public_key"]), row["chain_code"], path or "m")
        except bip32.DerivationError as exc:
            raise ServiceError("bad_derivation_path", str(exc)) from None
        norm = "m" + "".join(f"/{i}" for i in bip32.parse_path(path or "m"))
        pk = d.public_key.to_bytes()
        return {"key_id": key_id, "path": norm, "public_key": pk.hex(),
                "xpub": d.xpub(), "chain_code": d.chain_code.hex(), "depth": d.depth,
                **self.shares.key_formats(key_id, pk)}

    def _derive_bip340(self, row: dict, path: Any) -> dict:
        """A ``schnorr-bip340`` key's child: ``internal_key`` x(C) (C: BIP32 CKDpub from the
        xpub (chain code, 02 || x(P))), ``public_key`` the x-only output key Q_C =
        output_key(C, b"") that a sign request with this path signs for, its ``p2tr``."""
        try:
            d, q = frost_keys.child(BIP340, row["public_key"], row["chain_code"], path or "m")
        except bip32.DerivationError as exc:
            raise ServiceError("bad_derivation_path", str(exc)) from None
        net = self.rt.policy.rule_for(row["key_id"]).network
        return {"key_id": row["key_id"], "path": "m" + "".join(f"/{i}" for i in bip32.parse_path(path or "m")),
                "scheme": BIP340, "public_key": q.hex(), "internal_key": d.public_key.to_bytes()[1:].hex(),
                "xpub": d.xpub(), "chain_code": d.chain_code.hex(), "depth": d.depth,
                "p2tr": frost_keys.p2tr_address(q, net), "network": net}

    def address(self, key_id: str, kind: Any, path: Any = None, network: Any = None) -> dict:
        row = self.shares.known_key(key_id)
        net = network or self.rt.policy.rule_for(key_id).network
        if row.get("scheme") == BIP340:
            if kind != "p2tr":
                raise ServiceError("bad_kind", "kind must be p2tr for a schnorr-bip340 key")
            if net not in BITCOIN_NETWORKS:
                raise ServiceError("bad_network", f"network must be one of {', '.join(BITCOIN_NETWORKS)}")
            if path in (None, "m"):
                q = frost_keys.shown_public_key(BIP340, row["public_key"])
                return {"key_id": key_id, "kind": "p2tr", "path": "m", "public_key": q.hex(),
                        "address": frost_keys.p2tr_address(q, net), "network": net}
            d = self.derive(key_id, path)
            return {"key_id": key_id, "kind": "p2tr", "path": d["path"], "public_key": d["public_key"],
                    "address": frost_keys.p2tr_address(bytes.fromhex(d["public_key"]), net), "network": net}
        if row.get("scheme") == ED25519:  # a Solana account address: the key itself, base58
            if kind != "sol":
                raise ServiceError("bad_kind", "kind must be sol for an ed25519 key")
            if path not in (None, "m"):
                require_derivable(row)
            pk = frost_keys.shown_public_key(ED25519, row["public_key"])
            return {"key_id": key_id, "kind": "sol", "path": "m", "public_key": pk.hex(),
                    "address": solana_b58(pk), "network": None}
        require_ecdsa(row, "GET address")
        if kind not in ("p2wpkh", "eth"):
            raise ServiceError("bad_kind", "kind must be p2wpkh or eth")
        if net not in BITCOIN_NETWORKS:
            raise ServiceError("bad_network", f"network must be one of {', '.join(BITCOIN_NETWORKS)}")
        try:
            out = payloads.address_for(kind, key_context(row, path or "m"), net)
        except payloads.PayloadError as exc:
            raise ServiceError(exc.code, exc.message) from None
        return {"key_id": key_id, **out}

    async def peer_key_state(self, key_id: str) -> dict:
        """``GET /v1/peer/keys/{key_id}``: whether this node holds the key, at which epoch, and a
        hash of the key's public state as its share says (newcomers compare it)."""
        row = self.key_store().get_key(key_id)
        if row is None:
            return {"key_id": key_id, "status": "none"}
        out = {"key_id": key_id, "status": row["status"], "epoch": row["epoch"]}
        if row["status"] == "active":
            try:
                share = await self.shares.load(row)
                out["public_state"] = (frost_keys.public_state(share, row.get("chain_code") or b"")
                                       if is_frost(row) else hashlib.sha256(wire.encode(OldKeyInfo.of(share))).hexdigest())
            except Exception:  # a share that does not unseal: this node cannot send
                out["status"] = "unusable"
        return out
