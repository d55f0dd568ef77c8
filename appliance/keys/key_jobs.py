"""Key-change jobs on one party (keygen, import, refresh, reshare): the party's own checks,
its sessions (DKG or reshare, then aux-info), the sealed result staged until the coordinator
commits, and the coordinator's end (every party holds the same key state -> commit)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

from appliance.errors import EncodingError, ServiceError
from appliance.ids import is_id, peer_path
from appliance.jobs.authorization import mark_request_used
from appliance.jobs.driver import SessionDriver
from appliance.jobs.kinds import Cancel
from appliance.jobs.model import JobFailed, JobRun, is_frost, phase_sid
from appliance.key_import import ImportBundleError, parse_bundle, share_context
from appliance.keys import frost_keys, states
from appliance.keys.shares import ShareVault
from appliance.keys.two_phase import TwoPhase
from appliance.policy import ECDSA, SCHEMES
from appliance.pools.aux_pool import AuxPool, aux_context
from appliance.pools.presign import PresignPool
from appliance.pools.primes import PrimeSupply
from appliance.ports import (NO_PROGRESS, AuxStore, IdentitySigner, KeyChangeStore, KeyStore, Late, PeerLink, ProgressSink,
                             ReplayStore, Sealer)
from appliance.runtime import Runtime
from appliance.transport import PeerError
from appliance.tss import wire
from appliance.tss.aux import AuxParty, generate_aux_keys
from appliance.tss.dealer import ImportError_, accept_share
from appliance.tss.frost import dealer as frost_dealer
from appliance.tss.frost.dkg import FrostDkgParty
from appliance.tss.frost.keyshare import FrostKeyShare
from appliance.tss.frost.refresh import FrostRefreshParty
from appliance.tss.frost.reshare import FrostOldKey, FrostReshareConfirmed, FrostReshareParty
from appliance.tss.group import SystemRNG
from appliance.tss.keygen import KeygenParty
from appliance.storage.errors import ConflictError, DuplicateKeyError
from appliance.tss.keyshare import KeyShare, PooledAux
from appliance.tss.reshare import OldKeyInfo, ReshareConfirmed, ReshareParty
from hsm.errors import HSMError


class KeyChangeJob:
    def __init__(self, rt: Runtime, driver: SessionDriver, shares: ShareVault, primes: PrimeSupply,
                 two_phase: TwoPhase, pool: PresignPool, *, key_store: Late[KeyStore], changes: Late[KeyChangeStore],
                 replay: Late[ReplayStore], hsm: Late[Sealer], signer: Late[IdentitySigner], peers: PeerLink,
                 aux: AuxPool, aux_store: Late[AuxStore], progress: ProgressSink = NO_PROGRESS) -> None:
        self.rt = rt
        self.aux = aux  # the pooled aux-info (a keygen coordinated here takes one)
        self.aux_store = aux_store
        self.progress = progress
        self.key_store = key_store
        self.changes = changes
        self.replay = replay
        self.hsm = hsm
        self.signer = signer
        self.link = peers
        self.driver = driver
        self.shares = shares
        self.primes = primes
        self.two_phase = two_phase
        self.pool = pool

    # -- a participant's checks -----------------------------------------------------------

    async def admit(self, spec: dict, checked: Any) -> None:
        rt = self.rt
        kind = spec["kind"]
        parties = [int(p) for p in spec["parties"]]
        if kind in ("keygen", "import"):
            if self.key_store().get_key(str(spec["key_id"])) is not None:
                raise ServiceError("key_exists", "key id already used")
            if spec.get("scheme", ECDSA) not in SCHEMES:
                raise ServiceError("bad_job", "unknown scheme")
            if is_frost(spec):
                if spec.get("paillier_bits") != 0:
                    raise ServiceError("bad_job", "a FROST key has no Paillier modulus (paillier_bits 0)")
            elif spec.get("paillier_bits") not in (2048, 3072):
                raise ServiceError("bad_job", "paillier_bits must be 2048 or 3072")
            if kind == "import":  # refused here, naming the problem, before anything is stored
                await self.check_import_share(spec)
            if spec.get("aux_id") is not None:
                self.check_pooled_aux(spec)
        elif kind == "reshare":
            row = self.key_store().get_key(str(spec["key_id"]))
            senders = [int(p) for p in spec.get("senders", [])]
            new = [int(p) for p in spec.get("new_members", [])]
            bits_ok = spec.get("paillier_bits") == 0 if is_frost(spec) else spec.get("paillier_bits") in (2048, 3072)
            if sorted(set(senders) | set(new)) != sorted(parties) or not bits_ok:
                raise ServiceError("bad_job", "malformed reshare")
            if row is not None and row.get("scheme", ECDSA) != spec.get("scheme", ECDSA):
                raise ServiceError("bad_job", "the job's scheme is not the key's")
            if rt.index in senders:
                if row is None or row["status"] != "active" or int(spec.get("epoch", -1)) != row["epoch"]:
                    raise ServiceError("epoch_mismatch", "this node does not hold that key at that epoch")
            elif row is not None and row["status"] == "active" and row["epoch"] == int(spec.get("epoch", -1)):
                raise ServiceError("bad_job", "a holder of the key must be a sender")
        else:  # refresh
            row = self.shares.check_holder_job(spec)
            if row.get("scheme", ECDSA) != spec.get("scheme", ECDSA):
                raise ServiceError("bad_job", "the job's scheme is not the key's")
        if kind in ("refresh", "reshare") and self.two_phase.key_change_running(str(spec["key_id"])):
            raise ServiceError("key_change_in_progress", f"{rt.me.id}: another change of this key is under way")

    def check_pooled_aux(self, spec: dict) -> dict:
        """The coordinator's choice of pooled aux-info for a keygen, checked here: an ECDSA
        keygen; this node holds that aux-info, made for exactly the job's committee and modulus
        size, with room for another key. Its stored row."""
        me = self.rt.me.id
        aux_id = spec.get("aux_id")
        if spec.get("kind") != "keygen" or is_frost(spec) or not is_id("aux_id", aux_id):
            raise ServiceError("bad_job", "only an ECDSA keygen takes a pooled aux-info")
        row = self.aux_store().get_aux(aux_id)
        if row is None:
            raise ServiceError("aux_unknown", f"{me}: holds no aux-info {aux_id}")
        if row["parties"] != sorted(int(p) for p in spec["parties"]):
            raise ServiceError("aux_wrong_committee", f"{me}: aux-info {aux_id} was made for nodes "
                               f"{', '.join(self.rt.node_ids(row['parties']))}, not this key's")
        if row["bits"] != spec.get("paillier_bits"):
            raise ServiceError("aux_wrong_committee", f"{me}: aux-info {aux_id} has {row['bits']}-bit moduli, "
                               f"the key asks for {spec.get('paillier_bits')}")
        if row["keys_bound"] >= self.aux.cap:
            raise ServiceError("aux_exhausted", f"{me}: aux-info {aux_id} serves {row['keys_bound']} keys "
                               f"already (at most {self.aux.cap})")
        return row

    def attach(self, job: JobRun) -> None:
        return None

    # -- this party's sessions ------------------------------------------------------------

    async def run(self, job: JobRun) -> None:
        rt, spec = self.rt, job.spec
        kind = spec["kind"]
        rng = SystemRNG()
        deadline = time.monotonic() + rt.config.job_timeout_s
        mark_request_used(self.replay(), spec)  # a key change runs once per signed request
        if kind == "keygen" and is_frost(spec):
            await self._frost_keygen(job, rng)
        elif kind == "keygen":
            sid = phase_sid(job.job_id, "keygen")
            # the pooled aux-info's fingerprint goes into the DKG's setup hash: parties given
            # different aux-info stop at the round-1 echo instead of making an unusable key
            aux_fp = self._pooled_row(spec)["fingerprint"] if spec.get("aux_id") is not None else None
            party = KeygenParty(sid, rt.index, job.parties, int(spec["threshold"]), self.signer(), rt.directory, rng,
                                aux_fingerprint=aux_fp)
            share = await self.driver.drive(job, sid, party)
            if spec.get("aux_id") is not None:
                await self._bind_pooled_and_stage(job, share)
            else:
                await self._aux_and_stage(job, share, rng, deadline)
        elif kind == "import" and is_frost(spec):
            await self._frost_import(job)
        elif kind == "import":
            # the share was decrypted in the HSM and checked against the dealer's commitments
            # when the job was accepted; now aux-info, as after a DKG
            share = await self.check_import_share(spec)
            await self._aux_and_stage(job, share, rng, deadline)
        elif kind == "refresh" and is_frost(spec):
            await self._frost_refresh(job, rng)
        elif kind == "refresh":
            row = self.shares.active_key(spec["key_id"])
            share = await self.shares.load(row)
            new = await self._aux(job, share, row["paillier_bits"], rng, deadline, refresh=True)
            if new.public_key != share.public_key:
                raise JobFailed(ServiceError("inconsistent_result", "refresh changed the public key"))
            blob = await self.shares.seal(spec["key_id"], new)
            self.key_store().put_pending_share(spec["key_id"], new.epoch, blob)
            job.result = _result(new)
        elif is_frost(spec):
            await self._frost_reshare(job, rng)
        else:
            await self._reshare(job, rng, deadline)

    async def _frost_keygen(self, job: JobRun, rng) -> None:
        """The FROST DKG (FrostDkgParty: Feldman + proofs of knowledge, echo broadcast, signed
        frames, shares encrypted to each recipient's HSM transport key); the FrostKeyShare
        sealed and staged as a pending key, committed two-phase like an ECDSA key. No aux-info."""
        rt, spec = self.rt, job.spec
        sid = phase_sid(job.job_id, "keygen")
        party = FrostDkgParty(sid, rt.index, job.parties, int(spec["threshold"]), spec["scheme"], self.signer(),
                              rt.directory, rng)
        share = await self.driver.drive(job, sid, party)
        blob = await self.shares.seal(spec["key_id"], share)
        self.key_store().put_pending_key(spec["key_id"], share.group_public_key, share.threshold,
                                         share.participants, share.epoch, 0, blob, frost_keys.chain_code(share),
                                         scheme=share.scheme)
        job.result = _frost_result(share)

    async def _frost_import(self, job: JobRun) -> None:
        """An imported FROST key: this node's share, decrypted in its HSM and checked against
        the dealer's commitments (``check_import_share``, again: it was checked when the job
        was accepted), sealed and staged as a pending key with the bundle's chain code,
        committed two-phase like a DKG key. No aux-info, no protocol session."""
        spec = job.spec
        share, chain = await self._checked_frost_import(spec)
        blob = await self.shares.seal(spec["key_id"], share)
        self.key_store().put_pending_key(spec["key_id"], share.group_public_key, share.threshold,
                                         share.participants, share.epoch, 0, blob, chain, scheme=share.scheme)
        job.result = _frost_result(share)

    async def _frost_refresh(self, job: JobRun, rng) -> None:
        """FrostRefreshParty (zero-sharing, every holder): the new share of epoch + 1, checked
        to be of the same group key as this node's record, sealed and staged until the
        coordinator commits (the old epoch's share is destroyed at finalize). No aux-info."""
        rt, spec = self.rt, job.spec
        row = self.shares.active_key(spec["key_id"])
        share = await self.shares.load(row)
        sid = phase_sid(job.job_id, "refresh")
        party = FrostRefreshParty(sid, share, self.signer(), rt.directory, rng)
        new = await self.driver.drive(job, sid, party, phase="refresh")
        if new.group_public_key != row["public_key"] or new.epoch != row["epoch"] + 1:
            raise JobFailed(ServiceError("inconsistent_result", "refresh changed the public key"))
        blob = await self.shares.seal(spec["key_id"], new)
        self.key_store().put_pending_share(spec["key_id"], new.epoch, blob)
        job.result = _frost_result(new)

    async def _frost_reshare(self, job: JobRun, rng) -> None:
        """FrostReshareParty: the senders deal their Lagrange-weighted shares to the new
        committee, whose members prove their new shares; a new member checks the result is of
        the key the job describes (confirmed by the holders first if it does not hold it) and
        stages it (with the key's chain code, for a newcomer) until the coordinator commits."""
        rt, spec = self.rt, job.spec
        try:
            old = wire.decode(bytes.fromhex(spec["old_info"]), FrostOldKey)
            chain = bytes.fromhex(str(spec.get("chain_code", "")))
        except (EncodingError, TypeError, ValueError):
            raise JobFailed(ServiceError("bad_job", "malformed reshare")) from None
        senders, new_members = list(spec["senders"]), list(spec["new_members"])
        share = None
        if rt.index in senders:
            row = self.shares.active_key(spec["key_id"])
            share = await self.shares.load(row)
            if frost_keys.public_state(share, row["chain_code"] or b"") != _old_state_hash(spec):
                raise JobFailed(ServiceError("old_state_mismatch", f"{rt.me.id}: the job describes another "
                                             "public state of this key than this node holds"))
        else:
            await self._confirm_old_state(spec, old, senders)
        sid = phase_sid(job.job_id, "reshare")
        party = FrostReshareParty(sid, rt.index, old, senders, new_members, int(spec["threshold"]),
                                  self.signer(), rt.directory, rng, share=share)
        out = await self.driver.drive(job, sid, party)
        if isinstance(out, FrostReshareConfirmed):
            job.result = {"public_key": frost_keys.shown_public_key(old.scheme, out.group_public_key).hex(),
                          "confirmed": True}
            return
        if out.group_public_key != old.group_public_key:
            raise JobFailed(ServiceError("inconsistent_result", "reshare changed the public key"))
        blob = await self.shares.seal(spec["key_id"], out)
        if self.key_store().get_key(spec["key_id"]) is None:
            self.key_store().put_pending_key(spec["key_id"], out.group_public_key, out.threshold,
                                             out.participants, out.epoch, 0, blob, chain, scheme=out.scheme)
        else:
            self.key_store().put_pending_share(spec["key_id"], out.epoch, blob)
        job.result = _frost_result(out)

    async def _aux(self, job: JobRun, share: KeyShare, bits: int, rng, deadline: float, *,
                   refresh: bool = False) -> KeyShare:
        rt = self.rt

        def primes_progress(done: int, total: int, detail: str | None) -> None:
            self.progress.report(job.spec, "primes", done, total, detail)

        primes = await self.primes.take(bits, primes_progress)
        self.progress.report(job.spec, "aux_keys", 0, 1, f"Paillier and ring-Pedersen, {bits} bits")
        keys = await rt.cpu_call(generate_aux_keys, bits, primes, rng)
        self.progress.report(job.spec, "aux_keys", 1, 1, f"Paillier and ring-Pedersen, {bits} bits")
        sid = phase_sid(job.job_id, "aux")
        party = AuxParty(sid, share, keys, self.signer(), rt.directory, rng, refresh=refresh)
        return await self.driver.drive(job, sid, party, first_deadline=deadline,
                                       phase="refresh" if refresh else "aux")

    async def _aux_and_stage(self, job: JobRun, share: KeyShare, rng, deadline: float) -> None:
        """Aux-info for a fresh share (after a DKG or an import), then seal and stage it
        until the coordinator commits the key."""
        spec = job.spec
        bits = int(spec["paillier_bits"])
        share = await self._aux(job, share, bits, rng, deadline)
        blob = await self.shares.seal(spec["key_id"], share)
        self.key_store().put_pending_key(spec["key_id"], share.public_key, share.threshold,
                                         share.participants, share.epoch, bits, blob, share.chain_code)
        job.result = _result(share)

    async def _bind_pooled_and_stage(self, job: JobRun, share: KeyShare) -> None:
        """The DKG's share joined with the pooled aux-info the job names (checked again: it may
        have filled up since the job was accepted), sealed and staged; the key is counted
        against the aux-info in the same transaction (two keys never pass its cap together)."""
        spec = job.spec
        row = self._pooled_row(spec)
        try:
            pooled = PooledAux.from_bytes(await self.hsm().unseal_async(aux_context(row["aux_id"]), row["sealed"]))
            if pooled.fingerprint() != bytes(row["fingerprint"]):
                raise EncodingError("the sealed aux-info is not the one its row describes")
            share = pooled.bind(share)
        except (HSMError, EncodingError):
            raise JobFailed(ServiceError("aux_unusable", f"{self.rt.me.id}: aux-info {row['aux_id']} does not "
                                         "unseal or does not fit this share")) from None
        bits = int(spec["paillier_bits"])
        blob = await self.shares.seal(spec["key_id"], share)
        try:
            self.key_store().put_pending_key(spec["key_id"], share.public_key, share.threshold, share.participants,
                                             share.epoch, bits, blob, share.chain_code, aux=(row["aux_id"], self.aux.cap))
        except DuplicateKeyError:
            raise JobFailed(ServiceError("key_exists", f"{self.rt.me.id}: key id {spec['key_id']} already used")) from None
        except ConflictError:
            raise JobFailed(ServiceError("aux_exhausted", f"{self.rt.me.id}: aux-info {row['aux_id']} is full")) from None
        job.result = _result(share)

    def _pooled_row(self, spec: dict) -> dict:
        """The job's pooled aux-info row, checked again (it may have filled up since the job
        was accepted)."""
        try:
            return self.check_pooled_aux(spec)
        except ServiceError as exc:
            raise JobFailed(exc) from None

    async def _reshare(self, job: JobRun, rng, deadline: float) -> None:
        rt, spec = self.rt, job.spec
        old = wire.decode(bytes.fromhex(spec["old_info"]), OldKeyInfo)
        senders, new_members = list(spec["senders"]), list(spec["new_members"])
        share = None
        if rt.index in senders:
            share = await self.shares.load(self.shares.active_key(spec["key_id"]))
        else:
            await self._confirm_old_state(spec, old, senders)
        sid = phase_sid(job.job_id, "reshare")
        party = ReshareParty(sid, rt.index, old, senders, new_members, int(spec["threshold"]),
                             self.signer(), rt.directory, rng, share=share)
        out = await self.driver.drive(job, sid, party)
        if isinstance(out, ReshareConfirmed):
            job.result = {"public_key": out.public_key.to_bytes().hex(), "confirmed": True}
            return
        bits = int(spec["paillier_bits"])
        new = await self._aux(job, out, bits, rng, deadline)
        blob = await self.shares.seal(spec["key_id"], new)
        if self.key_store().get_key(spec["key_id"]) is None:
            self.key_store().put_pending_key(spec["key_id"], new.public_key, new.threshold,
                                             new.participants, new.epoch, bits, blob, new.chain_code)
        else:
            self.key_store().put_pending_share(spec["key_id"], new.epoch, blob)
        job.result = _result(new)

    async def _confirm_old_state(self, spec: dict, old, senders: list[int]) -> None:
        """A node that does not hold the key takes its public state (public key, threshold,
        public shares, chain code) from the coordinator's job description. Before it accepts a
        share of that key it asks every other node (pinned mutual TLS) what it holds: at least the
        old threshold of holders, every sender among them, must report exactly this state at this
        epoch, and no holder another one. (Inside the protocol the same state is hashed into the
        round-1 setup that every party signs and echoes.)"""
        rt = self.rt
        key_id, epoch = str(spec["key_id"]), int(spec["epoch"])
        want = _old_state_hash(spec)

        async def ask(p: int):
            try:
                return p, await self.link.request(rt.peers[p], "GET", peer_path("keys", key_id), timeout=10.0)
            except PeerError:
                return p, None

        views = await asyncio.gather(*(ask(n.index) for n in rt.cluster.nodes if n.index != rt.index))
        held = [(p, v) for p, v in views if isinstance(v, dict) and v.get("status") == "active"
                and v.get("epoch") == epoch]
        agree = [p for p, v in held if v.get("public_state") == want]
        disagree = [p for p, v in held if v.get("public_state") != want]
        if disagree:
            raise JobFailed(ServiceError("old_state_mismatch",
                                         f"{rt.me.id}: {', '.join(rt.node_ids(disagree))} hold this key at epoch "
                                         f"{epoch} with another public state than the job describes"))
        if len(agree) < old.threshold or not set(senders) <= set(agree):
            raise JobFailed(ServiceError("old_state_unconfirmed",
                                         f"{rt.me.id}: only {len(agree)} holders confirm the key's public state "
                                         f"(needs {old.threshold}, every sender among them)"))

    async def check_import_share(self, spec: dict) -> KeyShare | FrostKeyShare:
        """Decrypt this node's share of an import bundle inside the HSM and check it against the
        dealer's commitments; the KeyShare (no aux yet) or FrostKeyShare, or a ServiceError
        naming the problem."""
        return (await self._import_share(spec))[0]

    async def _checked_frost_import(self, spec: dict) -> tuple[FrostKeyShare, bytes]:
        share, bundle = await self._import_share(spec)
        if not isinstance(share, FrostKeyShare):
            raise JobFailed(ServiceError("bad_job", "the job's scheme is not the bundle's"))
        return share, bundle.chain_code

    async def _import_share(self, spec: dict):
        rt = self.rt
        try:
            bundle = parse_bundle(spec.get("bundle"), rt.cluster)
        except ImportBundleError as exc:
            raise ServiceError("bad_import_bundle", f"{rt.me.id}: {exc}") from None
        if bundle.parties != sorted(int(p) for p in spec["parties"]) or bundle.threshold != int(spec["threshold"]):
            raise ServiceError("bad_import_bundle", f"{rt.me.id}: the job's parties or threshold differ "
                               "from the bundle's")
        if bundle.scheme != spec.get("scheme", ECDSA):
            raise ServiceError("bad_import_bundle", f"{rt.me.id}: the job's scheme ({spec.get('scheme', ECDSA)}) "
                               f"is not the bundle's ({bundle.scheme})")
        env = bundle.envelopes.get(rt.me.id)
        if env is None:
            raise ServiceError("bad_import_bundle", f"{rt.me.id}: the bundle has no share for this node")
        try:
            data = await self.hsm().transport_decrypt_async(env, context=share_context(bundle.import_id, rt.me.id))
        except (HSMError, ValueError):
            raise ServiceError("import_share_unreadable",
                               f"{rt.me.id}: its share does not decrypt with this node's HSM transport key "
                               "(encrypted to another key, or altered)") from None
        if len(data) != 32:
            raise ServiceError("import_share_rejected", f"{rt.me.id}: the share is not 32 bytes")
        try:
            if bundle.is_frost:
                share = await rt.cpu_call(frost_dealer.accept_share, bundle.scheme, bundle.import_id, rt.index,
                                          bundle.parties, bundle.threshold, bundle.commitments, data)
            else:
                share = await rt.cpu_call(accept_share, bundle.import_id, rt.index, bundle.parties,
                                          bundle.threshold, bundle.points(), bundle.chain_code,
                                          int.from_bytes(data, "big"))
        except ImportError_ as exc:
            raise ServiceError("import_share_rejected", f"{rt.me.id}: {exc}") from None
        finally:
            del data
        return share, bundle

    def prepare(self, job: JobRun) -> None:
        self.two_phase.prepare(job)

    # -- the coordinator's end ------------------------------------------------------------

    async def finish(self, job: JobRun, others: list[int], cancel: Cancel) -> dict:
        rt, spec = self.rt, job.spec
        reports = {p: r["result"] for p, r in job.reports.items()}
        if job.result is not None:
            reports[rt.index] = job.result
        kind = spec["kind"]
        if kind == "reshare":
            reports = {p: r for p, r in reports.items() if not r.get("confirmed")}
        fps = {r.get("fingerprint") for r in reports.values()}
        pks = {r.get("public_key") for r in reports.values()}
        if len(fps) != 1 or len(pks) != 1:
            err = ServiceError("inconsistent_result", "the parties ended with different key states")
            await cancel(err)
            raise JobFailed(err)
        pk, fingerprint = pks.pop(), fps.pop()
        new_epoch = int(spec["epoch"]) + 1 if kind in ("refresh", "reshare") else \
            int(next(iter(reports.values()))["epoch"])
        # two phases: commit (new epoch in use, old shares kept) -> once every party
        # confirmed, finalize (old shares and presignatures destroyed)
        commit = await self.two_phase.commit_everywhere(job.job_id, spec["key_id"], kind, new_epoch, job.parties,
                                                        fingerprint=fingerprint)
        if kind == "reshare":
            return {"key_id": spec["key_id"], "public_key": pk, "threshold": spec["threshold"],
                    "nodes": rt.node_ids(spec["new_members"]), "epoch": new_epoch, **commit}
        key = self.key_store().get_key(spec["key_id"])
        if key is not None and key["status"] == "active":
            out = {"key": self.shares.key_view(key), "key_id": spec["key_id"], "public_key": pk,
                   "epoch": key["epoch"], **commit}
        else:
            out = {"key_id": spec["key_id"], "public_key": pk, "threshold": spec["threshold"],
                   "nodes": rt.node_ids(spec["parties"]), "epoch": new_epoch, **commit}
        if kind == "import":
            out["recommendation"] = ("refresh this key now (POST /v1/keys/{key_id}/refresh): the "
                                     "dealer's machine saw the whole private key").replace("{key_id}", spec["key_id"])
        return out

    def own_part_waits_for_opens(self, spec: dict) -> bool:
        return False

    def abandon(self, job: JobRun) -> None:
        """Undo what a key change that will not finish left in the store."""
        rt, spec = self.rt, job.spec
        labels: list[str] = []
        p = self.changes().pending_for_job(job.job_id)
        if p is not None:
            if p["state"] == states.PREPARED:
                self.two_phase.abandon_prepared(job.job_id, p["state"])
            return
        other = self.changes().pending(spec["key_id"])
        if other is None or other["state"] != states.PREPARED:
            # stopped before it prepared: drop what it may have stored
            row = self.key_store().get_key(spec["key_id"])
            if row is not None and row["status"] == "pending":
                labels = self.key_store().abandon_key(spec["key_id"])
            elif row is not None:
                self.key_store().drop_pending_share(spec["key_id"])
        if labels:
            rt.spawn(self.pool.destroy_keys(labels))


def _old_state_hash(spec: dict) -> str:
    """The hash of the public state a reshare job describes, as holders report theirs
    (``KeyService.peer_key_state``): the old key info, and a FROST key's chain code with it."""
    info = bytes.fromhex(spec["old_info"])
    if is_frost(spec):
        return hashlib.sha256(info + bytes.fromhex(str(spec.get("chain_code", "")))).hexdigest()
    return hashlib.sha256(info).hexdigest()


def _frost_result(share: FrostKeyShare) -> dict:
    return {"public_key": frost_keys.shown_public_key(share.scheme, share.group_public_key).hex(),
            "epoch": share.epoch, "fingerprint": share.public_fingerprint().hex()}


def _result(share: KeyShare) -> dict:
    return {"public_key": share.public_key.hex(), "epoch": share.epoch,
            "fingerprint": share.public_fingerprint().hex()}

