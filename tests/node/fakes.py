"""Fakes of the ports services depend on (a runtime without sockets, HSM or SQLite): a clock
tests move, an audit log in a list, a sign-request store in a dict."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import types
from typing import Any

from api.auth import generate_user_key
from appliance.faults import NO_FAULTS
from appliance.policy import default_policy, make_approval, make_request
from appliance.policy.model import ApprovalGroup
from appliance.runtime import Waiters
from appliance.storage import ConflictError
from appliance.tss.protocol import IdentityDirectory, SoftwareSigner


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.t = now

    def now(self) -> float:
        return self.t


class FakeAudit:
    def __init__(self) -> None:
        self.entries: list[dict] = []

    def append(self, actor, action, **kw: Any) -> None:
        self.entries.append({"actor": actor, "action": action, **kw})

    record = append


class FakeMetrics:
    def __init__(self) -> None:
        self.counted: list[tuple] = []

    def __getattr__(self, name: str):
        return lambda *a, **kw: self.counted.append((name, *a))


class FakeCore:
    """The sign-request rows (status, error), with the store's compare-and-set."""

    def __init__(self, rows: dict) -> None:
        self.rows = rows

    def update_sign_request(self, rid: str, *, status: str, expected_status=None, error=None, **kw) -> None:
        row = self.rows[rid]
        if expected_status is not None and row["status"] != expected_status:
            raise ConflictError(f"{rid} is {row['status']}")
        row["status"] = status
        if error is not None:
            row["error"] = json.loads(error)


class FakeStore:
    def __init__(self) -> None:
        self.requests: dict[str, dict] = {}
        self.statements: dict[str, dict] = {}
        self.core = FakeCore(self.requests)
        self.used_requests: set[str] = set()
        self.decided: dict[str, dict[str, dict]] = {}  # request id -> approver -> signed decision
        self.presignatures: dict[tuple[int, ...], int] = {}  # signer set -> available (any key)

    def transaction(self):
        """(no rollback in the fake: tests/node/test_audit_together.py uses a real database)"""
        return contextlib.nullcontext()

    def ready_signer_sets(self, key_id: str) -> dict[tuple[int, ...], int]:
        return dict(self.presignatures)

    def decisions(self, rid: str) -> list[dict]:
        return list(self.decided.get(rid, {}).values())

    def add_decision(self, rid: str, approver: str, decision: str, approval: dict) -> bool:
        got = self.decided.setdefault(rid, {})
        if approver in got:
            return False
        got[approver] = approval
        return True

    def set_statement_final(self, rid: str, final: str) -> None:
        self.statements[rid]["final"] = final

    def get_sign_request(self, rid: str) -> dict | None:
        row = self.requests.get(rid)
        return None if row is None else dict(row)

    def list_sign_requests(self, statuses) -> list[dict]:
        return [dict(r) for r in self.requests.values() if r["status"] in statuses]

    def update_sign_request(self, rid: str, *, status: str, signers=None, signature=None, error=None) -> None:
        row = self.requests[rid]
        row["status"] = status
        if signers is not None:
            row["signers"] = signers
        if signature is not None:
            row["signature"] = signature
        if error is not None:
            row["error"] = error

    def get_statement(self, rid: str) -> dict | None:
        return self.statements.get(rid)

    def request_used(self, rid: str) -> bool:
        return rid in self.used_requests


class Users:
    """One key per role, and the default policy over them; ``approvers`` > 1: that many
    approvers (``approver``, ``approver2``, ...) and a rule needing all of them."""

    def __init__(self, approvers: int = 1) -> None:
        self.keys = {}
        public = {}
        roles = {"admin": ["admin"], "initiator": ["initiator"]}
        for i in range(approvers):
            roles["approver" if i == 0 else f"approver{i + 1}"] = ["approver"]
        for uid in roles:
            priv, pub = generate_user_key()
            self.keys[uid], public[uid] = priv, pub.decode()
        self.policy = default_policy("fake", public, roles=roles)
        if approvers > 1:
            rule = dataclasses.replace(self.policy.signing,
                                       approvals=(ApprovalGroup(("approver",), approvers),))
            self.policy = dataclasses.replace(self.policy, signing=rule)

    def decision(self, uid: str, sr, now: float, decision: str = "approve", ttl_s: int = 600):
        """``uid``'s signed decision on ``sr``, as a client body carries it."""
        a = make_approval(self.keys[uid], sr.request, approver=uid, now=now, ttl_s=ttl_s, decision=decision)
        return {"approval": a.to_json()}

    def request(self, now: float, **kw: Any):
        return make_request(self.keys["initiator"], cluster_id="fake", policy_hash=self.policy.hash,
                            initiator="initiator", now=now, ttl_s=600, **kw)


def fake_runtime(policy, *, clock: FakeClock | None = None, store: FakeStore | None = None):
    """What a service reads of :class:`appliance.runtime.Runtime`, with fakes behind it."""
    peers = {i: types.SimpleNamespace(id=f"node-{i + 1}", index=i) for i in range(3)}
    spawned: list = []
    rt = types.SimpleNamespace(
        index=0, peers=peers, me=peers[0], policy=policy, clock=clock or FakeClock(),
        store=store or FakeStore(), audit=FakeAudit(), audit_ok=True, metrics=FakeMetrics(),
        faults=NO_FAULTS, waiters=Waiters(), ready=True, spawned=spawned,
        node_ids=lambda idx: [peers[i].id for i in sorted(idx)],
        index_of=lambda node_id: next(p.index for p in peers.values() if p.id == node_id),
        spawn=lambda coro: spawned.append(asyncio.ensure_future(coro)))
    return rt


def with_identities(rt) -> dict:
    """Give ``rt`` real secp256k1 identity keys (coincurve): ``rt.cluster.nodes``, an
    :class:`IdentityDirectory` as ``rt.directory``; returns index -> its SoftwareSigner."""
    signers = {i: SoftwareSigner(bytes([i + 1]) * 32) for i in rt.peers}
    rt.cluster = types.SimpleNamespace(nodes=[
        types.SimpleNamespace(id=p.id, index=i, identity_key=signers[i].public_key()) for i, p in rt.peers.items()])
    rt.directory = IdentityDirectory({i: s.public_key() for i, s in signers.items()})
    return signers
