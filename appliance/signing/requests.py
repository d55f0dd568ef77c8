"""Sign requests, as a client sees them.

A client sends ``POST /v1/keys/{key_id}/sign-requests`` with the initiator's signed request
statement and what it names: a ``digest``, or a ``payload`` with its ``payload_type``, a
``derivation_path`` and, for a PSBT, a ``network``. The node checks that the body is the
statement, decodes the payload itself once (:class:`PayloadReader`), evaluates the policy and
the key's transaction rules once, audits the decision, and stores the request ``pending`` (or
starts signing at once if the rule needs no approval). The request id is derived from the
initiator and the statement's nonce (the idempotency key): the same request sent again, signed
again or not, to this node or another, returns the first request (``Created.new`` False: HTTP
200); a different request under the nonce is ``nonce_reused`` (appliance/request_claims.py). Approvals, rejections and the initiator's
cancel are signed statements too. Every status change goes through
:func:`appliance.signing.states.transition`, here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import base64
import hashlib
import logging
import secrets
import time
from typing import Any, AsyncIterator, Callable

from appliance import formats, paging, payloads
from appliance.cluster.health import PeerHealth
from appliance.cluster.quarantine import QuarantineService
from appliance.errors import ApplianceError, PolicyDenied, ServiceError
from appliance.logs import get_logger
from appliance.ids import is_id, new_id, peer_path
from appliance.jobs.model import JobFailed, is_frost
from appliance.keys.shares import ShareVault
from appliance.pools.frost_nonces import FrostNoncePool
from appliance.pools.presign import PresignPool
from appliance.policy import (BITCOIN_NETWORKS, ECDSA, PAYLOAD_TYPES, SIGN, Approval, Decision, PolicyError,
                              SignedRequest, check_approval, evaluate, normalize_path, payload_hash, summary_hash)
from appliance.policy.evaluation import NOT_SHOWN
from appliance.passkey_counters import check_counters, describe
from appliance.ports import (KeyStore, Late, PeerLink, PresignatureStore, ReadScope, ReplayStore, SignRequestStore,
                             StatementStore)
from appliance.recorder import Recorder
from appliance.request_claims import Created, NonceReused, RequestClaims
from appliance.request_use import USE_MARKS, RequestUse, RequestUseRefused
from appliance.runtime import Runtime
from appliance.signing import forwarded, schnorr, schnorr_verify, states
from appliance.signing.reading import PayloadReader, summary_text
from appliance.statements import DECISION_ROUTES, parse_approval, signed_request
from appliance.storage import ConflictError
from appliance.transport import FORWARD_POOL, PeerError
from appliance.tss import ecdsa
from appliance.tss.group import Point

log = logging.getLogger("appliance.node")
events = get_logger("appliance.policy")

FAULT_PREFIX = "testfault."


#: how long a node answering for another waits for that node to finish creating the request
CREATING_WAIT_S = 15.0


def _replay_of(request_use: RequestUse | None) -> Late[ReplayStore]:
    if request_use is not None:
        return request_use.replay

    def missing() -> ReplayStore:  # fail closed: a passkey approval needs its counters
        raise ServiceError("internal", "no replay store: passkey counters cannot be checked")
    return missing


def _noted(reason: str | None, note: str) -> str | None:
    """An audit reason with a note (e.g. the passkey an approval was made with)."""
    return f"{reason or 'accepted'} ({note})" if note else reason


def fault_digest(digest_hex: str) -> str:
    """What a test-only substituting coordinator sends instead of a digest."""
    return hashlib.sha256(b"substituted" + bytes.fromhex(digest_hex)).hexdigest()


class SignRequests:
    def __init__(self, rt: Runtime, recorder: Recorder, shares: ShareVault, reader: PayloadReader,
                 health: PeerHealth, quarantine: QuarantineService, request_use: RequestUse,
                 pool: PresignPool, coordinate: Callable, claims: RequestClaims, *, requests: Late[SignRequestStore],
                 statements: Late[StatementStore], key_store: Late[KeyStore], presigs: Late[PresignatureStore],
                 peers: PeerLink, nonce_pool: FrostNoncePool | None = None,
                 replay: Late[ReplayStore] | None = None) -> None:
        self.rt = rt
        # passkey sign counters live with the other replay records (the store RequestUse has)
        self.replay = replay if replay is not None else _replay_of(request_use)
        self.nonce_pool = nonce_pool  # pooled FROST nonces: one online round when it has them
        self.requests = requests
        self.statements = statements
        self.key_store = key_store
        self.presigs = presigs
        self.link = peers
        self.recorder = recorder
        self.shares = shares
        self.reader = reader
        self.health = health
        self.quarantine = quarantine
        self.request_use = request_use
        self.pool = pool
        self.coordinate = coordinate  # Coordinator.run
        self.claims = claims
        self._creating: dict[str, asyncio.Lock] = {}  # request id -> held while it is being created here

    # -- status changes: the one place -----------------------------------------------------

    def _move(self, rid: str, state: str, event: str, *, conditional: bool, signers: list[str] | None = None,
              signature: dict | None = None, error: dict | None = None) -> str:
        """Step ``rid`` from ``state`` by ``event`` (the table refuses anything else);
        ``conditional``: only if the stored status is still ``state`` (ConflictError if not)."""
        requests = self.requests()
        new = states.transition(state, event)
        if conditional:
            with self.recorder.together():  # one transaction (one commit) for the step
                requests.move_sign_request(rid, status=new, expected_status=state, error=error)
                if signers is not None or signature is not None:
                    requests.update_sign_request(rid, status=new, signers=signers, signature=signature)
        else:
            requests.update_sign_request(rid, status=new, signers=signers, signature=signature, error=error)
        return new

    # -- creating ---------------------------------------------------------------------------

    async def create(self, user, key_id: str, digest_hex: Any = None, derivation_path: Any = None,
                     signers: Any = None, payload: Any = None, payload_type: Any = None, *,
                     request: Any = None, network: Any = None) -> Created:
        rt = self.rt
        row = self.shares.active_key(key_id)
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
                raise ServiceError("bad_payload_type", f"payload_type must be one of {', '.join(PAYLOAD_TYPES)}")
            if payload is None:
                raise ServiceError("bad_payload", "payload_type goes with a payload")
        try:
            path = normalize_path(derivation_path)
        except PolicyError as exc:
            raise ServiceError("bad_derivation_path", str(exc)) from None
        if network is not None and network not in BITCOIN_NETWORKS:
            raise ServiceError("bad_network", f"network must be one of {', '.join(BITCOIN_NETWORKS)}")
        named = self._named_signers(row, signers)
        # the node reads what it is asked to sign (once): a malformed payload is a clear 400
        try:
            dec = await self.reader.decode(row, digest=digest_hex if payload is None else None, payload=payload,
                                           payload_type=payload_type, path=path, network=network)
        except payloads.PayloadError as exc:
            raise ServiceError(exc.code, exc.message) from None
        sr = signed_request(self.recorder, request, user)
        await self.health.require_hsm()
        self._check_body_is_request(sr, key_id, path, network, digest_hex, payload, payload_type)
        async with self._creating_here(sr.request_id):
            asked = time.monotonic()  # the peers' readiness given with their claim answers counts
            first = await self._first_request(user, sr, rt.node_ids(named) if named else None)
            if first is not None:  # a retry: the first request, as it is now
                return Created(first, False)
            return Created(await self._create(user, row, sr, dec, named, payload, since=asked), True)

    @contextlib.asynccontextmanager
    async def _creating_here(self, rid: str) -> AsyncIterator[None]:
        """One creation of ``rid`` at a time on this node (a retry racing the first waits and
        finds it); another node asking for it meanwhile waits too (:meth:`peer_get`)."""
        lock = self._creating.setdefault(rid, asyncio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and self._creating.get(rid) is lock:
                del self._creating[rid]

    async def _first_request(self, user, sr: SignedRequest, signers: list[str] | None) -> dict | None:
        """The first request under the request's (initiator, nonce) if there is one (kept here
        or by its owner); None if this node creates it; NonceReused (audited) if the nonce
        was used for a different request."""
        rid, r = sr.request_id, sr.request
        try:
            here = self.claims.claim_here(sr, signers)
            existing = self.requests().get_sign_request(rid)
            if existing is not None:
                return self.view(self._expire_if_due(existing))
            owner = await self.claims.claim_everywhere(sr, signers, here)
        except NonceReused as exc:
            raise self.recorder.refuse(exc, actor=user.id, action="sign_request", key_id=r.key_id,
                                       subject=rid, digest=r.digest or r.payload_hash, policy=False) from None
        if owner == self.rt.index:
            return None
        try:  # kept by its owner (which may still be creating it: it answers once done)
            answer = await self.link.request(self.rt.peers[owner], "GET", peer_path("sign-requests", rid),
                                             timeout=CREATING_WAIT_S + 10.0, pool=FORWARD_POOL)
        except PeerError as exc:
            log.info("sign request %s: its owner %s does not answer for it (%s): created here",
                     rid, self.rt.peers[owner].id, exc.status or "unreachable")
            return None  # refused there, or the owner is down: this node creates it
        return await self._checked_view(rid, answer)  # checked like any forwarded view

    async def _create(self, user, row: dict, sr: SignedRequest, dec: Any, named: list[int] | None,
                      payload: Any, *, since: float | None = None) -> dict:
        """Evaluate, audit and store a new request (and start it if no approval is needed)."""
        rt, r, rid, key_id = self.rt, sr.request, sr.request_id, row["key_id"]
        adigest = r.digest or r.payload_hash
        fault = self._fault(r)
        t0 = time.perf_counter()
        decision = evaluate(rt.policy, sr, [], rt.clock.now(), usage=self.reader.rate_usage)
        tx_ok, code, message = self.reader.tx_check(key_id, dec)
        rt.metrics.observe_stage("policy", time.perf_counter() - t0)
        if decision.denied or (dec.payload_type != "digest" and not tx_ok):
            # what was refused, as this node read it
            self.recorder.write(user.id, "payload_decoded", key_id=key_id, subject=rid, digest=adigest,
                                decision="decoded", reason=summary_text(dec))
        if decision.denied and fault != "skip-checks":
            raise self.recorder.refuse(PolicyDenied(decision.reason, decision.message), actor=user.id,
                                       action="sign_request", key_id=key_id, subject=rid, digest=adigest)
        if not tx_ok and fault != "skip-checks":
            raise self.recorder.refuse(PolicyDenied(code, message), actor=user.id, action="sign_request",
                                       key_id=key_id, subject=rid, digest=adigest)
        allowed = decision.allowed or fault == "skip-approval"
        # a request that nobody could sign now is not created (the signers asked now are the
        # ones an allowed request starts with: no second round of health checks)
        # (``since``: a peer that said it was ready with its answer to this request's claim is
        # not asked again)
        chosen = await self._reachable_signers(row, named, since=since)
        with self.recorder.together():  # the request and its entries: one transaction
            self.recorder.write(user.id, "payload_decoded", key_id=key_id, subject=rid, digest=adigest,
                                decision="decoded", reason=summary_text(dec))
            self.recorder.write(user.id, "sign_request", key_id=key_id, subject=rid, digest=adigest,
                                decision="allowed" if allowed else "pending", reason=decision.reason)
            self.requests().put_sign_request(
                rid, key_id, bytes.fromhex(r.digest) if r.digest else None, r.derivation_path, user.id,
                rt.node_ids(named) if named else None, payload=payload,
                payload_type=r.payload_type, request=sr.to_json(), status=states.PENDING)
            self.statements().put_statement(rid, rid, SIGN, key_id, sr.to_json(), payload=payload,
                                   network=dec.network, decoded=dec.to_dict())
        rt.metrics.sign_request_created()
        if allowed:
            await self._start(rid, [], actor=user.id, dec=dec, chosen=chosen)
        return self.view(self.requests().get_sign_request(rid))

    @staticmethod
    def _check_body_is_request(sr: SignedRequest, key_id: str, path: str, network: Any, digest_hex: Any,
                               payload: Any, payload_type: Any) -> None:
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
            raise ServiceError("request_mismatch", "the body differs from the signed request in " + ", ".join(diff))

    def _named_signers(self, row: dict, signers: Any) -> list[int] | None:
        if signers is None:
            return None
        t, participants = row["threshold"], row["participants"]
        if not isinstance(signers, list) or not all(isinstance(s, str) for s in signers):
            raise ServiceError("bad_signers", "signers must be a list of node ids")
        chosen = sorted({self.rt.index_of(s) for s in signers})
        if len(chosen) != len(signers) or len(chosen) != t or not set(chosen) <= set(participants):
            raise ServiceError("bad_signers", f"signers must be {t} distinct nodes holding the key")
        return chosen

    async def _reachable_signers(self, row: dict, named: list[int] | None, *,
                                 since: float | None = None) -> list[int]:
        rt = self.rt
        t = row["threshold"]
        if named is not None:
            bad = self.quarantine.named(named)
            if bad:
                raise ServiceError("node_quarantined", f"quarantined (an admin must clear them first): "
                                   f"{', '.join(bad)}", culprits=bad)
            _, missing = await self.health.split_healthy(named, since=since)
            if missing:
                raise ServiceError("quorum_unreachable", "a named signer is unreachable",
                                   missing_nodes=rt.node_ids(missing))
            return named
        healthy, missing = await self.health.split_healthy(row["participants"], since=since)
        usable = self.quarantine.not_quarantined(healthy)
        if len(usable) < t:
            held = sorted(set(healthy) - set(usable))
            note = f" ({', '.join(rt.node_ids(held))} quarantined)" if held else ""
            raise ServiceError("quorum_unreachable", f"{len(usable)} of the {t} nodes needed are reachable{note}",
                               missing_nodes=rt.node_ids(missing))
        return self._choose_signers(row, usable, t)

    def _choose_signers(self, row: dict, healthy: list[int], t: int) -> list[int]:
        """Prefer a set that includes this node and has presignatures ready; else this node
        and the first healthy others."""
        rt = self.rt
        if rt.index in healthy:
            ready = self.presigs().ready_signer_sets(row["key_id"])
            best = None
            for s, n in ready.items():
                if n > 0 and rt.index in s and set(s) <= set(healthy):
                    if best is None or n > ready[best]:
                        best = s
            if best is not None:
                return list(best)
            others = [i for i in healthy if i != rt.index]
            return sorted([rt.index] + others[: t - 1])
        return sorted(healthy[:t])

    def _fault(self, request) -> str | None:
        """Test-only coordinator faults (FaultPlan.coordinator_faults), chosen by a
        request nonce ``testfault.<name>.<random>``: forge-approval, replay-approval,
        drop-assertion, skip-approval, skip-checks, substitute-digest, trust-passkey."""
        if not self.rt.faults.coordinator_faults:
            return None
        nonce = getattr(request, "nonce", "") or ""
        if not nonce.startswith(FAULT_PREFIX):
            return None
        return nonce[len(FAULT_PREFIX):].split(".", 1)[0]

    # -- signing ----------------------------------------------------------------------------

    async def _start(self, rid: str, approvals: list[Approval], *, actor: str, dec: Any = None,
                     chosen: list[int] | None = None) -> None:
        """The rule is met: pick reachable signers, mark the request signing, run the job.
        ``dec``: the request as this node decoded it (decoded here only if not given);
        ``chosen``: the signers found reachable a moment ago (at creation), else asked now."""
        rt = self.rt
        req = self.requests().get_sign_request(rid)
        st = self.statements().get_statement(rid)
        row = self.shares.active_key(req["key_id"])
        named = [rt.index_of(s) for s in req["signers"]] if req["signers"] else None
        if chosen is None:
            chosen = await self._reachable_signers(row, sorted(named) if named else None)
        sr = SignedRequest.from_json(st["request"])
        if dec is None:
            dec = await self.reader.decode_request(row, sr.request, st["payload"], st["network"])
        try:
            self._move(rid, states.PENDING, "approve", conditional=True, signers=rt.node_ids(chosen))
        except ConflictError:
            return  # started already (a concurrent approval)
        rt.spawn(self._run(rid, row, dec, chosen, actor, sr, approvals, st["payload"]))

    async def _run(self, rid: str, row: dict, dec, signers: list[int], actor: str, sr, approvals: list,
                   payload: Any = None) -> None:
        """Coordinate the signing of an allowed request: one signature per item this node
        decoded (a PSBT input each; one for a digest, a transaction or typed data). The job
        carries the signed request and its approvals, which every signer checks itself."""
        rt = self.rt
        taken = None
        self.pool.signed()
        try:
            r = sr.request
            frost = is_frost(row)
            if frost:  # FROST: the exact bytes signed (any length for Ed25519), no tweak
                items = [{"message": schnorr.signing_target(row["scheme"], it)[0].hex()} for it in dec.items]
                first = r.digest or hashlib.sha256(dec.items[0].digest).hexdigest()
            else:
                items = [{"digest": it.digest.hex(), "tweak": format(it.tweak, "x")} for it in dec.items]
                first = items[0]["digest"]
            spec = {"job_id": new_id("job_id"), "kind": "sign", "key_id": row["key_id"], "parties": signers,
                    "epoch": row["epoch"], "digest": first, "items": items,
                    "coordinator": rt.index, "request_id": rid, "actor": actor,
                    "policy_hash": rt.policy.hash, "request": sr.to_json(),
                    "approvals": [a.to_json() for a in approvals], "derivation_path": r.derivation_path}
            if r.payload_type is not None:
                spec.update(payload=payload, payload_type=r.payload_type)
            if frost:
                spec["scheme"] = row["scheme"]
            try:  # one signer set per request, cluster-wide (appliance/request_use.py)
                spec[USE_MARKS] = await self.request_use.reserve_everywhere(sr, row, signers)
            except RequestUseRefused as exc:
                raise JobFailed(exc) from None
            self._coordinator_fault(spec, r)
            if rt.index in signers and not frost:
                # spent durably here, before anything of it is used
                taken = self.presigs().take_any_presignature(row["key_id"], signers, row["epoch"])
            pooled = None
            if frost and len(items) == 1 and self.nonce_pool is not None:
                # one pooled commitment per signer, this node's own pair spent durably already
                pooled = await self.nonce_pool.for_job(row["key_id"], row["epoch"], signers)
            if pooled is not None:
                spec["commitments"], taken = pooled
            if taken is not None and not frost:
                spec["presig_id"] = taken.presig_id.hex()
                self.pool.changed()
            try:
                result = await self.coordinate(spec, taken=taken, items=dec)
            except JobFailed as exc:
                if taken is None or exc.error.code not in ("presignature_unavailable", "nonce_unavailable"):
                    raise
                spec = dict(spec, job_id=new_id("job_id"))
                spec.pop("presig_id", None)
                spec.pop("commitments", None)
                result = await self.coordinate(spec, items=dec)
            shown = schnorr.signing_target(row["scheme"], dec.items[0])[2] if frost else dec.items[0].public_key
            stored = {"signature": result["signatures"][0], "signatures": result["signatures"],
                      "public_key": shown.hex(), "result": None}
            if frost:
                sigs = [bytes.fromhex(d["sig"]) for d in result["signatures"]]
                stored["result"] = schnorr.signed_result(dec, sigs)
            else:
                sigs = [ecdsa.Signature.from_der(bytes.fromhex(d["der"]), recovery_id=d["recovery_id"])
                        for d in result["signatures"]]
                if dec.payload_type != "digest":
                    stored["result"] = payloads.assemble(dec, sigs)
            with self.recorder.together():  # the signed state, its presignature and entry: one commit
                if spec.get("presig_id"):  # signed from a stored presignature (shown in the request)
                    self.requests().note_presignature(rid, bytes.fromhex(spec["presig_id"]))
                self._move(rid, states.SIGNING, "sign", conditional=False, signature=stored)
                self.recorder.quiet(actor, "signed", key_id=row["key_id"], subject=rid,
                                    digest=r.digest or r.payload_hash, decision="signed",
                                    reason=f"{len(sigs)} signature(s)"
                                    + (", one round over pooled nonces" if spec.get("commitments") else ""))
            rt.metrics.sign_request_completed("signed")
        except JobFailed as exc:
            self._move(rid, states.SIGNING, "fail", conditional=False, error=exc.error.to_error())
            rt.metrics.sign_request_completed("failed")
            self.recorder.quiet(actor, "sign_failed", key_id=row["key_id"], subject=rid,
                                decision="failed", reason=exc.error.code)
        except Exception as exc:  # pragma: no cover - defensive
            log.exception("sign request %s crashed", rid)
            self._move(rid, states.SIGNING, "fail", conditional=False,
                       error={"code": "internal", "message": type(exc).__name__})
            rt.metrics.sign_request_completed("failed")
        finally:
            if taken is not None and not frost:  # its key goes (used or not: a presignature is used once)
                rt.spawn(self.pool.destroy_keys([taken.hsm_key_label]))
            rt.waiters.notify(rid)

    def _coordinator_fault(self, spec: dict, request) -> None:
        """Test-only (FaultPlan.coordinator_faults): what a malicious coordinator would send."""
        fault = self._fault(request)
        if fault == "forge-approval":
            for a in spec["approvals"]:
                if "webauthn" in a:  # a passkey approval: another signature over its bytes
                    a["webauthn"]["signature"] = base64.urlsafe_b64encode(secrets.token_bytes(70)).decode().rstrip("=")
                else:
                    a["signature"] = secrets.token_hex(64)
        elif fault == "drop-assertion":  # the passkey approvals left out of the job
            spec["approvals"] = [a for a in spec["approvals"] if "webauthn" not in a]
        elif fault == "replay-approval":
            spec["approvals"] = self.statements().last_approvals(spec["request_id"])
        elif fault == "substitute-digest":
            for it in spec["items"][:1]:
                if "message" in it:  # a FROST key's item: another message
                    it["message"] = fault_digest(hashlib.sha256(bytes.fromhex(it["message"])).hexdigest())
                else:
                    it["digest"] = fault_digest(it["digest"])
                    spec["digest"] = it["digest"]

    # -- reading ----------------------------------------------------------------------------

    async def get(self, request_id: str, wait: float = 0.0, *, forward: bool = True) -> dict:
        rt = self.rt
        req = self._expire_if_due(self.requests().get_sign_request(request_id))
        lock = self._creating.get(request_id)
        if req is None and lock is not None:  # being created here: answer once it is
            with contextlib.suppress(asyncio.TimeoutError):
                async with asyncio.timeout(CREATING_WAIT_S), lock:
                    pass
            req = self._expire_if_due(self.requests().get_sign_request(request_id))
        if req is None:
            if forward:  # kept by the node that received it (its coordinator): ask the others
                return await self._forward_to_owner(request_id, "GET", query={"wait": wait})
            raise ServiceError("not_found", "unknown sign request")
        if wait > 0 and req["status"] not in states.TERMINAL:
            await rt.waiters.wait(request_id, wait)
            req = self._expire_if_due(self.requests().get_sign_request(request_id))
        return self.view(req)

    def pending(self) -> list[dict]:
        open_ = (states.PENDING, states.SIGNING)
        reqs = [self._expire_if_due(r) for r in self.requests().list_sign_requests(open_)]
        return [self.view(r) for r in reqs if r["status"] in open_]

    def list_page(self, where: paging.SignRequestFilter, query: paging.PageQuery, scope: ReadScope | None = None) -> dict:
        """One page of this node's sign requests (every status, kept for good), newest first:
        ``sign_requests`` and ``next_cursor`` (None on the last page). Pending requests past
        their window are expired first, so a status filter sees what a read would show."""
        for req in self.requests().list_sign_requests((states.PENDING,)):
            self._expire_if_due(req)
        rows = self.requests().page_sign_requests(
            where.statuses, where.key_id, where.initiator, where.created_after, where.created_before,
            query.after, query.limit + 1, scope=scope)
        rows, cursor = paging.page("sign_requests", rows, query, id_field="request_id")
        return {"sign_requests": [self.view(r) for r in rows], "next_cursor": cursor}

    def view(self, req: dict) -> dict:
        statements = self.statements()
        st = statements.get_statement(req["request_id"])
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
            out["decisions"] = [{k: a["statement"][k] for k in ("approver", "decision", "signed_at", "reason")
                                 if k in a["statement"]} for a in statements.decisions(req["request_id"])]
        stored = req["signature"]
        if isinstance(stored, dict) and "signatures" in stored:
            out["signature"] = formats.signature_formats(stored["signature"])
            out["signatures"] = [formats.signature_formats(s) for s in stored["signatures"]]
            if stored.get("result") is not None:
                out["result"] = stored["result"]
            if stored.get("public_key"):
                out["public_key"] = stored["public_key"]
        elif stored is not None:
            out["signature"] = formats.signature_formats(stored)
        if stored is not None and "public_key" not in out:
            key = self.key_store().get_key(req["key_id"])
            if key is not None:
                out["public_key"] = key["public_key"].hex()
        if req["error"] is not None:
            out["error"] = req["error"]
        return out

    def _expire_if_due(self, req: dict | None) -> dict | None:
        """A pending request past its validity window becomes ``expired`` (audited)."""
        rt = self.rt
        if req is None or req["status"] != states.PENDING:
            return req
        st = self.statements().get_statement(req["request_id"])
        if st is None or st.get("final"):
            return req
        stmt = st["request"]["statement"]
        until = min(stmt["expires_at"], stmt["created_at"] + rt.policy.rule_for(req["key_id"]).request_ttl_s)
        if rt.clock.now() < until:
            return req
        try:
            self._move(req["request_id"], states.PENDING, "expire", conditional=True,
                       error=PolicyDenied("expired", "the request expired").to_error())
        except ConflictError:
            pass
        else:
            rt.metrics.sign_request_completed("expired")
            self.recorder.quiet(None, "request_expired", key_id=req["key_id"], subject=req["request_id"],
                                decision="expired", reason="expired")
            rt.waiters.notify(req["request_id"])
        return self.requests().get_sign_request(req["request_id"])

    def expire_all_pending(self, err: dict) -> int:
        """A policy change: requests waiting for approvals under the old policy can never be
        approved (their statements name its hash)."""
        n = 0
        for req in self.requests().list_sign_requests((states.PENDING,)):
            try:
                self._move(req["request_id"], states.PENDING, "expire", conditional=True, error=err)
            except ConflictError:
                continue
            n += 1
            self.rt.metrics.sign_request_completed("expired")
            self.rt.waiters.notify(req["request_id"])
        return n

    # -- decisions --------------------------------------------------------------------------

    async def decide(self, user, request_id: str, decision: str, body: dict | None = None, *,
                     forwarded: bool = False) -> dict:
        """An approval, rejection or (the initiator's) cancel: ``body["approval"]`` is the
        signed statement, by the authenticated user; ``decision`` the route's kind."""
        rt = self.rt
        decision = {"approval": "approve", "rejection": "reject"}.get(decision, decision)
        req = self.requests().get_sign_request(request_id)
        st = self.statements().get_statement(request_id)
        if req is None or st is None:
            if not forwarded:  # the request lives on its coordinator: the decision goes there
                return await self._forward_to_owner(
                    request_id, "POST", body={"decision": decision, "user": user.id, "body": body or {}})
            raise ServiceError("not_found", "unknown sign request")
        a = parse_approval(self.recorder, body, decision, user)
        sr = SignedRequest.from_json(st["request"])
        existing = [Approval.from_json(x) for x in self.statements().decisions(request_id)]
        dig = sr.request.digest or sr.request.payload_hash
        action = DECISION_ROUTES[decision]
        now = rt.clock.now()
        # test-only (FaultPlan.coordinator_faults): a coordinator that records and forwards
        # any passkey decision unchecked, so that only the signers' own checks stand
        trusted = self._fault(sr.request) == "trust-passkey" and a.webauthn is not None
        # what the approver must have been shown: this node's own decode, kept with the request
        shown = (summary_hash(st.get("decoded")), st.get("network")) if sr.request.action == SIGN else NOT_SHOWN
        problem = None if trusted else check_approval(rt.policy, sr.request, a, now, existing, shown)
        # the audit entries name a passkey approval's credential, and a rejection's signed reason
        passkey = "; ".join(x for x in (describe(rt.policy, [a]), a.reason and f"reason: {a.reason}") if x)
        if problem is not None:
            raise self.recorder.refuse(PolicyDenied(problem.reason, problem.message), actor=user.id, action=action,
                                       key_id=req["key_id"], subject=request_id, digest=dig, note=passkey)
        try:
            check_counters(self.replay, rt.policy, [] if trusted else [a])
        except PolicyDenied as exc:
            raise self.recorder.refuse(exc, actor=user.id, action=action, key_id=req["key_id"],
                                       subject=request_id, digest=dig, note=passkey) from None
        req = self._expire_if_due(req)
        status = (st.get("final") or req["status"])
        if status == states.EXPIRED:
            raise self.recorder.refuse(PolicyDenied("expired", "the request has expired"), actor=user.id,
                                       action=action, key_id=req["key_id"], subject=request_id, digest=dig)
        if status != states.PENDING:
            raise ServiceError("not_pending", f"the request is {status}; it does not wait for an {action}")
        outcome = evaluate(rt.policy, sr, [*existing, a], now, usage=self.reader.rate_usage, shown=shown)
        if (outcome.denied and (trusted or self._fault(sr.request) == "skip-checks")
                and outcome.reason not in ("rejected", "cancelled", "expired")):
            outcome = Decision("allowed", None, "test-only fault: the coordinator's checks skipped")
        if outcome.allowed:
            # a request nobody can sign now stays as it was (the approval is not recorded)
            row = self.shares.active_key(req["key_id"])
            named = [rt.index_of(s) for s in req["signers"]] if req["signers"] else None
            await self._reachable_signers(row, sorted(named) if named else None)
        closing = not (outcome.allowed or outcome.pending)
        with self.recorder.together():  # the decision, its entry and the close it makes: one transaction
            added = self.statements().add_decision(request_id, a.approver, a.decision, a.to_json())
            if added:
                self.recorder.write(user.id, action, key_id=req["key_id"], subject=request_id, digest=dig,
                                    decision="accepted", reason=_noted(outcome.reason, passkey))
                closing = closing and self._close(req, outcome, actor=user.id)
        if not added:
            raise self.recorder.refuse(PolicyDenied("duplicate_approver", f"{a.approver} already decided"),
                                       actor=user.id, action=action, key_id=req["key_id"],
                                       subject=request_id, digest=dig)
        events.info("policy_decision", action=action, decision=outcome.outcome, user=user.id,
                    key=req["key_id"], subject=request_id, code=outcome.reason)
        if outcome.allowed:
            await self._start(request_id, [*existing, a], actor=user.id)
        elif closing:
            closed = outcome.reason in ("rejected", "cancelled", "expired")
            rt.metrics.sign_request_completed(outcome.reason if closed else "denied")
            if not closed:
                rt.metrics.policy_denied(outcome.reason)
            rt.waiters.notify(request_id)
        return self.view(self.requests().get_sign_request(request_id))

    def _close(self, req: dict, outcome: Decision, *, actor: str) -> bool:
        """A rejection, cancel or denial closes the pending request (with its entry; inside
        the caller's transaction). False if it is no longer pending."""
        rid = req["request_id"]
        event = {"rejected": "reject", "cancelled": "reject", "expired": "expire"}.get(outcome.reason, "deny")
        try:
            self._move(rid, states.PENDING, event, conditional=True,
                       error=PolicyDenied(outcome.reason, outcome.message).to_error())
        except ConflictError:
            return False
        if outcome.reason == "cancelled":
            self.statements().set_statement_final(rid, "cancelled")
        closed = outcome.reason in ("rejected", "cancelled", "expired")
        self.recorder.write(actor, "request_closed", key_id=req["key_id"], subject=rid,
                            decision=outcome.reason if closed else "denied", reason=outcome.reason)
        return True

    # -- another node's requests --------------------------------------------------------------

    async def _forward_to_owner(self, request_id: str, method: str, *, query: dict | None = None,
                                body: dict | None = None) -> dict:
        """A sign request is kept by the node that received it. Another node answers for it by
        asking that owner, as its claims record it (pinned mutual TLS; nobody else), and checks
        the answer (:mod:`appliance.signing.forwarded`): reads (``GET``, ``query``: the long-poll), and
        decisions (``POST``, which the owner checks as its own: the decision is signed by the
        approver, whom this node authenticated). The id is checked against its exact grammar
        and the peer URL built from encoded segments, so nothing in it can leave its segment."""
        rt = self.rt
        if not is_id("request_id", request_id):
            raise ServiceError("not_found", "unknown sign request")
        segments = ("sign-requests", request_id) + (("decisions",) if method == "POST" else ())
        url = peer_path(*segments)
        if query:
            url = url.with_query({k: str(v) for k, v in query.items()})
        owner = self.replay().request_owner(request_id)
        if owner is None or owner == rt.index or owner not in rt.peers:
            raise ServiceError("not_found", "unknown sign request")  # no claim of it here: not known
        try:
            answer = await self.link.request(rt.peers[owner], method, url, json_body=body,
                                             timeout=75.0, pool=FORWARD_POOL)
        except PeerError as exc:
            if exc.status == 404 or exc.status is None:
                raise ServiceError("not_found", "unknown sign request") from None
            raise exc.service_error(code="error") from None
        return await self._checked_view(request_id, answer)

    async def _checked_view(self, request_id: str, answer: Any) -> dict:
        """The owner's answer, checked and decoded here (appliance/signing/forwarded.py)."""
        sr, payload = forwarded.checked_request(self.rt.policy, request_id, answer)
        row = self.shares.known_key(sr.request.key_id)
        try:
            dec = await self.reader.decode_request(row, sr.request, payload, sr.request.network)
        except payloads.PayloadError as exc:
            raise forwarded.refuse(f"its payload does not decode here ({exc.code})") from None
        return forwarded.rebuilt_view(answer, sr, dec)

    async def peer_get(self, request_id: str, wait: float) -> dict:
        """A request this node keeps, for a peer answering for it: its view and its payload
        (the peer checks the request's signature and the payload's hash, and decodes it itself)."""
        return self._with_payload(await self.get(request_id, wait, forward=False))

    def _with_payload(self, view: dict) -> dict:
        st = self.statements().get_statement(view["request_id"])
        return {**view, "payload": st["payload"] if st is not None else None}

    async def peer_decide(self, request_id: str, body: dict, from_index: int) -> dict:
        user = self.rt.policy.user(body.get("user")) if isinstance(body, dict) else None
        if user is None or body.get("decision") not in DECISION_ROUTES:
            raise ServiceError("bad_forward", "a forwarded decision names a user and a decision")
        return self._with_payload(await self.decide(user, request_id, body["decision"], body.get("body"),
                                                    forwarded=True))

    # -- verification ---------------------------------------------------------------------------

    def verify(self, body: dict) -> dict:
        """``POST /v1/verify``: a signature (DER, {r, s}, rsv or jws) of a ``digest`` or of a
        ``message``'s SHA-256 (exactly one of them), by ``public_key`` or ``key_id``'s key; a
        Schnorr ``{sig}`` of a ``schnorr-bip340`` or ``ed25519`` key (the key's ``scheme``, or
        the body's: appliance/signing/schnorr_verify.py)."""
        if not isinstance(body, dict):
            raise ServiceError("bad_body", "expected a JSON object")
        pub, scheme, row = body.get("public_key"), body.get("scheme"), None
        if pub is None and body.get("key_id") is not None:
            row = self.key_store().get_key(str(body["key_id"]))
            if row is None or row["status"] != "active":
                raise ServiceError("not_found", "unknown key")
            pub = row["public_key"].hex()
            if scheme is not None and scheme != row.get("scheme", ECDSA):
                raise ServiceError("scheme_mismatch", f"the key is a {row.get('scheme', ECDSA)} key, not {scheme}")
            scheme = row.get("scheme", ECDSA)
        if scheme in schnorr_verify.SCHNORR_SCHEMES or schnorr_verify.is_schnorr_signature(body.get("signature")):
            return schnorr_verify.verify(body, scheme, row)  # BIP340 or Ed25519 {sig}
        if pub is None:
            raise ServiceError("missing_public_key", "give public_key (SEC1 hex) or key_id")
        try:
            pk = bytes.fromhex(pub)
        except (TypeError, ValueError):
            raise ServiceError("bad_public_key", "public_key is not hex") from None
        has_digest, has_message = body.get("digest") is not None, body.get("message") is not None
        if has_digest == has_message:
            raise ServiceError("digest_or_message", "give exactly one of digest (32 bytes hex) and "
                               "message (its SHA-256 is verified)")
        if has_message:
            digest = hashlib.sha256(formats.read_message(body["message"], body.get("message_encoding"))).digest()
        else:
            if body.get("message_encoding") is not None:
                raise ServiceError("bad_message_encoding", "message_encoding goes with message, not digest")
            digest = formats.read_digest(body["digest"])
        sig = formats.read_signature(body.get("signature"))
        try:
            point = Point.from_bytes(pk)
        except ApplianceError:
            raise ServiceError("bad_public_key", "public_key is not a valid secp256k1 point") from None
        valid = ecdsa.verify(point, digest, sig)
        if valid and sig.recovery_id is not None:  # rsv: its v must recover this key too
            try:
                valid = ecdsa.recover_public_key(digest, sig) == point
            except ApplianceError:
                valid = False
        return {"valid": bool(valid), "low_s": sig.is_low_s, "digest": digest.hex()}
