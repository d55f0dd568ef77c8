"""The policy side of a node: signed requests and approvals, the checks every signer makes
by itself, the audit log, metrics, policy updates, and what the node reads in a payload.

:class:`PolicyMixin` is part of :class:`appliance.node.Node` (kept in its own module so the
protocol driver and the authorization logic can be read apart).

Sign requests
-------------
A client sends ``POST /v1/keys/{key_id}/sign-requests`` with the initiator's signed request
statement (``request``: :class:`appliance.policy.SignedRequest` JSON) and what it names: a
``digest``, or a ``payload`` with its ``payload_type``, a ``derivation_path`` and, for a PSBT, a
``network``. The node checks that the body is the statement, decodes the payload itself
(:mod:`appliance.payloads`: digests, a summary for approvers, the facts the transaction rules
need), evaluates the policy and the key's transaction rules, audits the decision, and stores
the request as ``pending`` (or starts signing at once if the rule needs no approval). The
request id is the statement's hash: sending the same statement again returns the same request.

Approvals, rejections and the initiator's cancel are signed statements too
(:class:`appliance.policy.Approval`), each by the HTTP-authenticated user; one that is
unsound is refused (403 with the reason code) and audited. When the rule is met, the node
sends the job to the signers with the signed request and every approval.

Signer nodes
------------
Before it takes part, every signer node checks by itself (:meth:`PolicyMixin._authorize_job`):
the job's policy hash is its own; the request and each approval (signatures, roles,
bindings, expiry, rate limit, path, hours) with :func:`appliance.policy.authorize`; that it
has not signed this request before; it decodes the payload itself and checks the key's
transaction rules; and that the digests and derivation tweaks the coordinator sent are the
ones it computed (a coordinator cannot substitute a digest, forge or replay an approval).
Every refusal is audited with its reason code and counted in
``appliance_policy_denials_total``. Used job ids and signed requests are kept durably (a job
id, hence a protocol session id, is never run twice).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import time
from typing import Any

from appliance import payloads
from appliance.audit import AuditError, AuditFieldError, AuditLog, AuditUnavailable, Checkpoint
from appliance.canonical import CanonicalError
from appliance.config import ConfigError
from appliance.errors import PolicyDenied, ServiceError
from appliance.ids import is_id, peer_path
from appliance.job_authority import JOB_AUTHORITY
from appliance.request_use import RequestUseRefused
from appliance.key_import import ImportBundleError, parse_bundle, request_params
from appliance.policy import (
    BITCOIN_NETWORKS,
    KEY_ACTIONS,
    PAYLOAD_TYPES,
    SIGN,
    Approval,
    Decision,
    Policy,
    PolicyError,
    PolicyUpdate,
    SignedRequest,
    apply_updates,
    authorize,
    check_approval,
    evaluate,
    normalize_path,
    path_matches,
    payload_hash,
    verify_policy_update,
)
from appliance.store import ConflictError
from appliance.transport import FORWARD_POOL, PeerError
from appliance.tss import bip32
from appliance.tss.group import Point

log = logging.getLogger("appliance.node")

FAULT_PREFIX = "testfault."
DECISION_ROUTES = {"approve": "approval", "reject": "rejection", "cancel": "cancel"}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class PolicyMixin:
    """Policy, audit and payload handling of :class:`appliance.node.Node`."""

    # =================================================================== set-up

    def base_policy(self) -> Policy:
        """The policy file named in node.toml, else the policy tables of cluster.toml."""
        cfg = self.config
        try:
            if cfg.policy_file is not None:
                return Policy.load(cfg.policy_file)
            return Policy.from_mapping(cfg.cluster_mapping)
        except PolicyError as exc:
            raise ConfigError(f"the cluster policy does not load: {exc}") from None

    def _open_policy(self) -> None:
        """The policy in force: the base policy and the updates stored here, each verified."""
        try:
            self.policy = apply_updates(self.base_policy(), self.store.policy_updates())
        except (PolicyError, PolicyDenied) as exc:
            raise ServiceError("bad_policy", f"stored policy updates do not verify: {exc}") from None

    def _open_audit(self) -> None:
        cfg = self.config
        path = cfg.audit_db if cfg.audit_db is not None else cfg.data_dir / "audit.db"
        self.audit = AuditLog(path, self.me.id, signer=self._checkpoint_signer,
                              checkpoint_every=max(1, cfg.audit_checkpoint_every),
                              on_append=self.metrics.audit_written)
        if self.faults.audit_read_only:
            # test-only fault: the audit store refuses writes (as a read-only or full disk does)
            self.audit._db.execute("PRAGMA query_only = ON")

    def _checkpoint_signer(self, digest: bytes) -> bytes:
        return self.signer.sign(digest)

    def node_keys(self) -> dict[str, bytes]:
        return {n.id: bytes(n.identity_key) for n in self.cluster.nodes}

    # =================================================================== audit

    def _audit(self, actor: str | None, action: str, *, key_id: str | None = None,
               subject: str | None = None, digest: Any = None, decision: str | None = None,
               reason: str | None = None) -> None:
        """Write one audit entry or refuse the action (503 ``audit_unavailable``)."""
        if self.audit is None:
            raise ServiceError("audit_unavailable", "the audit log is not open")
        try:
            self.audit.append(actor, action, key=key_id, subject=subject, digest=digest,
                              decision=decision, reason=reason)
        except AuditFieldError:
            # never a secret in the log: keep the entry, without the refused text
            try:
                self.audit.append(actor, action, key=key_id, subject=subject, digest=digest,
                                  decision=decision, reason="redacted")
            except AuditUnavailable:
                self._audit_down()
                raise ServiceError("audit_unavailable",
                                "the audit log cannot record; the action is refused") from None
        except AuditUnavailable:
            self._audit_down()
            raise ServiceError("audit_unavailable",
                            "the audit log cannot record; the action is refused") from None
        self.audit_ok = True

    def _audit_down(self) -> None:
        self.audit_ok = False
        self.metrics.audit_failed()

    def _audit_quiet(self, actor: str | None, action: str, **kw: Any) -> bool:
        """Best effort (for what already happened and cannot be refused any more)."""
        try:
            self._audit(actor, action, **kw)
            return True
        except Exception as exc:  # noqa: BLE001 - logged; metrics count the failure
            log.warning("audit entry %s not written: %s", action, getattr(exc, "code", exc))
            return False

    def _refuse(self, error: ServiceError, *, actor: str | None, action: str,
                key_id: str | None = None, subject: str | None = None, digest: Any = None,
                policy: bool = True) -> ServiceError:
        """Audit a refusal (fail closed: if even that cannot be written, 503) and return
        ``error`` to raise. ``policy``: count it in appliance_policy_denials_total."""
        self._audit(actor, action, key_id=key_id, subject=subject, digest=digest,
                    decision="denied", reason=error.code)
        if policy:
            self.metrics.policy_denied(error.code)
        return error

    def require_admin(self, user, action: str) -> None:
        """An administrative act of one person (e.g. clearing a quarantine): the user must
        hold one of the policy's key-change roles."""
        roles = self.policy.key_changes.roles
        u = self.policy.user(getattr(user, "id", None))
        if u is None or not any(u.has(r) for r in roles):
            raise self._refuse(PolicyDenied("missing_role", f"{action} needs one of the roles "
                               f"{', '.join(roles)}"), actor=getattr(user, "id", None), action=action)

    # =================================================================== usage

    def _rate_usage(self, key_id: str, window_s: int, besides: str | None = None) -> int:
        return self.store.signatures_since(key_id, time.time() - window_s, besides=besides)

    def _window_usage(self, key_id: str, rules) -> dict[str, int]:
        return self.store.amounts_since(key_id, time.time() - rules.window_seconds)

    def _tx_check(self, key_id: str, dec) -> tuple[bool, str, str]:
        """The key's transaction rules over what this node decoded, and every derivation path
        it signs for (a PSBT input's path too) against the rule's patterns."""
        rule = self.policy.rule_for(key_id)
        rules = rule.tx_rules()
        d = payloads.evaluate_tx_rules(dec, rules, self._window_usage(key_id, rules))
        if not d.allowed:
            return False, d.code, d.message
        for item in dec.items:
            if not any(path_matches(p, item.path) for p in rule.derivation_paths):
                return False, "path_not_allowed", f"derivation path {item.path} is not allowed"
        return True, "ok", ""

    # =================================================================== decoding

    def _key_context(self, row: dict, path: str | None):
        return payloads.KeyContext(row["public_key"], row.get("chain_code") or None, path)

    async def _decode(self, row: dict, request, payload: Any, network: str | None):
        """Decode the request's digest or payload for this node's copy of the key."""
        r = request
        return await self._decode_fields(row, digest=r.digest, payload=payload,
                                         payload_type=r.payload_type, path=r.derivation_path,
                                         network=network or r.network)

    async def _decode_fields(self, row: dict, *, digest: str | None, payload: Any,
                             payload_type: str | None, path: str, network: str | None):
        net = network or self.policy.rule_for(row["key_id"]).network
        fn = functools.partial(payloads.decode_request, self._key_context(row, path),
                               digest=digest, payload=payload if digest is None else None,
                               payload_type=payload_type if digest is None else None, network=net)
        if digest is not None and path == "m":
            return fn()  # nothing to parse or derive
        # parsing (and BIP32 derivation) off the event loop, never behind protocol work
        return await asyncio.get_running_loop().run_in_executor(None, fn)

    # =================================================================== sign requests

    async def create_sign_request(self, user, key_id: str, digest_hex: Any = None,
                                  derivation_path: Any = None, signers: Any = None,
                                  payload: Any = None, payload_type: Any = None, *,
                                  request: Any = None, network: Any = None) -> dict:
        row = self.active_key(key_id)
        # -- the body, checked before anything is looked at or stored
        if payload is None and payload_type is None:
            if not isinstance(digest_hex, str):
                raise ServiceError("bad_digest", "digest must be 64 hex characters (32 bytes)")
            try:
                digest = bytes.fromhex(digest_hex)
            except ValueError:
                raise ServiceError("bad_digest", "digest must be 64 hex characters (32 bytes)") from None
            if len(digest) != 32:
                raise ServiceError("bad_digest", "digest must be exactly 32 bytes")
            digest_hex = digest.hex()
        else:
            if digest_hex is not None:
                raise ServiceError("bad_request", "give a digest or a payload, not both")
            if payload_type not in PAYLOAD_TYPES:
                raise ServiceError("bad_payload_type",
                                  f"payload_type must be one of {', '.join(PAYLOAD_TYPES)}")
            if payload is None:
                raise ServiceError("bad_payload", "payload_type goes with a payload")
        try:
            path = normalize_path(derivation_path)
        except PolicyError as exc:
            raise ServiceError("bad_derivation_path", str(exc)) from None
        if network is not None and network not in BITCOIN_NETWORKS:
            raise ServiceError("bad_network", f"network must be one of {', '.join(BITCOIN_NETWORKS)}")
        named = self._named_signers(row, signers)
        # the node reads what it is asked to sign: a malformed payload is a clear 400, nothing stored
        try:
            dec = await self._decode_fields(row, digest=digest_hex if payload is None else None,
                                            payload=payload, payload_type=payload_type, path=path,
                                            network=network)
        except payloads.PayloadError as exc:
            raise ServiceError(exc.code, exc.message) from None
        sr = self._signed_request(request, user)
        await self.require_hsm()
        r = sr.request
        diff = []
        if r.action != SIGN or r.key_id != key_id:
            diff.append("action/key_id")
        if r.derivation_path != path:
            diff.append("derivation_path")
        if r.network != network:
            diff.append("network")
        if payload is None:
            if r.digest != digest_hex or r.payload_type is not None:
                diff.append("digest")
        else:
            try:
                ph = payload_hash(payload_type, payload)
            except PolicyError as exc:
                raise ServiceError("bad_payload", str(exc)) from None
            if r.payload_type != payload_type or r.payload_hash != ph:
                diff.append("payload")
        if diff:
            raise ServiceError("request_mismatch", "the body differs from the signed request in "
                              + ", ".join(diff))
        rid = sr.request_id
        existing = self.store.get_sign_request(rid)
        if existing is not None:  # the same signed statement again: the same request
            return self.sign_request_view(existing)
        adigest = r.digest or r.payload_hash
        now = self.clock.now()
        fault = self._fault(r)
        decision = evaluate(self.policy, sr, [], now, usage=self._rate_usage)
        if decision.denied or (dec.payload_type != "digest" and not self._tx_check(key_id, dec)[0]):
            # what was refused, as this node read it
            self._audit(user.id, "payload_decoded", key_id=key_id, subject=rid, digest=adigest,
                        decision="decoded", reason=summary_text(dec))
        if decision.denied and fault != "skip-checks":
            self.metrics.sign_request("denied")
            raise self._refuse(PolicyDenied(decision.reason, decision.message), actor=user.id,
                               action="sign_request", key_id=key_id, subject=rid, digest=adigest)
        ok, code, message = self._tx_check(key_id, dec)
        if not ok and fault != "skip-checks":
            self.metrics.sign_request("denied")
            raise self._refuse(PolicyDenied(code, message), actor=user.id, action="sign_request",
                               key_id=key_id, subject=rid, digest=adigest)
        allowed = decision.allowed or fault == "skip-approval"
        # a request that nobody could sign now is not created
        await self._reachable_signers(row, named)
        self._audit(user.id, "payload_decoded", key_id=key_id, subject=rid, digest=adigest,
                    decision="decoded", reason=summary_text(dec))
        self._audit(user.id, "sign_request", key_id=key_id, subject=rid, digest=adigest,
                    decision="allowed" if allowed else "pending", reason=decision.reason)
        self.store.put_sign_request(
            rid, key_id, bytes.fromhex(r.digest) if r.digest else None, path, user.id,
            self.node_ids(named) if named else None, payload=payload,
            payload_type=r.payload_type, request=sr.to_json(), status="pending")
        self.store.put_statement(rid, rid, SIGN, key_id, sr.to_json(), payload=payload,
                                 network=dec.network, decoded=dec.to_dict())
        self.metrics.sign_request("created")
        if allowed:
            await self._start_signing(rid, [], actor=user.id)
        else:
            self.metrics.sign_request("pending")
        return self.sign_request_view(self.store.get_sign_request(rid))

    def _signed_request(self, body: Any, user) -> SignedRequest:
        """The signed request statement of a client body, made by the authenticated user."""
        if body is None:
            raise ServiceError("missing_request", "the body carries the initiator's signed request "
                              "statement (request: {statement, signature}); the client library "
                              "makes it")
        try:
            sr = SignedRequest.from_json(body)
        except (PolicyError, CanonicalError) as exc:
            raise ServiceError("bad_request_statement", str(exc)[:300]) from None
        if sr.request.initiator != user.id:
            raise self._refuse(PolicyDenied("initiator_mismatch", "the request is signed for another "
                               "initiator than the authenticated user"), actor=user.id,
                               action="request_refused", key_id=sr.request.key_id,
                               subject=sr.request_id)
        return sr

    def _named_signers(self, row: dict, signers: Any) -> list[int] | None:
        if signers is None:
            return None
        t, participants = row["threshold"], row["participants"]
        if not isinstance(signers, list) or not all(isinstance(s, str) for s in signers):
            raise ServiceError("bad_signers", "signers must be a list of node ids")
        chosen = sorted({self.index_of(s) for s in signers})
        if len(chosen) != len(signers) or len(chosen) != t or not set(chosen) <= set(participants):
            raise ServiceError("bad_signers", f"signers must be {t} distinct nodes holding the key")
        return chosen

    async def _reachable_signers(self, row: dict, named: list[int] | None) -> list[int]:
        t = row["threshold"]
        if named is not None:
            bad = [self.peers[i].id for i in named if self.peers[i].id in self.quarantine]
            if bad:
                raise ServiceError("node_quarantined", f"quarantined (an admin must clear them first): "
                                f"{', '.join(bad)}", culprits=bad)
            _, missing = await self.split_healthy(named)
            if missing:
                raise ServiceError("quorum_unreachable", "a named signer is unreachable",
                                missing_nodes=self.node_ids(missing))
            return named
        healthy, missing = await self.split_healthy(row["participants"])
        usable = self.not_quarantined(healthy)
        if len(usable) < t:
            held = sorted(set(healthy) - set(usable))
            note = f" ({', '.join(self.node_ids(held))} quarantined)" if held else ""
            raise ServiceError("quorum_unreachable",
                            f"{len(usable)} of the {t} nodes needed are reachable{note}",
                            missing_nodes=self.node_ids(missing))
        return self._choose_signers(row, usable, t)

    def _fault(self, request) -> str | None:
        """Test-only coordinator faults (FaultPlan.coordinator_faults), chosen by a
        request nonce ``testfault.<name>.<random>``: forge-approval, replay-approval,
        skip-approval, skip-checks, substitute-digest."""
        if not self.faults.coordinator_faults:
            return None
        nonce = getattr(request, "nonce", "") or ""
        if not nonce.startswith(FAULT_PREFIX):
            return None
        return nonce[len(FAULT_PREFIX):].split(".", 1)[0]

    async def _start_signing(self, request_id: str, approvals: list[Approval], *, actor: str) -> None:
        """The rule is met: pick reachable signers, mark the request signing, run the job."""
        req = self.store.get_sign_request(request_id)
        st = self.store.get_statement(request_id)
        row = self.active_key(req["key_id"])
        named = [self.index_of(s) for s in req["signers"]] if req["signers"] else None
        chosen = await self._reachable_signers(row, sorted(named) if named else None)
        sr = SignedRequest.from_json(st["request"])
        dec = await self._decode(row, sr.request, st["payload"], st["network"])
        try:
            self.store.core.update_sign_request(request_id, status="signing", expected_status="pending")
        except ConflictError:
            return  # started already (a concurrent approval)
        self.store.update_sign_request(request_id, status="signing", signers=self.node_ids(chosen))
        self.metrics.sign_request("approved")
        self._spawn(self._run_sign(request_id, row, dec, chosen, actor, sr, approvals,
                                   st["payload"]))

    def sign_request_view(self, req: dict) -> dict:
        st = self.store.get_statement(req["request_id"])
        status = req["status"]
        if st is not None and st.get("final"):
            status = st["final"]
        out = {"request_id": req["request_id"], "key_id": req["key_id"],
               "digest": req["digest"].hex() if req["digest"] else None,
               "derivation_path": req["derivation_path"], "initiator": req["initiator"],
               "status": status, "signers": req["signers"], "created": req["created"],
               "updated": req["updated"]}
        if req.get("presignature"):
            out["presignature"] = req["presignature"]  # the stored presignature it used
        if st is not None:
            sr = st["request"]
            stmt = sr["statement"]
            out.update(payload_type=stmt.get("payload_type"), payload_hash=stmt.get("payload_hash"),
                       network=st["network"], expires_at=stmt["expires_at"], request=sr)
            if st["decoded"] is not None:
                out["decoded"] = st["decoded"]
            out["decisions"] = [{"approver": a["statement"]["approver"],
                                 "decision": a["statement"]["decision"],
                                 "signed_at": a["statement"]["signed_at"]}
                                for a in self.store.decisions(req["request_id"])]
        stored = req["signature"]
        if isinstance(stored, dict) and "signatures" in stored:
            out["signature"] = stored["signature"]
            out["signatures"] = stored["signatures"]
            if stored.get("result") is not None:
                out["result"] = stored["result"]
            if stored.get("public_key"):
                out["public_key"] = stored["public_key"]
        elif stored is not None:
            out["signature"] = stored
        if stored is not None and "public_key" not in out:
            key = self.store.get_key(req["key_id"])
            if key is not None:
                out["public_key"] = key["public_key"].hex()
        if req["error"] is not None:
            out["error"] = req["error"]
        return out

    def _expire_if_due(self, req: dict) -> dict:
        """A pending request past its validity window becomes ``expired`` (audited)."""
        if req is None or req["status"] != "pending":
            return req
        st = self.store.get_statement(req["request_id"])
        if st is None or st.get("final"):
            return req
        stmt = st["request"]["statement"]
        until = min(stmt["expires_at"], stmt["created_at"] + self.policy.rule_for(req["key_id"]).request_ttl_s)
        if self.clock.now() < until:
            return req
        try:
            self.store.core.update_sign_request(req["request_id"], status="expired",
                                                expected_status="pending",
                                                error=json.dumps(PolicyDenied("expired", "the request expired").to_error()))
        except ConflictError:
            pass
        else:
            self.metrics.sign_request("expired")
            self._audit_quiet(None, "request_expired", key_id=req["key_id"],
                              subject=req["request_id"], decision="expired", reason="expired")
            self._notify(req["request_id"])
        return self.store.get_sign_request(req["request_id"])

    async def decide_sign_request(self, user, request_id: str, decision: str,
                                  body: dict | None = None, *, forwarded: bool = False) -> dict:
        """An approval, rejection or (the initiator's) cancel: ``body["approval"]`` is the
        signed statement, by the authenticated user; ``decision`` the route's kind."""
        decision = {"approval": "approve", "rejection": "reject"}.get(decision, decision)
        req = self.store.get_sign_request(request_id)
        st = self.store.get_statement(request_id)
        if req is None or st is None:
            if not forwarded:  # the request lives on its coordinator: the decision goes there
                return await self._forward_to_owner(
                    request_id, "POST",
                    body={"decision": decision, "user": user.id, "body": body or {}})
            raise ServiceError("not_found", "unknown sign request")
        a = self._parse_approval(body, decision, user)
        sr = SignedRequest.from_json(st["request"])
        existing = [Approval.from_json(x) for x in self.store.decisions(request_id)]
        dig = sr.request.digest or sr.request.payload_hash
        action = DECISION_ROUTES[decision]
        now = self.clock.now()
        problem = check_approval(self.policy, sr.request, a, now, existing)
        if problem is not None:
            raise self._refuse(PolicyDenied(problem.reason, problem.message), actor=user.id, action=action,
                               key_id=req["key_id"], subject=request_id, digest=dig)
        req = self._expire_if_due(req)
        status = (st.get("final") or req["status"])
        if status == "expired":
            raise self._refuse(PolicyDenied("expired", "the request has expired"), actor=user.id,
                               action=action, key_id=req["key_id"], subject=request_id, digest=dig)
        if status != "pending":
            raise ServiceError("not_pending", f"the request is {status}; it does not wait for "
                            f"an {action}")
        outcome = evaluate(self.policy, sr, [*existing, a], now, usage=self._rate_usage)
        if (outcome.denied and self._fault(sr.request) == "skip-checks"
                and outcome.reason not in ("rejected", "cancelled", "expired")):
            outcome = Decision("allowed", None, "test-only fault: the coordinator's checks skipped")
        if outcome.allowed:
            # a request nobody can sign now stays as it was (the approval is not recorded)
            row = self.active_key(req["key_id"])
            named = [self.index_of(s) for s in req["signers"]] if req["signers"] else None
            await self._reachable_signers(row, sorted(named) if named else None)
        self._audit(user.id, action, key_id=req["key_id"], subject=request_id, digest=dig,
                    decision="accepted", reason=outcome.reason)
        if not self.store.add_decision(request_id, a.approver, a.decision, a.to_json()):
            raise self._refuse(PolicyDenied("duplicate_approver", f"{a.approver} already decided"),
                               actor=user.id, action=action, key_id=req["key_id"],
                               subject=request_id, digest=dig)
        await self._apply_outcome(req, sr, [*existing, a], outcome, actor=user.id)
        return self.sign_request_view(self.store.get_sign_request(request_id))

    async def _forward_to_owner(self, request_id: str, method: str, *, query: dict | None = None,
                                body: dict | None = None) -> dict:
        """A sign request is kept by the node that received it. Another node answers for it by
        asking its peers (pinned mutual TLS): reads (``GET``, ``query``: the long-poll), and
        decisions (``POST``, which the owner checks as its own: the decision is signed by the
        approver, whom this node authenticated). The id is checked against its exact grammar
        and the peer URL built from encoded segments, so nothing in it can leave its segment."""
        if not is_id("request_id", request_id):
            raise ServiceError("not_found", "unknown sign request")
        segments = ("sign-requests", request_id) + (("decisions",) if method == "POST" else ())
        url = peer_path(*segments)
        if query:
            url = url.with_query({k: str(v) for k, v in query.items()})
        for p in [p for p in self.peers if p != self.index]:
            try:
                return await self.client.request(self.peers[p], method, url, json_body=body,
                                                 timeout=75.0, pool=FORWARD_POOL)
            except PeerError as exc:
                if exc.status == 404 or exc.status is None:
                    continue  # not there (or that node is down): ask the next
                raise exc.service_error(code="error") from None
        raise ServiceError("not_found", "unknown sign request")

    async def peer_sign_request(self, request_id: str, wait: float) -> dict:
        return await self.get_sign_request(request_id, wait, forward=False)

    async def peer_decision(self, request_id: str, body: dict, from_index: int) -> dict:
        user = self.policy.user(body.get("user")) if isinstance(body, dict) else None
        if user is None or body.get("decision") not in DECISION_ROUTES:
            raise ServiceError("bad_forward", "a forwarded decision names a user and a decision")
        return await self.decide_sign_request(user, request_id, body["decision"], body.get("body"),
                                              forwarded=True)

    def _parse_approval(self, body: Any, decision: str, user) -> Approval:
        if not isinstance(body, dict) or body.get("approval") is None:
            raise ServiceError("missing_approval", "the body carries the signed decision "
                              "(approval: {statement, signature}); the client library makes it")
        try:
            a = Approval.from_json(body["approval"])
        except (PolicyError, CanonicalError) as exc:
            raise ServiceError("bad_approval", str(exc)[:300]) from None
        if a.decision != decision:
            raise ServiceError("decision_mismatch", f"this route takes a {decision!r} decision, "
                              f"the statement says {a.decision!r}")
        if a.approver != user.id:
            raise self._refuse(PolicyDenied("approver_mismatch", "the decision is signed for another user "
                               "than the authenticated one"), actor=user.id,
                               action=DECISION_ROUTES[decision], subject=a.request_id)
        return a

    async def _apply_outcome(self, req: dict, sr: SignedRequest, approvals: list[Approval],
                             outcome: Decision, *, actor: str) -> None:
        rid = req["request_id"]
        if outcome.allowed:
            await self._start_signing(rid, approvals, actor=actor)
            return
        if outcome.pending:
            return
        status = {"rejected": "rejected", "cancelled": "rejected", "expired": "expired"}.get(
            outcome.reason, "failed")
        err = PolicyDenied(outcome.reason, outcome.message).to_error()
        try:
            self.store.core.update_sign_request(rid, status=status, expected_status="pending",
                                                error=json.dumps(err))
        except ConflictError:
            return
        if outcome.reason == "cancelled":
            self.store.set_statement_final(rid, "cancelled")
        self.metrics.sign_request({"rejected": "rejected", "cancelled": "cancelled",
                                   "expired": "expired"}.get(outcome.reason, "denied"))
        if outcome.reason not in ("rejected", "cancelled", "expired"):
            self.metrics.policy_denied(outcome.reason)
        self._audit_quiet(actor, "request_closed", key_id=req["key_id"], subject=rid,
                          decision=outcome.reason if outcome.reason in ("rejected", "cancelled",
                                                                          "expired") else "denied",
                          reason=outcome.reason)
        self._notify(rid)

    # =================================================================== signer side

    def _authorize_job(self, spec: dict, from_index: int):
        """Everything this node checks before it joins a job a peer coordinates; returns what
        it decoded itself for a sign job (the digests it will sign), or None. Raises ServiceError
        (audited) when it refuses."""
        coord = self.peers[from_index].id
        kind = spec["kind"]
        key_id = spec.get("key_id")
        job_id = str(spec["job_id"])
        pol = self.policy

        def refuse(error: ServiceError, digest: Any = None) -> ServiceError:
            return self._refuse(error, actor=coord, action=f"{kind}_job_refused",
                                key_id=key_id if isinstance(key_id, str) else None,
                                subject=job_id, digest=digest)

        if spec.get("policy_hash") != pol.hash:
            self._spawn(self._sync_policy())
            raise refuse(PolicyDenied("policy_mismatch", "the job was opened under another policy"))
        if JOB_AUTHORITY[kind] == "coordinator":
            return None  # presign: the coordinator's signature (checked) authorizes it
        now = self.clock.now()
        try:
            sr = SignedRequest.from_json(spec.get("request"))
        except (PolicyError, CanonicalError):
            raise refuse(PolicyDenied("bad_request", "the job does not carry a well-formed signed request")) from None
        r = sr.request
        dig = r.digest or r.payload_hash
        if spec.get("request_id") != sr.request_id:
            raise refuse(PolicyDenied("request_mismatch", "the job names another request"), dig)
        if self.store.request_used(sr.request_id):
            raise refuse(ServiceError("request_already_signed", "this node already took part in this "
                                      "request"), dig)
        approvals = spec.get("approvals")
        if not isinstance(approvals, list):
            raise refuse(PolicyDenied("bad_request", "the job carries no approvals list"), dig)
        if kind == SIGN:
            usage = functools.partial(self._rate_usage, besides=sr.request_id)  # reserved already
            decision = authorize(pol, sr, approvals, now=now, usage=usage, action=SIGN,
                                 key_id=key_id, digest=spec.get("digest") if r.digest else None,
                                 derivation_path=spec.get("derivation_path"))
        else:
            decision = authorize(pol, sr, approvals, now=now, action=kind,
                                 key_id=None if kind in ("keygen", "import") else key_id)
        if not decision.allowed:
            raise refuse(PolicyDenied(decision.reason or "denied", decision.message), dig)
        if kind in KEY_ACTIONS:
            problem = self._key_job_params_problem(spec, r.params or {})
            if problem:
                raise refuse(PolicyDenied("request_mismatch", problem), dig)
            return None
        row = self.store.get_key(key_id) if isinstance(key_id, str) else None
        if row is None or row["status"] != "active":
            raise refuse(ServiceError("unknown_key", "this node does not hold that key"), dig)
        try:  # the request is reserved for this signer set on a quorum of holders, here too
            self.request_use.check_job(spec, row)
        except RequestUseRefused as exc:
            raise refuse(exc, dig) from None
        # sign: what does this node itself read in the request?
        if r.payload_type is not None:
            try:
                ph = payload_hash(r.payload_type, spec.get("payload"))
            except PolicyError:
                ph = None
            if spec.get("payload_type") != r.payload_type or ph != r.payload_hash:
                raise refuse(PolicyDenied("request_mismatch", "the job's payload is not the signed "
                                          "request's"), dig)
        return (sr, refuse, dig)

    async def _authorize_sign_payload(self, spec: dict, checked) -> Any:
        """Second half of a sign job's checks (decoding runs off the event loop)."""
        sr, refuse, dig = checked
        r = sr.request
        row = self.store.get_key(spec["key_id"])
        try:
            dec = await self._decode(row, r, spec.get("payload"), None)
        except payloads.PayloadError as exc:
            raise refuse(ServiceError(exc.code, exc.message), dig) from None
        self._audit(self.peers[int(spec["coordinator"])].id, "payload_decoded", key_id=spec["key_id"],
                    subject=str(spec["job_id"]), digest=dig, decision="decoded", reason=summary_text(dec))
        ok, code, message = self._tx_check(spec["key_id"], dec)
        if not ok:
            raise refuse(PolicyDenied(code, message), dig)
        try:
            items = spec.get("items") or []
            payloads.check_claimed_digests(dec, [it.get("digest") for it in items],
                                           [int(str(it.get("tweak", "0")), 16) for it in items])
        except (payloads.DigestMismatch, AttributeError, TypeError, ValueError) as exc:
            code = getattr(exc, "code", "digest_mismatch")
            raise refuse(ServiceError(code, "the coordinator's digests or tweaks are not the ones this "
                                      "node computed from the request"), dig) from None
        return dec

    def _key_job_params_problem(self, spec: dict, params: dict) -> str | None:
        kind = spec["kind"]
        if kind == "refresh":
            return None
        if kind == "import":
            try:
                bundle = parse_bundle(spec.get("bundle"), self.cluster)
            except ImportBundleError:
                return "the job's bundle is malformed"
            if request_params(bundle) != params:
                return "the bundle differs from the signed import request"
            if bundle.parties != sorted(spec.get("parties") or []) or bundle.threshold != spec.get("threshold"):
                return "the job's parties or threshold differ from the bundle's"
            return None
        if params.get("threshold") != spec.get("threshold"):
            return "threshold differs from the signed request"
        nodes = params.get("nodes")
        want = spec.get("parties") if kind == "keygen" else spec.get("new_members")
        if nodes is None:
            if kind == "keygen" and sorted(want or []) != sorted(n.index for n in self.cluster.nodes):
                return "the request names all nodes, the job does not"
            if kind == "reshare":
                return "a reshare request names its nodes"
            return None
        try:
            idx = sorted(self.index_of(n) for n in nodes)
        except Exception:  # noqa: BLE001
            return "unknown node in the signed request"
        if idx != sorted(int(p) for p in want or []):
            return "nodes differ from the signed request"
        return None

    def _mark_request_used(self, spec: dict, amounts: dict | None = None) -> None:
        """Durably record that this node signs (or runs the key change of) the job's request,
        before anything of it leaves; a second time is refused."""
        rid = spec.get("request_id")
        if not rid:
            return
        if not self.store.use_request(rid, spec["kind"], spec.get("key_id"), spec["job_id"], amounts):
            from appliance.node import JobFailed

            raise JobFailed(ServiceError("request_already_signed",
                                      "this node already took part in this request"))

    # =================================================================== key operations

    async def _key_operation(self, user, action: str, key_id: str | None, params: dict,
                             request: Any, spec_body: dict) -> tuple[dict | None, SignedRequest]:
        """The policy step of create/refresh/reshare: ``(None, request)`` if the operation may
        run now (the caller runs it with :meth:`_launch_key_op`), else ``(the operation's view,
        request)`` (pending approvals, or the same request sent again). ``spec_body``: what
        is needed to build the job later (kept with a pending operation)."""
        sr = self._signed_request(request, user)
        r = sr.request
        if r.action != action or r.key_id != key_id or (r.params or {}) != params:
            raise ServiceError("request_mismatch", "the body differs from the signed request "
                              "(action, key_id or params)")
        existing = self.store.get_statement(sr.request_id)
        if existing is not None:
            op = self.store.get_operation(existing["subject"])
            if op is not None:
                return self.operation_view(op), sr
        decision = evaluate(self.policy, sr, [], self.clock.now())
        if decision.denied:
            raise self._refuse(PolicyDenied(decision.reason, decision.message), actor=user.id,
                               action=f"{action}_request", key_id=key_id, subject=sr.request_id)
        if decision.allowed:
            return None, sr
        from appliance.node import new_id

        op_id = new_id("op")
        self._audit(user.id, f"{action}_request", key_id=key_id, subject=op_id,
                    decision="pending", reason=decision.reason)
        self.store.put_operation(op_id, action, key_id, user.id, status="pending")
        self.store.put_statement(sr.request_id, op_id, action, key_id, sr.to_json(),
                                 payload=spec_body)
        return self.operation_view(self.store.get_operation(op_id)), sr

    async def decide_operation(self, user, op_id: str, body: dict | None) -> dict:
        """``POST /v1/operations/{id}/approvals``: an admin's approval of a key change."""
        op = self.store.get_operation(op_id)
        st = self.store.get_statement(op_id)
        if op is None or st is None:
            raise ServiceError("not_found", "unknown operation")
        a = self._parse_approval(body, "approve", user)
        sr = SignedRequest.from_json(st["request"])
        existing = [Approval.from_json(x) for x in self.store.decisions(sr.request_id)]
        now = self.clock.now()
        problem = check_approval(self.policy, sr.request, a, now, existing)
        if problem is not None:
            raise self._refuse(PolicyDenied(problem.reason, problem.message), actor=user.id,
                               action="operation_approval", key_id=op["key_id"], subject=op_id)
        if op["status"] != "pending":
            raise ServiceError("not_pending", f"the operation is {op['status']}")
        outcome = evaluate(self.policy, sr, [*existing, a], now)
        self._audit(user.id, "operation_approval", key_id=op["key_id"], subject=op_id,
                    decision="accepted", reason=outcome.reason)
        if outcome.allowed:  # (a 503 from here records nothing: approve again later)
            await self._launch_key_op(op["kind"], user.id, sr, [*existing, a], st["payload"] or {},
                                      op_id=op_id)
        self.store.add_decision(sr.request_id, a.approver, a.decision, a.to_json())
        if outcome.denied:
            self.store.finish_operation(op_id, "failed", error=PolicyDenied(outcome.reason,
                                                                             outcome.message).to_error())
            self.metrics.policy_denied(outcome.reason)
            self._notify(op_id)
        return self.operation_view(self.store.get_operation(op_id))

    # =================================================================== policy updates

    def policy_view(self) -> dict:
        out = self.policy.summary()
        out["updates"] = len(self.store.policy_updates()) if self.store is not None else 0
        return out

    async def update_policy(self, user, body: Any, *, from_peer: int | None = None) -> dict:
        """A new policy signed by the current policy's ``policy_change`` quorum: verified,
        stored, in force here at once; forwarded to every peer (each verifies it itself)."""
        actor = user.id if user is not None else self.peers[from_peer].id
        try:
            upd = PolicyUpdate.from_json(body)
        except (PolicyError, CanonicalError) as exc:
            raise ServiceError("bad_policy_update", str(exc)[:300]) from None
        if upd.policy.hash == self.policy.hash:
            result = {"policy_hash": self.policy.hash, "version": self.policy.version,
                      "applied": False}
        else:
            try:
                new = verify_policy_update(self.policy, upd)
            except PolicyDenied as exc:
                raise self._refuse(PolicyDenied(exc.code, exc.message), actor=actor, action="policy_change",
                                   digest=upd.policy.hash) from None
            self._audit(actor, "policy_change", digest=new.hash, decision="applied",
                        reason=f"version {new.version}")
            self.store.add_policy_update(new.hash, upd.to_json())
            self.policy = new
            self._invalidate_pending("policy_changed")
            result = {"policy_hash": new.hash, "version": new.version, "applied": True}
        if from_peer is None:
            nodes = {self.me.id: "applied" if result["applied"] else "current"}
            others = [p for p in self.peers if p != self.index]
            res = await asyncio.gather(*(self.client.request(self.peers[p], "POST", peer_path("policy"),
                                                             json_body=upd.to_json(), timeout=10.0)
                                         for p in others), return_exceptions=True)
            for p, r in zip(others, res):
                if isinstance(r, BaseException):
                    err = getattr(r, "body", {}) or {}
                    nodes[self.peers[p].id] = (err.get("error", {}) or {}).get("code", "unreachable")
                else:
                    nodes[self.peers[p].id] = "applied" if r.get("applied") else "current"
            result["nodes"] = nodes
        return result

    def _invalidate_pending(self, code: str) -> None:
        """A policy change: requests and operations waiting for approvals under the old policy
        can never be approved (their statements name its hash)."""
        err = {"code": code, "message": "the policy changed while it was pending"}
        n = 0
        for req in self.store.list_sign_requests(("pending",)):
            try:
                self.store.core.update_sign_request(req["request_id"], status="expired",
                                                    expected_status="pending", error=json.dumps(err))
                n += 1
                self._notify(req["request_id"])
            except ConflictError:
                pass
        for op_id in self.store.pending_operation_ids():
            self.store.finish_operation(op_id, "failed", error=err)
            self._notify(op_id)
            n += 1
        if n:
            self._audit_quiet(None, "pending_invalidated", decision="expired", reason=f"{code}: {n}")

    def policy_chain(self) -> list[dict]:
        return self.store.policy_updates()

    async def _sync_policy(self) -> None:
        """Catch up with policy updates a peer has and this node missed (while it was down):
        each one is verified against the policy before it, as if posted here."""
        if getattr(self, "_syncing_policy", False):
            return
        self._syncing_policy = True
        try:
            for p in [p for p in self.peers if p != self.index]:
                try:
                    body = await self.client.request(self.peers[p], "GET", peer_path("policy"),
                                                     timeout=5.0)
                except Exception:  # noqa: BLE001 - a peer that is down has nothing to give
                    continue
                for u in body.get("updates", []):
                    try:
                        upd = PolicyUpdate.from_json(u)
                        if upd.previous_policy_hash == self.policy.hash:
                            await self.update_policy(None, u, from_peer=p)
                    except Exception as exc:  # noqa: BLE001
                        log.info("policy update from %s not applied: %s", self.peers[p].id,
                                 getattr(exc, "code", exc))
        finally:
            self._syncing_policy = False

    # =================================================================== audit checkpoints

    async def _cosign_loop(self) -> None:
        """Have every checkpoint of this node's audit log co-signed by its peers."""
        while not self.stopping:
            await asyncio.sleep(2.0)
            try:
                await self._cosign_pending(timeout=5.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.info("audit co-signing: %s", exc)

    async def _cosign_pending(self, timeout: float) -> None:
        if self.audit is None:
            return
        floor = getattr(self, "_cosigned_upto", 0)
        peers = [p for p in self.peers if p != self.index]
        cps = self.audit.checkpoints(floor)[-20:]
        prefix_done = True
        for cp in cps:
            missing = [p for p in peers if self.peers[p].id not in cp.cosignatures]
            res = await asyncio.gather(*(self.client.request(self.peers[p], "POST",
                                                             peer_path("audit", "checkpoints"),
                                                             json_body=cp.to_json(), timeout=timeout)
                                         for p in missing), return_exceptions=True)
            done = len(peers) - len(missing)
            for p, r in zip(missing, res):
                if isinstance(r, BaseException):
                    continue
                try:
                    self.audit.add_cosignature(cp.seq, self.peers[p].id, bytes.fromhex(r["signature"]),
                                               self.node_keys())
                    done += 1
                except (AuditError, KeyError, TypeError, ValueError) as exc:
                    log.warning("co-signature of %s refused: %s", self.peers[p].id, exc)
            prefix_done = prefix_done and done == len(peers)
            if prefix_done:
                self._cosigned_upto = cp.seq

    def witness_checkpoint(self, body: Any, from_index: int) -> dict:
        """Peer route: co-sign another node's checkpoint (never two heads for one entry)."""
        try:
            cp = Checkpoint.from_json(body)
        except (AuditError, CanonicalError, TypeError, ValueError):
            raise ServiceError("bad_checkpoint", "malformed checkpoint") from None
        if cp.node != self.peers[from_index].id:
            raise ServiceError("forbidden", "a node sends only its own checkpoints")
        try:
            sig = self.audit.witness(cp, self.node_keys())
        except AuditUnavailable:
            self._audit_down()
            raise ServiceError("audit_unavailable", "cannot keep the checkpoint") from None
        except AuditError as exc:
            self._audit_quiet(self.peers[from_index].id, "checkpoint_refused", decision="denied",
                              reason="contradicting_checkpoint")
            raise ServiceError("checkpoint_refused", str(exc)[:200]) from None
        return {"signature": sig.hex()}

    # =================================================================== derivation

    def derive_key(self, key_id: str, path: Any) -> dict:
        row = self.active_key(key_id)
        if not row.get("chain_code"):
            raise ServiceError("no_chain_code", "this key has no chain code")
        try:
            d = bip32.derive(Point.from_bytes(row["public_key"]), row["chain_code"], path or "m")
        except bip32.DerivationError as exc:
            raise ServiceError("bad_derivation_path", str(exc)) from None
        norm = "m" + "".join(f"/{i}" for i in bip32.parse_path(path or "m"))
        return {"key_id": key_id, "path": norm, "public_key": d.public_key.to_bytes().hex(),
                "xpub": d.xpub(), "chain_code": d.chain_code.hex(), "depth": d.depth}

    def key_address(self, key_id: str, kind: Any, path: Any = None, network: Any = None) -> dict:
        row = self.active_key(key_id)
        if kind not in ("p2wpkh", "eth"):
            raise ServiceError("bad_kind", "kind must be p2wpkh or eth")
        net = network or self.policy.rule_for(key_id).network
        if net not in BITCOIN_NETWORKS:
            raise ServiceError("bad_network", f"network must be one of {', '.join(BITCOIN_NETWORKS)}")
        try:
            out = payloads.address_for(kind, self._key_context(row, path or "m"), net)
        except payloads.PayloadError as exc:
            raise ServiceError(exc.code, exc.message) from None
        return {"key_id": key_id, **out}


class MeteredHSM:
    """The HSM with each PKCS#11 operation's duration (and failures) in the metrics."""

    OPS = {"seal_async": "seal", "unseal_async": "unseal", "seal_presignature_async": "seal_presignature",
           "unseal_presignature_async": "unseal_presignature",
           "consume_presignature_async": "consume_presignature",
           "destroy_presignature_key_async": "destroy_key", "destroy_presignature_key": "destroy_key",
           "sign_digest": "sign", "sign_digest_async": "sign",
           "transport_decrypt_async": "transport_decrypt", "health": "health"}

    def __init__(self, hsm, metrics) -> None:
        self._hsm = hsm
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._hsm, name)
        op = self.OPS.get(name)
        if op is None or not callable(attr):
            return attr
        m = self._metrics
        if asyncio.iscoroutinefunction(attr):
            async def timed_async(*a: Any, **kw: Any) -> Any:
                t0, ok = time.perf_counter(), False
                try:
                    out = await attr(*a, **kw)
                    ok = True
                    return out
                finally:
                    m.observe_hsm(op, time.perf_counter() - t0, ok=ok)
            return timed_async

        def timed(*a: Any, **kw: Any) -> Any:
            t0, ok = time.perf_counter(), False
            try:
                out = attr(*a, **kw)
                ok = True
                return out
            finally:
                m.observe_hsm(op, time.perf_counter() - t0, ok=ok)
        return timed


def summary_text(dec) -> str:
    """One line for the audit log: what the node decoded (type, chain, each transfer, fee,
    contract and method), at most 300 characters; no payload bytes, only what an approver saw."""
    f = dec.facts
    if dec.payload_type == "digest":
        return f"raw digest, {len(dec.items)} signature(s), path {dec.items[0].path}"
    parts = [dec.payload_type]
    if f.chain:
        parts.append(f"{f.chain} {f.network or ''}{f' chain {f.chain_id}' if f.chain_id else ''}".strip())
    for t in f.transfers[:4]:
        parts.append(f"{t.kind} {t.amount} {t.asset or '-'} to {t.destination or 'none'}")
    if len(f.transfers) > 4:
        parts.append(f"+{len(f.transfers) - 4} more")
    if f.fee is not None:
        parts.append(f"fee {f.fee} {f.fee_asset or ''}".strip())
    if f.contract:
        parts.append(f"contract {f.contract} {f.method or ''}".strip())
    parts.append(f"{len(dec.items)} signature(s)")
    return "; ".join(parts)[:300]


def fault_digest(digest_hex: str) -> str:
    """What a test-only substituting coordinator sends instead of a digest."""
    return hashlib.sha256(b"substituted" + bytes.fromhex(digest_hex)).hexdigest()


__all__ = ["FAULT_PREFIX", "MeteredHSM", "PolicyMixin", "fault_digest"]
