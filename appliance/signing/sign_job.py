"""A sign job on one party: the party decodes the signed request itself (never the
coordinator's digests), checks the key's transaction rules and that the coordinator's digests
and tweaks are the ones it computed; then [presign ->] sign for each item. The coordinator's
end: every signer reports the same signatures, each verifying for what this node decoded."""

from __future__ import annotations

import asyncio
import os
import time
from functools import partial
from typing import Any

from appliance import payloads
from appliance.errors import PolicyDenied, ServiceError
from appliance.jobs.authorization import CheckedRequest, mark_request_used
from appliance.jobs.driver import SessionDriver
from appliance.jobs.kinds import Cancel
from appliance.jobs.model import MAX_SIGN_ITEMS, JobFailed, JobRun, is_frost, phase_sid
from appliance.keys.shares import ShareVault
from appliance.pools.frost_nonces import MAX_PUBLISH, FrostNoncePool
from appliance.pools.presign import PresignPool
from appliance.recorder import Recorder
from appliance.ports import IdentitySigner, KeyStore, Late, PresignatureStore, ReplayStore, Sealer
from appliance.runtime import Runtime
from appliance.policy import ECDSA, summary_hash
from appliance.policy.evaluation import shown_problem
from appliance.signing import schnorr
from appliance.signing.reading import PayloadReader, summary_text
from appliance.tss import ecdsa
from appliance.tss.frost.bip32 import derive_key
from appliance.tss.frost.keyshare import FrostKeyShare
from appliance.tss.frost.pooled import FrostPooledSignParty, PooledCommitment
from appliance.tss.frost.sign import FrostNonces, FrostSignParty, SigningRefused
from appliance.tss.group import SystemRNG
from appliance.tss.presign import Presignature, PresignParty
from appliance.tss.sign import SignParty


class SignJob:
    def __init__(self, rt: Runtime, driver: SessionDriver, shares: ShareVault, pool: PresignPool,
                 reader: PayloadReader, recorder: Recorder, *, key_store: Late[KeyStore],
                 presigs: Late[PresignatureStore], replay: Late[ReplayStore], hsm: Late[Sealer],
                 signer: Late[IdentitySigner], nonce_pool: FrostNoncePool | None = None) -> None:
        self.rt = rt
        self.nonce_pool = nonce_pool  # pooled FROST nonces (None: FROST signs in two rounds)
        self.key_store = key_store
        self.presigs = presigs
        self.replay = replay
        self.hsm = hsm
        self.signer = signer
        self.driver = driver
        self.shares = shares
        self.pool = pool
        self.reader = reader
        self.recorder = recorder

    # -- a participant's checks -----------------------------------------------------------

    async def admit(self, spec: dict, checked: CheckedRequest) -> Any:
        """The key, the digest and the signer set; then what this node itself reads in the
        signed request (decoded here, off the event loop). Returns the decoded request."""
        row = self.shares.check_holder_job(spec)
        digest = bytes.fromhex(str(spec.get("digest", "")))
        if len(digest) != 32:
            raise ServiceError("bad_job", "digest must be 32 bytes")
        if len(spec["parties"]) != row["threshold"]:
            raise ServiceError("bad_job", "signer set must have threshold members")
        sr, refuse, dig = checked.request, checked.refuse, checked.digest
        try:
            dec = await self.reader.decode_request(row, sr.request, spec.get("payload"), None)
        except payloads.PayloadError as exc:
            raise refuse(ServiceError(exc.code, exc.message), dig) from None
        shown = shown_problem(checked.approvals, (summary_hash(dec.to_dict()), dec.network))
        if shown is not None:  # a decision made over another summary than this node decodes
            raise refuse(PolicyDenied(shown.reason, shown.message), dig, checked.passkeys)
        self.recorder.write(self.rt.peers[int(spec["coordinator"])].id, "payload_decoded",
                            key_id=spec["key_id"], subject=str(spec["job_id"]), digest=dig,
                            decision="decoded", reason=summary_text(dec))
        t0 = time.perf_counter()
        ok, code, message = self.reader.tx_check(spec["key_id"], dec)
        self.rt.metrics.observe_stage("policy", time.perf_counter() - t0)
        if not ok:
            raise refuse(PolicyDenied(code, message), dig)
        if spec.get("scheme", ECDSA) != row.get("scheme", ECDSA):
            raise refuse(ServiceError("bad_job", "the job's scheme is not the key's"), dig)
        try:
            items = spec.get("items") or []
            if is_frost(row):  # the exact bytes this node signs, as it decoded them itself
                if [bytes.fromhex(str(it.get("message"))) for it in items] != \
                        [schnorr.signing_target(row["scheme"], it)[0] for it in dec.items]:
                    raise payloads.DigestMismatch("the coordinator's messages differ from this node's")
                if spec.get("commitments") is not None:
                    pooled_commitments(spec)  # well-formed, one per signer (checked again in run)
            else:
                payloads.check_claimed_digests(dec, [it.get("digest") for it in items],
                                               [int(str(it.get("tweak", "0")), 16) for it in items])
        except (payloads.DigestMismatch, AttributeError, TypeError, ValueError) as exc:
            code = getattr(exc, "code", "digest_mismatch")
            raise refuse(ServiceError(code, "the coordinator's digests or tweaks are not the ones this "
                                      "node computed from the request"), dig) from None
        return dec

    def attach(self, job: JobRun) -> None:
        spec = job.spec
        if is_frost(spec) and spec.get("commitments") is not None:
            # this signer's pooled nonce pair: spent durably here, before anything of it is used
            # (nonce_unavailable, refusing the job, if it is spent already, not this node's, or
            # published to another coordinator than this job's)
            if self.nonce_pool is None:
                raise ServiceError("nonce_unavailable", "this node keeps no pooled nonces")
            mine = {c.index: c for c in pooled_commitments(spec)}[self.rt.index]
            job.presig_taken = self.nonce_pool.take(spec["key_id"], int(spec["epoch"]), mine,
                                                    coordinator=int(spec["coordinator"]))
            return
        if not spec.get("presig_id"):
            return
        # spent durably before anything of it is used, and only if it is this key's, for this
        # signer set and epoch (a presignature of anything else is not touched)
        taken = self.presigs().take_presignature(bytes.fromhex(spec["presig_id"]), reserved=False,
                                                 key_id=spec["key_id"], signer_set=sorted(spec["parties"]),
                                                 epoch=int(spec["epoch"]))
        if taken is None:
            raise ServiceError("presignature_unavailable", "this node has no such presignature")
        job.presig_taken = taken
        self.pool.report()

    # -- this party's sessions ------------------------------------------------------------

    async def run(self, job: JobRun) -> None:
        rt, spec = self.rt, job.spec
        rng = SystemRNG()
        row = self.shares.active_key(spec["key_id"])
        share = await self.shares.load(row)
        dec = job.dec  # what this node decoded itself
        if dec is None:
            raise JobFailed(PolicyDenied("bad_request", "a sign job without a checked request"))
        items = list(dec.items)[:MAX_SIGN_ITEMS]
        if is_frost(row):
            await self._run_frost(job, share, items, rng, row.get("chain_code") or b"")
            return

        async def presign_for(i: int):
            if i == 0 and spec.get("presig_id"):
                taken = job.presig_taken
                if taken is None:
                    raise JobFailed(ServiceError("presignature_unavailable", "presignature gone"))
                try:
                    data = await self.hsm().consume_presignature_async(taken.context, taken.sealed)
                except Exception:
                    raise JobFailed(ServiceError("presignature_unavailable",
                                                 "presignature could not be unsealed")) from None
                rt.spawn(self.pool.mark_destroyed([taken.hsm_key_label]))
                return Presignature.from_bytes(data)
            sid = phase_sid(job.job_id, "presign" + ("" if i == 0 else f"/{i}"))
            party = await rt.cpu_call(partial(PresignParty, checks=rt.checks), sid, share, job.parties,
                                      self.signer(), rt.directory, rng)
            return await self.driver.drive(job, sid, party)

        presigs = await asyncio.gather(*(presign_for(i) for i in range(len(items))))
        # durably: this node signs this request once, before a partial signature leaves
        mark_request_used(self.replay(), spec, dec.facts.amounts)
        sigs = []
        for i, (it, presig) in enumerate(zip(items, presigs)):
            sid = phase_sid(job.job_id, "sign" + ("" if i == 0 else f"/{i}"))
            party = SignParty(sid, share, presig, it.digest, self.signer(), rt.directory, rng, tweak=it.tweak)
            sigs.append(await self.driver.drive(job, sid, party))
        job.result = {"signature": sigs[0].to_dict(), "signatures": [x.to_dict() for x in sigs]}

    async def _run_frost(self, job: JobRun, share: FrostKeyShare, items: list, rng, chain: bytes) -> None:
        """FROST signing, one two-round session per item: each party's nonces are made in its
        session (FrostSignParty -> new_nonces), held in memory only and consumed once by its
        round-2 share, so no crash, restart or database restore can bring one back (nothing of
        a nonce is ever stored). Each party computes the binding factors itself from the
        message it decoded and the echoed commitment list, refuses a session whose message or
        signer set differs (setup hash), checks every share against its signer's verification
        share (a bad one names its sender: ProtocolAbort -> protocol_abort with culprits) and
        verifies the aggregate. With pooled ``commitments`` in the job: ``_run_pooled``, one
        online round over HSM-sealed pooled nonces (appliance/pools/frost_nonces.py). An item with a derivation path (a ``schnorr-bip340`` key's BIP32 child,
        as this node decoded it) is signed with the child's share (``bip32.derive_key``, never
        stored) and then the b"" tap tweak, for the child's output key."""
        rt, spec = self.rt, job.spec
        if spec.get("commitments") is not None:
            await self._run_pooled(job, share, items[0], chain)
            return
        mark_request_used(self.replay(), spec, job.dec.facts.amounts)  # durably, before a share leaves
        sigs = []
        for i, it in enumerate(items):
            sid = phase_sid(job.job_id, "sign" + ("" if i == 0 else f"/{i}"))
            mine = share if it.path == "m" else derive_key(share, chain, it.path)
            message, root, _ = schnorr.signing_target(share.scheme, it)  # a P2TR input: its merkle root
            party = FrostSignParty(sid, mine, job.parties, message, self.signer(), rt.directory, rng,
                                   merkle_root=root)
            sigs.append(await self.driver.drive(job, sid, party))
        views = [{"sig": sig.hex()} for sig in sigs]
        job.result = {"signature": views[0], "signatures": views}

    async def _run_pooled(self, job: JobRun, share: FrostKeyShare, item, chain: bytes) -> None:
        """One online round over the coordinator's pooled commitments: every commitment signed
        by its signer for this key (check 7), this node's pair already spent durably (the
        coordinator's before the job left, a participant's in ``attach``), opened here with
        its HSM key destroyed; then the request marked used, then z_i leaves."""
        rt, spec = self.rt, job.spec
        commitments = pooled_commitments(spec)
        try:
            taken = job.presig_taken
            if taken is None or self.nonce_pool is None:
                raise ServiceError("nonce_unavailable", "no pooled nonce pair was taken for this job")
            nonces = taken if isinstance(taken, FrostNonces) else await self.nonce_pool.open(taken)
            job.presig_taken = None
            mine = share if item.path == "m" else derive_key(share, chain, item.path)
            message, root, _ = schnorr.signing_target(share.scheme, item)  # a P2TR input: its merkle root
            party = FrostPooledSignParty(phase_sid(job.job_id, "sign"), mine, message, commitments, nonces,
                                         self.signer(), rt.directory, SystemRNG(), merkle_root=root,
                                         published_for=share)
        except SigningRefused as exc:
            raise JobFailed(ServiceError(exc.code, str(exc))) from None
        if "frost_nonce:spent" in rt.faults.crash_points:  # test-only: a power cut right here
            os._exit(70)
        mark_request_used(self.replay(), spec, job.dec.facts.amounts)  # durably, before the share leaves
        sig = await self.driver.drive(job, phase_sid(job.job_id, "sign"), party)
        job.result = {"signature": {"sig": sig.hex()}, "signatures": [{"sig": sig.hex()}]}

    def prepare(self, job: JobRun) -> None:
        return None

    # -- the coordinator's end ------------------------------------------------------------

    async def finish(self, job: JobRun, others: list[int], cancel: Cancel) -> dict:
        """Every signer reports the same signatures, and each verifies for the digest and
        (derived) key this node computed itself."""
        rt, spec = self.rt, job.spec
        reports = {p: r["result"] for p, r in job.reports.items()}
        if job.result is not None:
            reports[rt.index] = job.result
        seen = {tuple(tuple(sorted(d.items())) for d in r.get("signatures") or [r["signature"]])
                for r in reports.values()}
        if len(seen) != 1:
            raise JobFailed(ServiceError("inconsistent_result", "the signers produced different signatures"))
        sig_dicts = [dict(t) for t in next(iter(seen))]
        if is_frost(spec):  # verified before release: coincurve (BIP340), cryptography (Ed25519)
            dec = job.dec
            if dec is None or len(dec.items) != len(sig_dicts):
                raise JobFailed(ServiceError("inconsistent_result", "wrong number of signatures"))
            for it, sig in zip(dec.items, sig_dicts):
                message, _, key = schnorr.signing_target(spec["scheme"], it)
                if not schnorr.verify(spec["scheme"], key, message, bytes.fromhex(sig.get("sig", ""))):
                    raise JobFailed(ServiceError("combined_signature_invalid",
                                                 "the combined signature does not verify"))
            return {"signature": sig_dicts[0], "signatures": sig_dicts}
        if job.dec is not None:
            checks = [(it.public_key, it.digest) for it in job.dec.items]
        else:
            key = self.key_store().get_key(spec["key_id"])
            checks = [(key["public_key"] if key else b"", bytes.fromhex(spec["digest"]))]
        if len(checks) != len(sig_dicts):
            raise JobFailed(ServiceError("inconsistent_result", "wrong number of signatures"))
        for (pk, digest), sig in zip(checks, sig_dicts):
            s = ecdsa.Signature.from_der(bytes.fromhex(sig["der"]), recovery_id=sig["recovery_id"])
            if not pk or not ecdsa.verify(pk, digest, s, strict_low_s=True):
                raise JobFailed(ServiceError("combined_signature_invalid", "the combined signature does not verify"))
        return {"signature": sig_dicts[0], "signatures": sig_dicts}

    def own_part_waits_for_opens(self, spec: dict) -> bool:
        """A pooled FROST job (one round): the coordinator's own part marks the request signed
        and sends its share at once, so it starts only once every signer accepted (spent its
        pooled pair); a signer refusing its pair then leaves the request unsigned everywhere
        and the two-round retry can sign it."""
        return is_frost(spec) and spec.get("commitments") is not None

    def abandon(self, job: JobRun) -> None:
        taken = job.presig_taken
        if taken is not None and not isinstance(taken, FrostNonces):  # a presignature or pair: its key goes
            self.rt.spawn(self.pool.destroy_keys([taken.hsm_key_label]))


def pooled_commitments(spec: dict) -> list[PooledCommitment]:
    """A FROST sign job's pooled commitments: exactly one per signer, well-formed (bad_job
    otherwise); their signatures are checked by the party (check 7)."""
    raw = spec.get("commitments")
    items = spec.get("items") or []
    if not isinstance(raw, list) or not 2 <= len(raw) <= MAX_PUBLISH or len(items) != 1:
        raise ServiceError("bad_job", "pooled commitments: one per signer, for a single item")
    try:
        out = [PooledCommitment.from_json(c) for c in raw]
    except (KeyError, TypeError, ValueError):
        raise ServiceError("bad_job", "malformed pooled commitment") from None
    if sorted(c.index for c in out) != sorted(int(p) for p in spec["parties"]):
        raise ServiceError("bad_job", "pooled commitments: exactly one per signer")
    return out
