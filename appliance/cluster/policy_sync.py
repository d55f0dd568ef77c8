"""The cluster policy in force: the base policy (node.toml's file, else cluster.toml's tables)
plus the updates stored here, each verified against the one before. A new update signed by the
current policy's ``policy_change`` quorum is applied here at once and forwarded to every peer;
a node that missed updates (while it was down) catches up from its peers."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from appliance.canonical import CanonicalError
from appliance.config import ConfigError
from appliance.errors import PolicyDenied, ServiceError
from appliance.cluster.peer_updates import updates_from_peers
from appliance.ids import peer_path
from appliance.ports import Late, PeerLink, PolicyUpdateStore
from appliance.policy import Policy, PolicyError, PolicyUpdate, apply_updates, verify_policy_update
from appliance.recorder import Recorder
from appliance.runtime import Runtime

log = logging.getLogger("appliance.node")


def base_policy(config) -> Policy:
    """The policy file named in node.toml, else the policy tables of cluster.toml; a policy
    that does not load is a :class:`ConfigError` naming the file, the table and the key (or
    the rule nobody can meet)."""
    if config.policy_file is not None:
        try:
            return Policy.load(config.policy_file)  # its errors name the file
        except PolicyError as exc:
            raise ConfigError(str(exc)) from None
    try:
        return Policy.from_mapping(config.cluster_mapping)
    except PolicyError as exc:
        source = getattr(config, "cluster_path", None) or "cluster.toml"
        raise ConfigError(f"{source}: {exc}") from None


class PolicySync:
    def __init__(self, rt: Runtime, recorder: Recorder, invalidators: list[Callable[[dict], int]], *,
                 updates: Late[PolicyUpdateStore], peers: PeerLink) -> None:
        self.rt = rt
        self.updates = updates
        self.link = peers
        self.recorder = recorder
        self.invalidators = invalidators  # pending requests and operations fail on a change
        self._syncing = False

    def open(self) -> None:
        """The policy in force: the base policy and the updates stored here, each verified."""
        try:
            self.rt.policy = apply_updates(base_policy(self.rt.config), self.updates().policy_updates())
        except (PolicyError, PolicyDenied) as exc:
            raise ServiceError("bad_policy", f"stored policy updates do not verify: {exc}") from None

    def history(self) -> dict[str, Policy]:
        """Every policy this node had in force, by hash: the base policy and each update's."""
        current = base_policy(self.rt.config)
        out = {current.hash: current}
        for u in self.updates().policy_updates():
            current = verify_policy_update(current, PolicyUpdate.from_json(u))
            out[current.hash] = current
        return out

    def view(self) -> dict:
        out = self.rt.policy.summary()
        out["updates"] = len(self.updates.value.policy_updates()) if self.updates.value is not None else 0
        return out

    def chain(self) -> list[dict]:
        return self.updates().policy_updates()

    async def update(self, user, body: Any, *, from_peer: int | None = None) -> dict:
        """A new policy signed by the current policy's ``policy_change`` quorum: verified,
        stored, in force here at once; forwarded to every peer (each verifies it itself)."""
        rt = self.rt
        actor = user.id if user is not None else rt.peers[from_peer].id
        try:
            upd = PolicyUpdate.from_json(body)
        except (PolicyError, CanonicalError) as exc:
            raise ServiceError("bad_policy_update", str(exc)[:300]) from None
        if upd.policy.hash == rt.policy.hash:
            result = {"policy_hash": rt.policy.hash, "version": rt.policy.version, "applied": False}
        else:
            try:
                new = verify_policy_update(rt.policy, upd)
            except PolicyDenied as exc:
                raise self.recorder.refuse(PolicyDenied(exc.code, exc.message), actor=actor,
                                           action="policy_change", digest=upd.policy.hash) from None
            with self.recorder.together():  # the stored update and its entry: one transaction
                self.recorder.write(actor, "policy_change", digest=new.hash, decision="applied",
                                    reason=f"version {new.version}")
                self.updates().add_policy_update(new.hash, upd.to_json())
            rt.policy = new
            self._invalidate_pending("policy_changed")
            result = {"policy_hash": new.hash, "version": new.version, "applied": True}
        if from_peer is None:
            nodes = {rt.me.id: "applied" if result["applied"] else "current"}
            others = [p for p in rt.peers if p != rt.index]
            res = await asyncio.gather(*(self.link.request(rt.peers[p], "POST", peer_path("policy"),
                                                           json_body=upd.to_json(), timeout=10.0)
                                         for p in others), return_exceptions=True)
            for p, r in zip(others, res):
                if isinstance(r, BaseException):
                    err = getattr(r, "body", {}) or {}
                    nodes[rt.peers[p].id] = (err.get("error", {}) or {}).get("code", "unreachable")
                else:
                    nodes[rt.peers[p].id] = "applied" if r.get("applied") else "current"
            result["nodes"] = nodes
        return result

    def _invalidate_pending(self, code: str) -> None:
        """A policy change: requests and operations waiting for approvals under the old policy
        can never be approved (their statements name its hash)."""
        err = {"code": code, "message": "the policy changed while it was pending"}
        n = sum(invalidate(err) for invalidate in self.invalidators)
        if n:
            self.recorder.quiet(None, "pending_invalidated", decision="expired", reason=f"{code}: {n}")

    def catch_up_soon(self) -> None:
        self.rt.spawn(self.catch_up())

    async def catch_up(self) -> None:
        """Catch up with policy updates a peer has and this node missed (while it was down):
        each one is verified against the policy before it, as if posted here."""
        rt = self.rt
        if self._syncing:
            return
        self._syncing = True
        try:
            async for p, updates in updates_from_peers(rt, self.link, peer_path("policy")):
                for u in updates:
                    try:
                        upd = PolicyUpdate.from_json(u)
                        if upd.previous_policy_hash == rt.policy.hash:
                            await self.update(None, u, from_peer=p)
                    except Exception as exc:  # noqa: BLE001
                        log.info("policy update from %s not applied: %s", rt.peers[p].id, getattr(exc, "code", exc))
        finally:
            self._syncing = False
