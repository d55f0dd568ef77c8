"""Rotating a node's TLS certificate without editing every node by hand: a cluster-config
update (:class:`appliance.policy.CertUpdate`) signed by the ``policy_change`` quorum of the
policy in force, POSTed once to any node, verified and applied by every node.

Applying one: the update and its audit entry are stored in one transaction (the pins in force
are cluster.toml's with the stored updates applied, each checked again at start-up against
the policy it was signed under, so cluster.toml is never edited by hand); the peer's pin is
replaced at once (the listeners, api/app.py and the peer client, reload their TLS contexts:
new handshakes use the new pin, and a peer presenting the old certificate is refused with 403
``peer_not_pinned``); the node whose certificate it is starts serving the certificate staged
for it (``appliance tls stage``: ``tls/staged/<sha256>.crt`` and ``.key``).

Order, so that the rotated node is never cut off by a half-applied rotation: the node that
receives the update from a user checks it, then hands it to the rotated node first (which
refuses it, ``tls_key_not_staged``, without the staged key: then nothing is applied anywhere),
then applies it and forwards it to the others. When the rotated node is the one that received
it, it forwards it first and applies it last, while its peers still accept its old
certificate. A node that was down catches up from its peers at start, like policy updates.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any, Callable
from urllib.parse import urlparse

from appliance.canonical import CanonicalError
from appliance.errors import PolicyDenied, ServiceError
from appliance.cluster.peer_updates import updates_from_peers
from appliance.ids import peer_path
from appliance.policy import CertUpdate, Policy, PolicyError, verify_cert_update
from appliance.ports import CertUpdateStore, Late, PeerLink
from appliance.recorder import Recorder
from appliance.runtime import Runtime
from appliance.tls import CertificateProblem, check_leaf, fingerprint_pem, load_certificates
from appliance.tls_setup import install_staged, staged_key_problem

log = logging.getLogger("appliance.node")

ACTION = "tls_cert_change"


class CertRotation:
    def __init__(self, rt: Runtime, recorder: Recorder, policies: Callable[[], dict[str, Policy]], *,
                 updates: Late[CertUpdateStore], peers: PeerLink) -> None:
        self.rt = rt
        self.recorder = recorder
        self.policies = policies  # policy hash -> every policy this node had in force (re-checks)
        self.updates = updates
        self.link = peers
        #: called with the indices whose pin changed (the node's own: it serves a new certificate)
        self.listeners: list[Callable[[frozenset[int]], None]] = []
        self.version = 0
        self._applied: dict[int, dict] = {}
        self._syncing = False

    # -- the pins in force ----------------------------------------------------------------

    def open(self) -> None:
        """The pins in force: cluster.toml's with the stored updates applied, each verified
        again against the policy it was signed under."""
        history = self.policies()
        for body in self.updates().cert_updates():
            try:
                upd = CertUpdate.from_json(body)
                policy = history.get(upd.policy_hash)
                if policy is None:
                    raise PolicyDenied("policy_mismatch", "signed under a policy this node never had in force")
                verify_cert_update(policy, self.version, self.pinned(upd.node_id), upd)
            except (PolicyError, PolicyDenied, CanonicalError) as exc:
                raise ServiceError("bad_config", f"stored TLS certificate update {body.get('version')} does not "
                                   f"verify: {exc}") from None
            self._pin(upd)
        me = self.rt.me
        serving = self._serving()
        if serving != fingerprint_pem(me.tls_cert):
            # applied, but the node stopped before it installed its new certificate
            if install_staged(self.rt.config, fingerprint_pem(me.tls_cert)):
                log.warning("now serving the TLS certificate pinned for %s", me.id)
            else:
                log.error("%s serves certificate %s..., but its pinned certificate is %s...: peers will refuse "
                          "it", me.id, (serving or "?")[:16], fingerprint_pem(me.tls_cert)[:16])

    def _serving(self) -> str | None:
        try:
            return fingerprint_pem(self.rt.config.tls_cert.read_bytes())
        except (OSError, ValueError):
            return None

    def pinned(self, node_id: str) -> str:
        return fingerprint_pem(self.rt.peers[self.rt.index_of(node_id)].tls_cert)

    def _pin(self, upd: CertUpdate) -> int:
        rt = self.rt
        idx = rt.index_of(upd.node_id)
        new = dataclasses.replace(rt.peers[idx], tls_cert=upd.tls_cert)
        rt.peers[idx] = new
        rt.cluster = dataclasses.replace(rt.cluster, nodes=tuple(new if n.index == idx else n
                                                                 for n in rt.cluster.nodes))
        if idx == rt.index:
            rt.me = new
        self.version = upd.version
        self._applied[upd.version] = upd.to_json()
        return idx

    def view(self) -> dict:
        return {"version": self.version,
                "nodes": [{"node_id": n.id, "index": n.index, "url": n.url, "tls_cert": n.tls_cert,
                           "tls_cert_sha256": fingerprint_pem(n.tls_cert)} for n in self.rt.cluster.nodes]}

    def chain(self) -> list[dict]:
        return self.updates().cert_updates()

    # -- an update ------------------------------------------------------------------------

    async def update(self, user, body: Any, *, from_peer: int | None = None, catching_up: bool = False) -> dict:
        """A signed certificate update: checked; applied here and on every node (from a user)
        or here only (from a peer)."""
        rt = self.rt
        actor = user.id if user is not None else rt.peers[from_peer].id
        try:
            upd = CertUpdate.from_json(body)
        except (PolicyError, CanonicalError, ValueError) as exc:
            raise ServiceError("bad_cert_update", str(exc)[:300]) from None
        idx = rt.index_of(upd.node_id)  # unknown_node
        fp = upd.tls_cert_sha256
        result = {"version": upd.version, "node_id": upd.node_id, "tls_cert_sha256": fp}
        if upd.version <= self.version and self._applied.get(upd.version) == upd.to_json():
            return {**result, "applied": False}  # this very update is in force here
        policy = rt.policy
        if catching_up:  # applied by the cluster while this node was down: the policy of then
            policy = self.policies().get(upd.policy_hash, policy)
        try:
            verify_cert_update(policy, self.version, self.pinned(upd.node_id), upd)
        except PolicyDenied as exc:
            raise self.recorder.refuse(PolicyDenied(exc.code, exc.message), actor=actor, action=ACTION,
                                       subject=upd.node_id, digest=fp) from None
        self._check_certificate(upd, idx)
        if from_peer is not None:
            self._apply(upd, actor)
            return {**result, "applied": True}
        nodes: dict[str, str] = {}
        others = [p for p in rt.peers if p not in (rt.index, idx)]
        if idx != rt.index:
            nodes[upd.node_id] = await self._hand_to_rotated(upd, idx)
            self._apply(upd, actor)
            nodes[rt.me.id] = "applied"
            nodes.update(await self._forward(upd, others))
        else:
            nodes.update(await self._forward(upd, others))
            self._apply(upd, actor)
            nodes[rt.me.id] = "applied"
        return {**result, "applied": True, "nodes": nodes}

    def _check_certificate(self, upd: CertUpdate, idx: int) -> None:
        rt = self.rt
        host = urlparse(rt.peers[idx].url).hostname or ""
        try:
            check_leaf(load_certificates(upd.tls_cert, "tls_cert")[0], [host])
        except CertificateProblem as exc:
            raise ServiceError("bad_tls_certificate", str(exc)) from None
        if upd.tls_cert_sha256 == upd.previous_cert_sha256:
            raise ServiceError("bad_cert_update", f"{upd.node_id}'s certificate in force is this one already")
        if idx == rt.index:
            problem = staged_key_problem(rt.config, upd.tls_cert_sha256)
            if problem is not None:
                raise ServiceError("tls_key_not_staged", problem)

    async def _hand_to_rotated(self, upd: CertUpdate, idx: int) -> str:
        peer = self.rt.peers[idx]
        try:
            r = await self.link.request(peer, "POST", peer_path("tls-certs"), json_body=upd.to_json(), timeout=10.0)
        except Exception as exc:  # noqa: BLE001 - PeerError: relayed with the rotated node's code
            err = (getattr(exc, "body", None) or {}).get("error") or {}
            if not err:
                raise ServiceError("node_unreachable", f"{peer.id} (whose certificate this is) is unreachable: "
                                   "nothing was applied") from None
            raise ServiceError.from_error({**err, "message": f"{peer.id} refused the update: {err.get('message')}",
                                           "denied": getattr(exc, "status", None) == 403}) from None
        return "applied" if r.get("applied") else "current"

    async def _forward(self, upd: CertUpdate, others: list[int]) -> dict[str, str]:
        rt = self.rt
        res = await asyncio.gather(*(self.link.request(rt.peers[p], "POST", peer_path("tls-certs"),
                                                       json_body=upd.to_json(), timeout=10.0) for p in others),
                                   return_exceptions=True)
        out = {}
        for p, r in zip(others, res):
            if isinstance(r, BaseException):
                err = (getattr(r, "body", None) or {}).get("error") or {}
                out[rt.peers[p].id] = err.get("code", "unreachable")  # it catches up at start
            else:
                out[rt.peers[p].id] = "applied" if r.get("applied") else "current"
        return out

    def _apply(self, upd: CertUpdate, actor: str) -> None:
        rt = self.rt
        fp = upd.tls_cert_sha256
        with self.recorder.together():  # the stored update and its entry: one transaction
            self.recorder.write(actor, ACTION, subject=upd.node_id, digest=fp, decision="applied",
                                reason=f"version {upd.version}, replaces {upd.previous_cert_sha256[:16]}...")
            self.updates().add_cert_update(upd.version, upd.node_id, fp, upd.to_json())
        idx = self._pin(upd)
        if idx == rt.index and not install_staged(rt.config, fp):
            log.error("the staged certificate %s... went away before it was installed", fp[:16])
        for listener in self.listeners:
            listener(frozenset({idx}))
        log.info("TLS certificate of %s is now %s... (update %d)", upd.node_id, fp[:16], upd.version)

    # -- a node that was down ---------------------------------------------------------------

    def catch_up_soon(self) -> None:
        self.rt.spawn(self.catch_up())

    async def catch_up(self) -> None:
        """Apply, in order, the certificate updates a peer has and this node missed."""
        rt = self.rt
        if self._syncing:
            return
        self._syncing = True
        try:
            async for p, updates in updates_from_peers(rt, self.link, peer_path("tls-certs")):
                for u in updates:
                    if not isinstance(u, dict) or u.get("version") != self.version + 1:
                        continue
                    try:
                        await self.update(None, u, from_peer=p, catching_up=True)
                    except ServiceError as exc:
                        log.info("certificate update from %s not applied: %s", rt.peers[p].id, exc.code)
                        break
        finally:
            self._syncing = False
