"""Verification of an audit export (JSON Lines): :func:`verify_export` checks every line,
the chain, each checkpoint's signature and co-signatures against the configured node keys,
and names the first entry that is missing, altered or out of order."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.audit.records import (
    ENTRY_FIELDS, ENTRY_TYPE, GENESIS, HEX64, OPTIONAL_ENTRY_FIELDS, TIME, AuditError, AuditFieldError,
    Checkpoint, check_fields, check_request_id, sha256_hex, verify_node_signature,
)
from appliance.canonical import CanonicalError, canonical_json, parse_canonical, parse_json

@dataclass
class VerifyReport:
    ok: bool
    entries: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head: str | None = None
    node: str | None = None
    checkpoints: int = 0
    cosignatures: int = 0
    last_checkpoint_seq: int | None = None
    error: str | None = None
    bad_seq: int | None = None  # the entry named
    line: int | None = None  # 1-based line of the export where it was found
    code: str | None = None  # a failure's name (see appliance.audit.anchor), when it has one
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if not self.ok:
            where = f" (line {self.line})" if self.line is not None else ""
            return f"FAIL: {self.error}{where}"
        span = f"{self.first_seq}..{self.last_seq}" if self.entries else "none"
        cp = (f"{self.checkpoints} checkpoint(s) verified, last at {self.last_checkpoint_seq}, "
              f"{self.cosignatures} co-signature(s)") if self.checkpoints else "no checkpoints"
        return (f"OK: node {self.node}, {self.entries} entries ({span}), head {self.head}, {cp}"
                + "".join(f"; {n}" for n in self.notes))


class _Fail(Exception):
    def __init__(self, message: str, seq: int | None, line: int | None) -> None:
        super().__init__(message)
        self.message, self.seq, self.line = message, seq, line


def _as_bytes(line: bytes | str) -> bytes:
    return line.encode("utf-8") if isinstance(line, str) else bytes(line)


def _check_entry_fields(e: Any, seq_hint: Any, lineno: int) -> None:
    if (not isinstance(e, dict) or not set(ENTRY_FIELDS) <= set(e)
            or not set(e) <= set(ENTRY_FIELDS) | set(OPTIONAL_ENTRY_FIELDS) or e.get("type") != ENTRY_TYPE):
        raise _Fail(f"entry {seq_hint} altered: not an audit entry", _int_or_none(seq_hint),
                    lineno)
    ok = (type(e["seq"]) is int and e["seq"] >= 1 and isinstance(e["node"], str)
          and isinstance(e["time"], str) and TIME.match(e["time"])
          and isinstance(e["prev"], str) and HEX64.match(e["prev"]))
    if ok:
        try:
            check_fields(e["actor"], e["action"], e["key"], e["subject"], e["digest"],
                          e["decision"], e["reason"])
            if "request_id" in e:
                if e["request_id"] is None:  # written only when there is one
                    raise AuditFieldError("request_id null")
                check_request_id(e["request_id"])
        except AuditFieldError:
            ok = False
    if not ok:
        raise _Fail(f"entry {seq_hint} altered: a field is malformed", _int_or_none(seq_hint),
                    lineno)


def _int_or_none(v: Any) -> int | None:
    return v if type(v) is int else None


def verify_export(
    lines: Iterable[bytes | str],
    node_keys: Mapping[str, bytes | str],
    *,
    node_id: str | None = None,
    min_cosignatures: int = 0,
    require_checkpoint: bool = False,
    check_signatures: bool = True,
    allow_partial: bool = False,
    anchors: Iterable[Checkpoint | Mapping | bytes | str] = (),
) -> VerifyReport:
    """Verify a JSON Lines export.

    ``node_keys``: node id -> identity public key (compressed secp256k1, bytes or hex), the
    cluster's configuration. ``node_id``: whose log this must be. ``min_cosignatures``:
    co-signatures (by other configured nodes) each checkpoint must carry.
    ``require_checkpoint``: the last entry must be covered by a checkpoint (an export taken
    after a clean shutdown). ``allow_partial``: the export may start after entry 1 (the
    first ``prev`` is then taken on trust). ``anchors``: checkpoints obtained elsewhere
    (e.g. :meth:`AuditLog.witnessed` on a peer), checked like the export's own; one beyond
    the last entry shows that entries were cut off the end.

    Returns a :class:`VerifyReport`; ``ok`` False names the first entry that is missing,
    altered or out of order (``bad_seq``) and the export line (``line``)."""
    report = VerifyReport(ok=True)
    try:
        _verify(list(lines), node_keys, node_id, min_cosignatures, require_checkpoint,
                check_signatures, allow_partial, list(anchors), report)
    except _Fail as f:
        report.ok = False
        report.error, report.bad_seq, report.line = f.message, f.seq, f.line
    return report


def _verify(lines, node_keys, node_id, min_cos, require_cp, check_sigs, allow_partial,
            anchors, report) -> None:
    entries: list[tuple[int, dict, str, int]] = []  # (seq, fields, hash, lineno)
    cps: list[tuple[Checkpoint, int]] = []
    for i, raw_line in enumerate(lines, 1):
        raw = _as_bytes(raw_line).rstrip(b"\r\n")
        if not raw.strip():
            continue
        try:
            obj = parse_json(raw)
        except CanonicalError:
            raise _Fail(f"line {i} is not JSON (an entry was altered or cut)", None, i) from None
        seq_hint = obj.get("entry", {}).get("seq") if isinstance(obj, dict) and isinstance(
            obj.get("entry"), dict) else None
        try:
            parse_canonical(raw)
        except CanonicalError:
            what = f"entry {seq_hint}" if seq_hint is not None else f"line {i}"
            raise _Fail(f"{what} altered: not in canonical form", _int_or_none(seq_hint),
                        i) from None
        if isinstance(obj, dict) and set(obj) == {"entry", "hash"}:
            e, h = obj["entry"], obj["hash"]
            _check_entry_fields(e, seq_hint, i)
            actual = sha256_hex(canonical_json(e))
            if h != actual:
                raise _Fail(f"entry {e['seq']} altered: its content does not match its hash",
                            e["seq"], i)
            entries.append((e["seq"], e, h, i))
        elif isinstance(obj, dict) and "checkpoint" in obj:
            try:
                cps.append((Checkpoint.from_json(obj), i))
            except AuditError as exc:
                s = obj["checkpoint"].get("seq") if isinstance(obj["checkpoint"], dict) else None
                raise _Fail(f"checkpoint for entry {s} malformed: {exc}", _int_or_none(s),
                            i) from None
        else:
            raise _Fail(f"line {i} is neither an entry nor a checkpoint", None, i)

    if not entries:
        if cps:
            raise _Fail(f"entry {cps[0][0].seq} missing: a checkpoint covers it but the export "
                        "has no entries", cps[0][0].seq, cps[0][1])
        report.notes.append("the export is empty")
        return

    # one node's log
    node = node_id or entries[0][1]["node"]
    report.node = node
    for seq, e, _, ln in entries:
        if e["node"] != node:
            raise _Fail(f"entry {seq} altered or out of place: written by {e['node']}, not "
                        f"{node}", seq, ln)

    # order, gaps and the chain
    lines_of: dict[int, list[int]] = {}
    for seq, _, _, ln in entries:
        lines_of.setdefault(seq, []).append(ln)
    first = entries[0][0]
    if first != 1 and not allow_partial:
        if 1 in lines_of:
            raise _Fail(f"entry 1 out of order (found at line {lines_of[1][0]})", 1,
                        entries[0][3])
        raise _Fail("entry 1 missing", 1, entries[0][3])
    if first == 1 and entries[0][1]["prev"] != GENESIS:
        raise _Fail("entry 1 altered: it does not start the chain", 1, entries[0][3])
    if first != 1:
        report.notes.append(f"partial export from entry {first}: its link to entry "
                            f"{first - 1} is taken on trust")
    hash_of: dict[int, str] = {}
    prev_hash = entries[0][1]["prev"]
    # chain breaks, to name the altered entry: (k-1 -> k) broken
    breaks: set[int] = set()
    for idx, (seq, e, h, ln) in enumerate(entries):
        expected = first + idx
        if seq != expected:
            if seq > expected:
                if expected in lines_of:
                    raise _Fail(f"entry {expected} out of order (found at line "
                                f"{lines_of[expected][0]}, expected at line {ln})", expected, ln)
                raise _Fail(f"entry {expected} missing (line {ln} holds entry {seq})",
                            expected, ln)
            raise _Fail(f"entry {seq} out of order or repeated (line {ln}, after entry "
                        f"{expected - 1})", seq, ln)
        if idx > 0 and e["prev"] != prev_hash:
            breaks.add(seq)
        hash_of[seq] = h
        prev_hash = h
    if breaks:
        j = min(breaks)
        # an entry whose hash was recomputed after an edit breaks the link after it;
        # one whose prev was edited breaks the links before and after it
        bad = j if (j + 1 in breaks) else j - 1
        raise _Fail(f"entry {bad} altered: the chain breaks between entries {j - 1} and {j}",
                    bad, next(ln for s, _, _, ln in entries if s == bad))
    last = entries[-1][0]
    report.entries = len(entries)
    report.first_seq, report.last_seq, report.head = first, last, hash_of[last]

    # checkpoints (the export's own, then outside anchors)
    anchor_cps = []
    for a in anchors:
        cp = a if isinstance(a, Checkpoint) else Checkpoint.from_json(a)
        anchor_cps.append((cp, None))
    for cp, ln in cps + anchor_cps:
        src = "checkpoint" if ln is not None else "witnessed checkpoint"
        if cp.node != node:
            raise _Fail(f"{src} for entry {cp.seq} is for node {cp.node}, not {node}", cp.seq, ln)
        if check_sigs:
            key = node_keys.get(cp.node)
            if key is None:
                raise _Fail(f"{src} for entry {cp.seq}: {cp.node} is not a configured node",
                            cp.seq, ln)
            if not verify_node_signature(key, cp.digest(), cp.signature):
                raise _Fail(f"{src} for entry {cp.seq} forged: its signature does not verify "
                            f"with {cp.node}'s key", cp.seq, ln)
        if cp.seq > last:
            raise _Fail(f"entry {last + 1} missing: a {src} covers entries up to {cp.seq} but "
                        f"the export ends at {last}", last + 1, ln)
        if cp.seq < first:
            report.notes.append(f"{src} for entry {cp.seq} precedes the export")
            continue
        if hash_of[cp.seq] != cp.head:
            raise _Fail(f"entry {cp.seq} altered (or the {src} for it forged): the signed head "
                        "differs from the chain", cp.seq, ln)
        if check_sigs:
            good = 0
            for peer, sig in sorted(cp.cosignatures.items()):
                if peer == node or peer not in node_keys:
                    raise _Fail(f"{src} for entry {cp.seq}: co-signer {peer} is not a peer node",
                                cp.seq, ln)
                if not verify_node_signature(node_keys[peer], cp.digest(), sig):
                    raise _Fail(f"{src} for entry {cp.seq}: {peer}'s co-signature is forged",
                                cp.seq, ln)
                good += 1
            if ln is not None and good < min_cos:
                raise _Fail(f"checkpoint for entry {cp.seq} has {good} co-signature(s), "
                            f"{min_cos} required", cp.seq, ln)
            report.cosignatures += good
        report.checkpoints += 1
        report.last_checkpoint_seq = max(report.last_checkpoint_seq or 0, cp.seq)
    if require_cp and report.last_checkpoint_seq != last:
        raise _Fail(f"entries after {report.last_checkpoint_seq or 0} are not covered by a "
                    "signed checkpoint (entries may have been cut off the end)",
                    (report.last_checkpoint_seq or 0) + 1, None)
    if not check_sigs:
        report.notes.append("checkpoint signatures not checked")


def node_keys_from_cluster(cluster: Any) -> dict[str, bytes]:
    """node id -> identity key from a ``ClusterConfig``, a cluster.toml mapping, or a path
    to cluster.toml (or to a node.toml that names it)."""
    if isinstance(cluster, (str, Path)):
        path = Path(cluster)
        with open(path, "rb") as f:
            m = tomllib.load(f)
        if "nodes" not in m and isinstance(m.get("cluster"), str):
            return node_keys_from_cluster(path.parent / m["cluster"])
        cluster = m
    if isinstance(cluster, Mapping):
        return {str(n["id"]): bytes.fromhex(n["identity_key"]) for n in cluster.get("nodes", [])}
    return {n.id: bytes(n.identity_key) for n in cluster.nodes}


def verify_file(path: str | Path, node_keys: Mapping[str, bytes | str], **kw: Any
                ) -> VerifyReport:
    with open(path, "rb") as f:
        return verify_export(f.read().split(b"\n"), node_keys, **kw)
