"""Protocol messages between the parties of a job: out (each message framed for its recipient,
a direct message encrypted to the recipient's HSM transport key, one batch per peer) and in
(a batch checked against its route and sender, each frame against the job's sessions)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from appliance.cluster.health import PeerHealth
from appliance.errors import ServiceError
from appliance.ids import peer_path
from appliance.jobs.model import JobRun, PeerUnreachable
from appliance.jobs.table import JobTable
from appliance.ports import IdentitySigner, Late, PeerLink, ReplayStore, Sealer
from appliance.runtime import Runtime
from appliance.transport import Frame, PeerError, decode_batch, encode_batch, frame_context, make_frame
from appliance.tss import wire
from appliance.tss.frost.pooled import FrostPooledSignParty, PooledR1
from appliance.tss.frost.sign import FrostSignParty
from appliance.tss.frost.sign import SignR2 as FrostSignR2
from appliance.tss.group import Q
from appliance.tss.protocol import Message, MessageRejected, RoundPayload
from appliance.tss.sign import SignR2
from hsm.errors import HSMError

log = logging.getLogger("appliance.node")


class FrameExchange:
    def __init__(self, rt: Runtime, table: JobTable, health: PeerHealth, *, hsm: Late[Sealer],
                 signer: Late[IdentitySigner], replay: Late[ReplayStore], peers: PeerLink) -> None:
        self.rt = rt
        self.hsm = hsm
        self.signer = signer
        self.replay = replay
        self.link = peers
        self.table = table
        self.health = health
        self._sent_log: list[tuple[int, str, dict]] = []

    # -- out ------------------------------------------------------------------------------

    async def send(self, job: JobRun, party, out: list[Message]) -> None:
        rt = self.rt
        if out:
            rt.events.emit("round", job=job.job_id, protocol=party.PROTOCOL, round=out[0].round)
        delay = rt.faults.delay_for(party.PROTOCOL)  # test-only: a slow peer
        if delay > 0:
            await asyncio.sleep(delay)
        by_peer: dict[int, list[dict]] = {}
        for m in out:
            targets = party.others if m.recipient is None else [m.recipient]
            for t in targets:
                frame = make_frame(job.job_id, m, t, rt.peers[t].transport_key)
                by_peer.setdefault(t, []).extend(self._tamper(job, m, t, frame))
        results = await asyncio.gather(*(self._post_frames(job, p, frames) for p, frames in by_peer.items()),
                                       return_exceptions=True)
        for p, r in zip(by_peer, results):
            if isinstance(r, BaseException):
                self.health.mark_unhealthy(p)
                raise PeerUnreachable(p)

    async def _post_frames(self, job: JobRun, p: int, frames: list[dict]) -> None:
        rt = self.rt
        body = encode_batch(job.job_id, rt.index, frames)
        last: Exception | None = None
        for attempt in range(3):
            try:
                await self.link.request(rt.peers[p], "POST", peer_path("jobs", job.job_id, "messages"),
                                        data=body, content_type="application/cbor", timeout=10.0)
                return
            except PeerError as exc:
                last = exc
                rt.metrics.peer_errors.labels(rt.peers[p].id).inc()
                if exc.status is not None:
                    return  # the peer answered: it dropped or refused the batch (its own decision)
                await asyncio.sleep(0.05 * (attempt + 1))
        raise last  # type: ignore[misc]

    # -- in -------------------------------------------------------------------------------

    async def receive(self, job_id: str, from_index: int, body: bytes) -> int:
        """``POST /v1/peer/jobs/{id}/messages``: queue the frames; returns how many were dropped."""
        rt = self.rt
        try:
            bjob, sender, frames = decode_batch(body)
        except MessageRejected:
            rt.metrics.dropped.labels("malformed").inc()
            raise ServiceError("bad_batch", "malformed message batch") from None
        if bjob != job_id or sender != from_index:
            rt.metrics.dropped.labels("misrouted").inc()
            raise ServiceError("bad_batch", "batch does not match its route or sender")
        job = self.table.get(job_id)
        if job is None:
            if job_id in self.table.finished or self.replay().job_id_used(job_id, older_than=60.0):
                # a job that ran (or was refused) here, however long ago: its sessions are over
                # (one seen in the last minute may still be being accepted: its frames wait)
                rt.metrics.dropped.labels("finished").inc()
                return len(frames)
            if not self.table.early.add(job_id, from_index, frames, len(body)):  # bytes per peer
                rt.metrics.dropped.labels("overflow").inc()
                return len(frames)
            return 0
        return await self.deliver(job, from_index, frames)

    def deliver_early(self, job: JobRun) -> None:
        """Frames that arrived before the job was opened here go to it now."""
        for item in self.table.early.pop(job.job_id, []):
            _, sender, frames = item
            self.rt.spawn(self.deliver(job, sender, frames))

    async def deliver(self, job: JobRun, from_index: int, frames: list) -> int:
        rt = self.rt
        dropped = 0
        for raw in frames:
            try:
                frame = Frame.parse(raw)
                if frame.sender != from_index or frame.session_id not in job.phases:
                    raise MessageRejected("frame from another session or sender")
                if frame.recipient is not None and frame.recipient != rt.index:
                    raise MessageRejected("frame for another node")
                data = frame.data
                if frame.encrypted:
                    ctx = frame_context(job.job_id, frame.session_id, frame.protocol, frame.round,
                                        frame.sender, rt.index)
                    try:
                        data = await self.hsm().transport_decrypt_async(data, context=ctx)
                    except (HSMError, ValueError):
                        raise MessageRejected("direct message failed to decrypt") from None
                msg = Message.decode(data)
                frame.check(msg)
            except MessageRejected as exc:
                dropped += 1
                job.dropped += 1
                rt.metrics.dropped.labels("frame").inc()
                log.info("job %s: dropped a frame from %s: %s", job.job_id, from_index, exc)
                continue
            job.queues[frame.session_id].put_nowait(msg)
        return dropped

    # -- test-only fault injection (FaultPlan.tamper: "alter", "replay", "bad_partial") --------

    def _tamper(self, job: JobRun, m: Message, t: int, frame: dict) -> list[dict]:
        rt = self.rt
        tamper = rt.faults.tamper
        if not tamper:
            return [frame]
        out: list[dict] = []
        if "bad_partial" in tamper and m.protocol == "sign" and m.round == 2:
            return [make_frame(job.job_id, _bad_partial(m, self.signer()), t, rt.peers[t].transport_key)]
        if "bad_partial" in tamper and m.protocol == FrostSignParty.PROTOCOL and m.round == 2:
            return [make_frame(job.job_id, _bad_frost_share(m, self.signer()), t, rt.peers[t].transport_key)]
        if "bad_partial" in tamper and m.protocol == FrostPooledSignParty.PROTOCOL and m.round == 1:
            return [make_frame(job.job_id, _bad_frost_share(m, self.signer(), pooled=True), t,
                               rt.peers[t].transport_key)]
        if "replay" in tamper:
            # frames from an earlier job to this peer, re-sent into this job
            out += [f for (peer, jid, f) in self._sent_log[-6:] if peer == t and jid != job.job_id]
        if "alter" in tamper:
            payload = bytearray(m.payload)
            if payload:
                payload[len(payload) // 2] ^= 0x01
            altered = Message(m.version, m.session_id, m.protocol, m.round, m.sender, m.recipient,
                              bytes(payload), m.signature)
            out.append(make_frame(job.job_id, altered, t, rt.peers[t].transport_key))
            if frame["e"]:
                bad = dict(frame)
                d = bytearray(bad["d"])
                d[-1] ^= 0x01
                bad["d"] = bytes(d)
                out.append(bad)
        out.append(frame)
        if "replay" in tamper:
            out.append(frame)  # the same frame twice
        self._sent_log.append((t, job.job_id, frame))
        del self._sent_log[:-32]
        return out


def _bad_partial(m: Message, signer) -> Message:
    """Test-only tamper: this node's sign round-2 message with σ_i + 1, validly signed by it."""
    rp = wire.decode(m.payload, RoundPayload)
    body = wire.encode(SignR2((wire.decode(rp.body, SignR2).sigma + 1) % Q))
    bare = replace(m, payload=wire.encode(RoundPayload(body, rp.echo)), signature=b"")
    return replace(bare, signature=signer.sign(bare.signing_digest()))


def _bad_frost_share(m: Message, signer, *, pooled: bool = False) -> Message:
    """Test-only tamper: this node's FROST round-2 share z_i with a bit of its last byte flipped
    (another scalar, or for Ed25519 possibly one that does not decode: check 6 or 5 names the
    sender either way), validly signed by it."""
    rp = wire.decode(m.payload, RoundPayload)
    if pooled:  # the one round over pooled nonces: (setup, z_i)
        sent = wire.decode(rp.body, PooledR1)
        z = bytearray(sent.z)
        z[-1] ^= 0x01
        body = wire.encode(PooledR1(sent.setup, bytes(z)))
    else:
        z = bytearray(wire.decode(rp.body, FrostSignR2).z)
        z[-1] ^= 0x01
        body = wire.encode(FrostSignR2(bytes(z)))
    bare = replace(m, payload=wire.encode(RoundPayload(body, rp.echo)), signature=b"")
    return replace(bare, signature=signer.sign(bare.signing_digest()))
