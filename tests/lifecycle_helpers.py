"""Helpers for the key-lifecycle tests over real node processes (issue 8)."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
from pathlib import Path

from tests.cluster_fixtures import check_signature, digest_of
from tests.signing_flow import sign as flow_sign


async def sign(cluster, key: dict, text: str, *, node: int = 0, signers: list[str] | None = None,
               timeout: float = 90.0, derivation_path: str | None = None, public_key: str | None = None) -> dict:
    """request -> approve (a no-op while no policy asks for it) -> wait; checked against the
    key's public key, or ``public_key`` (a derived child's) with ``derivation_path``
    (libsecp256k1 and OpenSSL, low-S, recovery id)."""
    digest = digest_of(text)
    kw: dict = {"signers": signers} if signers is not None else {}
    if derivation_path is not None:
        kw["derivation_path"] = derivation_path
    done = await flow_sign(cluster.client("initiator", node=node), cluster.client("approver", node=node),
                           key["key_id"], digest, timeout=timeout, **kw)
    check_signature(public_key or key["public_key"], digest, done["signature"])
    if "public_key" in done and derivation_path is None:
        assert done["public_key"] == key["public_key"]
    return done


def db(cluster, i: int) -> sqlite3.Connection:
    """Read-only view of node ``i``'s database (WAL: safe while the node runs)."""
    return sqlite3.connect(f"file:{cluster.data_dirs[i] / 'node.db'}?mode=ro", uri=True, timeout=10.0)


def secret_epochs(cluster, i: int, key_id: str) -> set[int]:
    con = db(cluster, i)
    try:
        return {r[0] for r in con.execute("SELECT DISTINCT epoch FROM key_secrets WHERE key_id=?", (key_id,))}
    finally:
        con.close()


def presignatures(cluster, i: int, key_id: str) -> list[tuple[int, str, int]]:
    """(epoch, state, hsm_key_destroyed) of every presignature of the key on node ``i``."""
    con = db(cluster, i)
    try:
        return list(con.execute("SELECT epoch, state, hsm_key_destroyed FROM presignatures WHERE key_id=?",
                                (key_id,)))
    finally:
        con.close()


async def presig_metric(cluster, i: int) -> float:
    """Sum of ``appliance_presignatures_available`` as node ``i`` exports it."""
    text = await cluster.client("auditor", node=i).metrics()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("appliance_presignatures_available"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def eventually(check, timeout: float = 60.0, interval: float = 0.25, what: str = "condition"):
    """Await ``check()`` (sync or async) until truthy; its value."""
    deadline = time.monotonic() + timeout
    while True:
        v = check()
        if asyncio.iscoroutine(v):
            v = await v
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


async def restart_with(cluster, i: int, **faults) -> None:
    """Stop node ``i`` (if running), give it a test-only fault plan, start it."""
    await cluster.stop_node(i)
    cluster.configure_faults(i, **faults)
    await cluster.start_node(i)


async def snapshot(cluster, i: int, dest: Path) -> None:
    """A copy of node ``i``'s whole state (database and token), taken while it is stopped."""
    await cluster.stop_node(i)
    shutil.copytree(cluster.data_dirs[i], dest, ignore=shutil.ignore_patterns("node.log"))
    await cluster.start_node(i)


async def swap_state(cluster, i: int, other: Path) -> None:
    """Stop node ``i``, exchange its directory with ``other``, start it."""
    await cluster.stop_node(i)
    d = cluster.data_dirs[i]
    tmp = d.with_name(d.name + ".swap")
    d.rename(tmp)
    other.rename(d)
    tmp.rename(other)
    await cluster.start_node(i)
