"""The FROST nonce pool of a node: round one of RFC 9591 made ahead of time, so that a sign job
of a FROST key is one online round (``appliance.tss.frost.pooled``).

Per (key, epoch) each holder keeps ``[frost] pool`` nonce pairs of its own:

* made here (``make``): each pair sealed under its OWN new HSM key object
  (``appliance/nonce/<id>``; AAD: node, key, epoch, kind ``frost_nonce``, id, D||E, owner),
  its commitment signed with this node's identity key and published to the other holders
  (the ``frost_nonces`` job, :mod:`appliance.pools.frost_nonce_job`);
* others' commitments are stored only once their signature checks (``accept``);
* spent (``spend``) only as a sign job's signer, exactly as a presignature: the row is marked
  spent durably first, then the blob is opened and its HSM key destroyed in the same HSM call,
  and only then is z_i computed and sent. A pair whose row is spent is refused
  (``nonce_unavailable``, "this nonce pair is spent"); a pair whose HSM key is gone -- a
  database restored from a copy older than the spend -- is refused with
  ``nonce_unavailable``, "this nonce pair's HSM key is gone ...". Neither is ever used.
* a coordinator picks one pooled commitment per signer (``pick``), marked handed out
  durably before the job leaves; with none for some signer, the job falls back to the
  two-round session whose nonces are never stored.

Refresh, reshare and delete discard the pools of old epochs with the presignatures
(``NodeStore.finalize_key`` / ``commit``); their HSM keys are destroyed with the
presignatures' (``PresignPool.destroy_keys``, and at start-up).
"""

from __future__ import annotations

import logging

from appliance.config_schema import FROST_POOL_MAX
from appliance.errors import EncodingError, ServiceError
from appliance.jobs.model import is_frost
from appliance.ports import FrostNonceStore, KeyStore, Late, Sealer
from appliance.runtime import Runtime
from appliance.sealed import SealContext, nonce_key_label
from appliance.storage.frost_nonces import FrostNonceUnavailable, PooledRow, TakenNonce
from appliance.tss.frost import pooled
from appliance.tss.frost.keyshare import FrostKeyShare
from appliance.tss.frost.sign import FrostNonces, new_nonces
from appliance.tss.group import SystemRNG
from hsm.errors import HSMKeyNotFoundError

log = logging.getLogger("appliance.node")

#: the pooled commitments one frost_nonces job publishes per holder (a body bound)
MAX_PUBLISH = 64
#: available commitments a coordinator keeps per (key, epoch, other holder): the [frost] pool's bound
MAX_HELD = FROST_POOL_MAX


def _pc(r: PooledRow) -> pooled.PooledCommitment:
    return pooled.PooledCommitment(r.party, r.nonce_id, r.D, r.E, r.signature)


class FrostNoncePool:
    def __init__(self, rt: Runtime, *, nonces: Late[FrostNonceStore], hsm: Late[Sealer],
                 key_store: Late[KeyStore] | None = None) -> None:
        self.rt = rt
        self.nonces = nonces
        self.hsm = hsm
        self.key_store = key_store  # for the gauge (None: no gauge)

    def on_change(self) -> None:
        """The gauge: this node's unspent pairs per active FROST key at its current epoch."""
        if self.key_store is None or self.key_store.value is None or self.nonces.value is None:
            return
        try:
            counts = {row["key_id"]: self.nonces().count_frost_nonces(row["key_id"], row["epoch"])
                      for row in self.key_store().list_keys("active") if is_frost(row)}
        except Exception:  # pragma: no cover - a metric never breaks a job
            return
        self.rt.metrics.set_frost_nonce_counts(counts)

    async def make(self, share: FrostKeyShare, key_id: str, epoch: int, n: int, *,
                   holder: int | None = None) -> list[pooled.PooledCommitment]:
        """``n`` new nonce pairs of this node, sealed (own HSM key each) and stored for the
        coordinator ``holder`` (default: this node); their commitments, signed by this node's
        identity key."""
        holder = share.index if holder is None else holder
        out = []
        rng = SystemRNG()
        for _ in range(min(n, MAX_PUBLISH)):
            nonces = new_nonces(share, rng)
            ctx = SealContext.frost_nonce(key_id, epoch, nonces.nonce_id, nonces.D + nonces.E, share.index)
            blob = await self.hsm().seal_presignature_async(ctx, nonces.to_bytes())
            digest = pooled.commitment_digest(share.public_fingerprint(), share.index, nonces.nonce_id,
                                              nonces.D, nonces.E)
            sig = await self.hsm().sign_digest_async(digest)
            self.nonces().add_frost_nonce(nonces.nonce_id, key_id=key_id, epoch=epoch, party=share.index,
                                          holder=holder, D=nonces.D, E=nonces.E, signature=sig, sealed=blob,
                                          hsm_key_label=nonce_key_label(nonces.nonce_id))
            out.append(pooled.PooledCommitment(share.index, nonces.nonce_id, nonces.D, nonces.E, sig))
        self.on_change()
        return out

    def accept(self, share: FrostKeyShare, key_id: str, epoch: int, sender: int,
               commitments: list[pooled.PooledCommitment]) -> int:
        """Store ``sender``'s published commitments, each checked (signed by it for this share)."""
        if sender == share.index or sender not in share.participants:
            raise ServiceError("bad_job", "pooled commitments from a party that is not another holder")
        if len(commitments) > MAX_PUBLISH:
            raise ServiceError("bad_job", f"at most {MAX_PUBLISH} pooled commitments at once")
        G = share.suite.G
        for c in commitments:
            if c.index != sender or not pooled.is_signed(share, c, self.rt.directory):
                raise ServiceError("signing_refused",
                                   f"check 7: party {c.index}'s pooled commitment is not signed by it for this key")
            try:  # checked on receipt (RFC 9591 check 4 again when a signer uses it)
                G.deserialize_element(c.D), G.deserialize_element(c.E)
            except EncodingError:
                raise ServiceError("bad_job", f"party {c.index}'s pooled commitment is not two valid "
                                   "group elements") from None
        held = self.nonces().count_frost_commitments(key_id, epoch).get(sender, 0)
        if held + len(commitments) > MAX_HELD:
            raise ServiceError("nonce_pool_full", f"{self.rt.peers[sender].id} already has {held} pooled "
                               "commitments here for this key")
        n = self.nonces().add_frost_commitments(
            key_id, epoch, [PooledRow(c.index, c.nonce_id, c.D, c.E, c.signature) for c in commitments])
        self.on_change()
        return n

    def pick(self, key_id: str, epoch: int, parties: list[int]) -> list[pooled.PooledCommitment] | None:
        """The coordinator: one pooled commitment per signer, handed out durably; None if any
        signer has none here (then the job runs the two-round session)."""
        rows = self.nonces().pick_frost_commitments(key_id, epoch, self.rt.index, parties)
        if rows is None:
            return None
        self.on_change()
        return [_pc(r) for r in rows]

    def take(self, key_id: str, epoch: int, mine: pooled.PooledCommitment, *, coordinator: int) -> TakenNonce:
        """Mark this node's pair for ``mine`` spent, durably, in a job ``coordinator`` runs
        (``nonce_unavailable`` if it is spent already, unknown, not of this key, epoch and
        node, or published to another coordinator: each pair goes to one)."""
        try:
            taken = self.nonces().take_frost_nonce(mine.nonce_id, key_id=key_id, epoch=epoch, party=self.rt.index,
                                                   D=mine.D, E=mine.E, holder=coordinator)
        except FrostNonceUnavailable as exc:
            raise ServiceError(exc.code, str(exc)) from None
        self.on_change()
        return taken

    async def open(self, taken: TakenNonce) -> FrostNonces:
        """Open a taken pair and destroy its HSM key in the same call (``nonce_unavailable``
        if the key is gone: spent before, the row coming from an older database)."""
        try:
            data = await self.hsm().consume_presignature_async(taken.context, taken.sealed)
        except HSMKeyNotFoundError:
            raise ServiceError("nonce_unavailable", "this nonce pair's HSM key is gone: it was spent before "
                               "(a database restored from an older copy?); it is never used") from None
        self.nonces().mark_frost_nonce_keys_destroyed([taken.hsm_key_label])
        nonces = FrostNonces.from_bytes(data)
        if (nonces.nonce_id, nonces.D, nonces.E, nonces.index) != (taken.nonce_id, taken.D, taken.E, taken.party):
            raise ServiceError("nonce_unavailable", "the sealed nonce pair is not the one its row names")
        return nonces

    async def spend(self, key_id: str, epoch: int, mine: pooled.PooledCommitment) -> FrostNonces:
        """This node's pooled pair for ``mine``, in a job it coordinates itself: durably spent,
        then opened with its HSM key destroyed (:meth:`take`, :meth:`open`)."""
        return await self.open(self.take(key_id, epoch, mine, coordinator=self.rt.index))

    async def for_job(self, key_id: str, epoch: int, signers: list[int]) -> tuple[list[dict], FrostNonces] | None:
        """The coordinator's part before a FROST sign job leaves: one pooled commitment per
        signer (handed out durably) and its own pair spent and opened; None -- the job then
        runs the two-round session -- if a signer has none here or its own pair cannot be
        used (spent, or its HSM key gone after a restore: logged, never used)."""
        if self.rt.index not in signers:
            return None
        chosen = self.pick(key_id, epoch, signers)
        if chosen is None:
            return None
        mine = next(c for c in chosen if c.index == self.rt.index)
        try:
            nonces = await self.spend(key_id, epoch, mine)
        except ServiceError as exc:
            log.warning("pooled nonce pair %s not used: %s", mine.nonce_id.hex(), exc.message)
            return None
        return [c.to_json() for c in chosen], nonces

    def discard(self, commitments: list[pooled.PooledCommitment]) -> list[str]:
        """Pairs whose publication failed: spent unused; returns their HSM key labels."""
        labels = self.nonces().discard_frost_nonce_ids([c.nonce_id for c in commitments])
        self.on_change()
        return labels

    def counts(self, key_id: str, epoch: int) -> dict[str, int]:
        """Pooled commitments usable by a coordinator here: its own and each other holder's."""
        out = {self.rt.me.id: self.nonces().count_frost_nonces(key_id, epoch, unpicked=True)}
        for party, n in self.nonces().count_frost_commitments(key_id, epoch).items():
            out[self.rt.peers[party].id] = n
        return out


__all__ = ["MAX_PUBLISH", "FrostNoncePool"]
