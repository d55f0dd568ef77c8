"""What the node reads in a sign request: the digests it signs (decoded from the payload by
:mod:`appliance.payloads`, off the event loop), the facts the key's transaction rules need,
and a one-line summary for the audit log."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from appliance import payloads
from appliance.jobs.model import is_frost
from appliance.keys.service import key_context
from appliance.policy import path_matches
from appliance.ports import Late, ReplayStore
from appliance.runtime import Runtime
from appliance.signing import schnorr


class PayloadReader:
    def __init__(self, rt: Runtime, *, replay: Late[ReplayStore]) -> None:
        self.rt = rt
        self.replay = replay

    async def decode(self, row: dict, *, digest: str | None, payload: Any, payload_type: str | None,
                     path: str, network: str | None):
        """Decode a request's digest or payload for this node's copy of the key (a FROST key's:
        :func:`appliance.signing.schnorr.decode`)."""
        net = network or self.rt.policy.rule_for(row["key_id"]).network
        if is_frost(row):
            fn = functools.partial(schnorr.decode, row, digest=digest, payload=payload if digest is None else None,
                                   payload_type=payload_type if digest is None else None, path=path,
                                   network=net)
            if digest is not None or payload_type not in schnorr.TRANSACTIONS:
                return fn()  # a digest or a text: nothing to parse (a child: one CKDpub)
            return await asyncio.get_running_loop().run_in_executor(None, fn)
        fn = functools.partial(payloads.decode_request, key_context(row, path),
                               digest=digest, payload=payload if digest is None else None,
                               payload_type=payload_type if digest is None else None, network=net)
        if digest is not None and path == "m":
            return fn()  # nothing to parse or derive
        # parsing (and BIP32 derivation) off the event loop, never behind protocol work
        return await asyncio.get_running_loop().run_in_executor(None, fn)

    async def decode_request(self, row: dict, request, payload: Any, network: str | None):
        """Decode a signed request's digest or payload."""
        r = request
        return await self.decode(row, digest=r.digest, payload=payload, payload_type=r.payload_type,
                                 path=r.derivation_path, network=network or r.network)

    def rate_usage(self, key_id: str, window_s: int, besides: str | None = None) -> int:
        return self.replay().signatures_since(key_id, self.rt.clock.now() - window_s, besides=besides)

    def tx_check(self, key_id: str, dec) -> tuple[bool, str, str]:
        """The key's transaction rules over what this node decoded, and every derivation path
        it signs for (a PSBT input's path too) against the rule's patterns."""
        rule = self.rt.policy.rule_for(key_id)
        rules = rule.tx_rules()
        usage = self.replay().amounts_since(key_id, self.rt.clock.now() - rules.window_seconds)
        d = payloads.evaluate_tx_rules(dec, rules, usage)
        if not d.allowed:
            return False, d.code, d.message
        for item in dec.items:
            if not any(path_matches(p, item.path) for p in rule.derivation_paths):
                return False, "path_not_allowed", f"derivation path {item.path} is not allowed"
        return True, "ok", ""


def summary_text(dec) -> str:
    """One line for the audit log: what the node decoded (type, chain, each transfer, fee,
    contract and method), at most 300 characters; no payload bytes, only what an approver saw."""
    f = dec.facts
    if dec.payload_type == "digest":
        return f"raw digest, {len(dec.items)} signature(s), path {dec.items[0].path}"
    if dec.payload_type in ("message", "eip191"):  # its size, not the text (the entry's digest
        # is the request's payload_hash: the SHA-256 of the text)
        return f"{dec.payload_type} text, {dec.summary['length']} bytes, path {dec.items[0].path}"
    # a Solana address (43-44 base58 characters) reads to the audit log's secret filter like
    # base64 key material (which it could be: a 32-byte secret has the same shape), so the line
    # names it by its ends; the entry's digest (the message's SHA-256) and the request's
    # decoded summary hold it in full
    short = _short_base58 if f.chain == "solana" else str
    parts = [dec.payload_type]
    if f.chain:
        parts.append(f"{f.chain} {f.network or ''}{f' chain {f.chain_id}' if f.chain_id else ''}".strip())
    for t in f.transfers[:4]:
        parts.append(f"{t.kind} {t.amount} {short(t.asset or '-')} to {short(t.destination or 'none')}")
    if len(f.transfers) > 4:
        parts.append(f"+{len(f.transfers) - 4} more")
    if f.fee is not None:
        parts.append(f"fee {f.fee} {f.fee_asset or ''}".strip())
    if f.contract:
        parts.append(f"contract {short(f.contract)} {f.method or ''}".strip())
    parts.append(f"{len(dec.items)} signature(s)")
    return "; ".join(parts)[:300]


def _short_base58(text: str) -> str:
    """``9WzDXwBb..vL9zYtAWWM`` for a base58 address (``SPL:<mint>``: the mint), as is otherwise."""
    head, _, tail = text.rpartition(":")
    if len(tail) <= 24:
        return text
    return f"{head}:" * bool(head) + f"{tail[:8]}..{tail[-8:]}"
