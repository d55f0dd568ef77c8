"""Outside anchors for an audit export: the checkpoints a node's peers witnessed.

A node's own export cannot show that entries were cut off its end: drop the newest entries
together with their checkpoints (or every checkpoint, or cut right after an older checkpoint)
and what is left is still a valid chain. The peers can show it: each one keeps the
checkpoints it co-signed for every other node (:meth:`AuditLog.witness`), and a checkpoint is
signed by the node whose log it covers, so a peer cannot forge one; at worst it serves an
older one, which is why an auditor asks several peers and takes the newest.

The anchor document (``GET /v1/audit/checkpoints``, auditor role) that a node serves::

    {"type": "appliance/audit-anchor/v1",
     "node": "<the node that serves it>",
     "witnessed": [<the newest checkpoint it witnessed for each peer>, ...],
     "own": <its own newest co-signed checkpoint, with the co-signatures> | null}

each checkpoint in the form of an export's checkpoint line. :func:`verify_with_anchors`
checks an export against anchors and names a failure with a code:

``truncated_before_checkpoint``  the export ends before the newest witnessed checkpoint
``checkpoint_missing``           a witnessed checkpoint's entry is in the export but the
                                 export has no checkpoint there, or its head differs
``checkpoint_conflict``          two witnessed checkpoints name two heads for one entry
``no_checkpoint``                no witnessed checkpoint of the node at all (while required)
``anchor_forged``                a witnessed checkpoint is not signed by the node's key (or a
                                 co-signature on it does not verify)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from appliance.audit.log import AuditLog
from appliance.audit.records import ID as NODE_ID  # the same id grammar as the log's
from appliance.audit.records import AuditError, Checkpoint, verify_node_signature
from appliance.audit.verify import VerifyReport, verify_export
from appliance.canonical import CanonicalError, parse_json

ANCHOR_TYPE = "appliance/audit-anchor/v1"
MAX_ANCHOR_BYTES = 1 << 20  # a document names one checkpoint per peer: far below this
MAX_ANCHOR_DEPTH = 4  # document -> list -> checkpoint -> body / co-signatures
MAX_ANCHOR_CHECKPOINTS = 4096

TRUNCATED = "truncated_before_checkpoint"
CHECKPOINT_MISSING = "checkpoint_missing"
CHECKPOINT_CONFLICT = "checkpoint_conflict"
NO_CHECKPOINT = "no_checkpoint"
ANCHOR_FORGED = "anchor_forged"


class AnchorError(AuditError):
    """An anchor document or file that cannot be read (malformed, too large, too deep)."""

    code = "bad_anchor"


@dataclass(frozen=True)
class Anchor:
    """A checkpoint obtained outside the export, and who vouched for it."""

    checkpoint: Checkpoint
    source: str  # the node that served it, or the file it came from


# =========================================================================== the document


def anchor_document(log: AuditLog, node_ids: Iterable[str]) -> dict:
    """What ``GET /v1/audit/checkpoints`` serves: the newest checkpoint ``log``'s node
    witnessed for each node of ``node_ids`` (itself left out), and its own newest co-signed
    checkpoint."""
    witnessed = []
    for nid in sorted(set(node_ids) - {log.node_id}):
        cp = log.latest_witnessed(nid)
        if cp is not None:
            witnessed.append(cp.to_json())
    own = log.latest_cosigned_checkpoint()
    return {"type": ANCHOR_TYPE, "node": log.node_id, "witnessed": witnessed,
            "own": own.to_json() if own is not None else None}


def _depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value, without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        v, d = stack.pop()
        deepest = max(deepest, d)
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)
    return deepest


def _bounded(raw: bytes | str) -> Any:
    data = raw.encode() if isinstance(raw, str) else bytes(raw)
    if len(data) > MAX_ANCHOR_BYTES:
        raise AnchorError(f"anchor larger than {MAX_ANCHOR_BYTES} bytes")
    try:
        value = parse_json(data)
    except CanonicalError as exc:
        raise AnchorError(f"anchor is not JSON: {exc}") from None
    if _depth(value) > MAX_ANCHOR_DEPTH:
        raise AnchorError("anchor nested too deeply")
    return value


def _checkpoint(value: Any, where: str) -> Checkpoint:
    try:
        return Checkpoint.from_json(value)
    except AuditError as exc:
        raise AnchorError(f"{where}: {exc}") from None


def parse_anchor_document(value: Any, source: str | None = None) -> list[Anchor]:
    """The checkpoints of one anchor document (parsed JSON or its bytes); ``source``: where
    it came from (a file, a URL), for the messages."""
    label = source or "anchor"
    if isinstance(value, (bytes, bytearray, str)):
        value = _bounded(value)
    if not isinstance(value, dict) or set(value) != {"type", "node", "witnessed", "own"} \
            or value["type"] != ANCHOR_TYPE:
        raise AnchorError(f"{label}: not an anchor document ({ANCHOR_TYPE})")
    server, witnessed, own = value["node"], value["witnessed"], value["own"]
    if not isinstance(server, str) or NODE_ID.match(server) is None:
        raise AnchorError(f"{label}: bad node id")
    if not isinstance(witnessed, list) or len(witnessed) > MAX_ANCHOR_CHECKPOINTS:
        raise AnchorError(f"{label}: 'witnessed' must be a list of checkpoints")
    src = f"{server} ({source})" if source not in (None, server) else server
    out = [Anchor(_checkpoint(w, f"{label} witnessed[{i}]"), src)
           for i, w in enumerate(witnessed)]
    if any(a.checkpoint.node == server for a in out):
        raise AnchorError(f"{label}: a node does not witness its own checkpoints")
    if own is not None:
        cp = _checkpoint(own, f"{label} own")
        if cp.node != server:
            raise AnchorError(f"{label}: 'own' is a checkpoint of another node")
        out.append(Anchor(cp, src))
    return out


def parse_anchor_bytes(data: bytes | str, source: str | None = None) -> list[Anchor]:
    """An anchor file: one anchor document (what the route serves), or JSON Lines of
    checkpoints (each as an export's checkpoint line)."""
    label = source or "anchor"
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if len(raw) > MAX_ANCHOR_BYTES:
        raise AnchorError(f"{label}: larger than {MAX_ANCHOR_BYTES} bytes")
    lines = [ln for ln in raw.split(b"\n") if ln.strip()]
    if not lines:
        raise AnchorError(f"{label}: empty")
    first = _bounded(lines[0]) if len(lines) > 1 else _bounded(raw)
    if isinstance(first, dict) and first.get("type") == ANCHOR_TYPE:
        if len(lines) > 1:
            raise AnchorError(f"{label}: one anchor document per file")
        return parse_anchor_document(first, source)
    if len(lines) > MAX_ANCHOR_CHECKPOINTS:
        raise AnchorError(f"{label}: more than {MAX_ANCHOR_CHECKPOINTS} checkpoints")
    return [Anchor(_checkpoint(_bounded(ln), f"{label} line {i}"), label)
            for i, ln in enumerate(lines, 1)]


# =========================================================================== verification


def _fail(report: VerifyReport, code: str, message: str, seq: int | None) -> VerifyReport:
    report.ok = False
    report.code = code
    report.error = f"{code}: {message}"
    report.bad_seq, report.line = seq, None
    return report


def _export_index(lines: list[bytes]) -> tuple[dict[int, str], dict[int, str]]:
    """(entry seq -> hash, checkpoint seq -> head) of an export ``verify_export`` accepted."""
    hashes: dict[int, str] = {}
    heads: dict[int, str] = {}
    for raw in lines:
        if not raw.strip():
            continue
        obj = parse_json(raw)
        if "entry" in obj:
            hashes[obj["entry"]["seq"]] = obj["hash"]
        else:
            heads[obj["checkpoint"]["seq"]] = obj["checkpoint"]["head"]
    return hashes, heads


def _check_anchor(a: Anchor, node: str, node_keys: Mapping[str, bytes | str]) -> str | None:
    cp = a.checkpoint
    key = node_keys.get(node)
    if key is None or not verify_node_signature(key, cp.digest(), cp.signature):
        return f"the checkpoint at entry {cp.seq} from {a.source} is not signed by {node}'s key"
    for peer, sig in sorted(cp.cosignatures.items()):
        if peer == node or peer not in node_keys \
                or not verify_node_signature(node_keys[peer], cp.digest(), sig):
            return f"the checkpoint at entry {cp.seq} from {a.source}: {peer}'s co-signature " \
                   "does not verify"
    return None


def verify_with_anchors(
    lines: Iterable[bytes | str],
    node_keys: Mapping[str, bytes | str],
    anchors: Iterable[Anchor],
    *,
    node_id: str | None = None,
    require: bool = True,
    **verify_kw: Any,
) -> VerifyReport:
    """:func:`verify_export`, then: the export must reach the newest checkpoint of its node
    among ``anchors`` (checkpoints witnessed by peers), and hold each witnessed checkpoint
    that falls inside it with the same head. With ``require`` there must be at least one.
    A failure's ``code`` is one of the module's codes (``None`` for a failure of the chain
    itself, which :func:`verify_export` names)."""
    data = [ln.encode() if isinstance(ln, str) else bytes(ln) for ln in lines]
    data = [ln.rstrip(b"\r\n") for ln in data]
    report = verify_export(data, node_keys, node_id=node_id, **verify_kw)
    if not report.ok:
        return report
    node = report.node or node_id
    mine = [a for a in anchors if a.checkpoint.node == node] if node else []
    for a in mine:
        bad = _check_anchor(a, node, node_keys)
        if bad is not None:
            return _fail(report, ANCHOR_FORGED, bad, a.checkpoint.seq)
    head_at: dict[int, Anchor] = {}
    for a in sorted(mine, key=lambda x: x.checkpoint.seq):
        seen = head_at.setdefault(a.checkpoint.seq, a)
        if seen.checkpoint.head != a.checkpoint.head:
            return _fail(report, CHECKPOINT_CONFLICT,
                         f"{node} showed two heads for entry {a.checkpoint.seq} ({seen.source} "
                         f"and {a.source} witnessed different ones): its log was rewritten",
                         a.checkpoint.seq)
    if not head_at:
        if require:
            return _fail(report, NO_CHECKPOINT,
                         f"no checkpoint of {node or 'this log'} witnessed by a peer in the "
                         "anchors: entries cut off the end cannot be ruled out", None)
        return report
    newest = head_at[max(head_at)]
    n = newest.checkpoint.seq
    last = report.last_seq or 0
    if n > last:
        return _fail(report, TRUNCATED,
                     f"the export ends at entry {last} but {newest.source} witnessed {node}'s "
                     f"checkpoint at entry {n} (time {newest.checkpoint.time}): entries "
                     f"{last + 1}..{n} or more were cut off the end (or the export is older "
                     "than that checkpoint: export again)", last + 1)
    hashes, heads = _export_index(data)
    for seq, a in sorted(head_at.items()):
        if seq not in hashes:
            report.notes.append(f"witnessed checkpoint at entry {seq} precedes the export")
            continue
        if seq not in heads:
            return _fail(report, CHECKPOINT_MISSING,
                         f"{a.source} witnessed {node}'s checkpoint at entry {seq}, but the "
                         "export has no checkpoint there (checkpoints were stripped)", seq)
        if heads[seq] != a.checkpoint.head or hashes[seq] != a.checkpoint.head:
            return _fail(report, CHECKPOINT_MISSING,
                         f"{a.source} witnessed {node}'s checkpoint at entry {seq} with another "
                         "head than the export's: the log was rewritten", seq)
    sources = sorted({a.source for a in mine if a.checkpoint.seq == n})
    report.notes.append(f"reaches the newest witnessed checkpoint (entry {n}, witnessed by "
                        f"{', '.join(sources)})"
                        + (f"; entries {n + 1}..{last} are not witnessed yet" if last > n else ""))
    return report
