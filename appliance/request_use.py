"""A sign request is signed once, cluster-wide.

A node marks a request it took part in as used, but a coordinator could once open a second
sign job for an already signed request with a node that did not sign it the first time, and
get a second signature (counted twice against the rate and amount limits). Now:

1. Before a sign job opens, its coordinator *reserves* the request for its signer set on every
   holder of the key (``POST /v1/peer/sign-requests/{id}/use``). Each holder checks the
   initiator's signature, records ``request -> signer set`` durably (the first set wins; a
   different set later is refused, ``request_already_signed``) and answers with a
   confirmation signed by its HSM identity key.
2. The job carries the confirmations (``use_marks``). Every signer requires confirmations
   for exactly this request, key and signer set from at least ``n - t + 1`` holders (so that
   every signer set of ``t`` holders contains one of them) and its own reservation for the
   same set: a second job for the request with another signer set meets a holder that
   refuses it.
3. Rate limits count reservations: every holder records every request once, signer or not.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import TYPE_CHECKING, Any

from appliance.errors import ServiceError
from appliance.ids import peer_path
from appliance.job_authority import identity_signed
from appliance.policy import PolicyError, SignedRequest
from appliance.ports import KeyStore, Late, PeerLink, ReplayStore, Sealer
from appliance.transport import PeerError

if TYPE_CHECKING:  # pragma: no cover
    from appliance.runtime import Runtime

USE_MARKS = "use_marks"
_CONTEXT = b"threshold-appliance/request-use/v1\x00"


class RequestUseRefused(ServiceError):
    """A reservation or a sign job's use marks refused: ``code`` names the check."""


def use_digest(request_id: str, key_id: str, signers: list[int]) -> bytes:
    text = f"{request_id}\x00{key_id}\x00{','.join(str(i) for i in sorted(signers))}"
    return hashlib.sha256(_CONTEXT + text.encode()).digest()


def use_quorum(holders: int, threshold: int) -> int:
    """Confirmations a sign job needs: every set of ``threshold`` holders meets one of them."""
    return holders - threshold + 1


class RequestUse:
    """The three steps above for one node (``node``: its identity, peers and policy)."""

    def __init__(self, node: "Runtime", *, key_store: Late[KeyStore], replay: Late[ReplayStore], hsm: Late[Sealer],
                 peers: PeerLink) -> None:
        self.node = node
        self.key_store = key_store
        self.replay = replay
        self.hsm = hsm
        self.link = peers

    async def confirm(self, request_id: str, body: Any) -> dict:
        """A holder's step 1: check, reserve, and sign the confirmation."""
        node = self.node
        try:
            sr = SignedRequest.from_json(body.get("request") if isinstance(body, dict) else None)
            key_id, signers = body["key_id"], sorted(int(i) for i in body["signers"])
        except (PolicyError, KeyError, TypeError, ValueError):
            raise RequestUseRefused("bad_reservation", "a reservation carries the signed "
                                    "request, its key and the signer set") from None
        r = sr.request
        if sr.request_id != request_id or r.action != "sign" or r.key_id != key_id:
            raise RequestUseRefused("request_mismatch", "the reservation names another request")
        if not sr.verify(node.policy):
            raise RequestUseRefused("bad_signature", "the request is not signed by its initiator")
        row = self.key_store().get_key(key_id)
        if row is None or row["status"] != "active":
            raise RequestUseRefused("unknown_key", "this node does not hold that key")
        if len(signers) != row["threshold"] or not set(signers) <= set(row["participants"]):
            raise RequestUseRefused("bad_signers", "the signer set is not threshold holders of the key")
        if not self.replay().mark_request(request_id, key_id, signers):
            raise RequestUseRefused("request_already_signed", "the request is reserved for "
                                    "another signer set")
        sig = await self.hsm().sign_digest_async(use_digest(request_id, key_id, signers))
        return {"node_id": node.me.id, "signature": sig.hex()}

    async def reserve_everywhere(self, sr: SignedRequest, row: dict, signers: list[int]) -> dict[str, str]:
        """The coordinator's step 1: confirmations (node id -> signature hex) from at least the
        quorum of holders, this node included when it holds the key; else RequestUseRefused."""
        node = self.node
        body = {"request": sr.to_json(), "key_id": row["key_id"], "signers": sorted(signers)}
        holders = list(row["participants"])

        async def ask(p: int) -> dict:
            if p == node.index:
                return await self.confirm(sr.request_id, body)
            return await self.link.request(node.peers[p], "POST",
                                           peer_path("sign-requests", sr.request_id, "use"),
                                           json_body=body, timeout=5.0)

        answers = await asyncio.gather(*(ask(p) for p in holders), return_exceptions=True)
        marks, missing = {}, []
        for p, a in zip(holders, answers):
            if isinstance(a, dict) and isinstance(a.get("signature"), str):
                marks[node.peers[p].id] = a["signature"]
            elif isinstance(a, RequestUseRefused) or (
                    isinstance(a, PeerError) and a.code == "request_already_signed"):
                raise RequestUseRefused("request_already_signed",
                                        f"{node.peers[p].id}: the request is reserved for another signer set")
            else:
                missing.append(node.peers[p].id)
        need = use_quorum(len(holders), row["threshold"])
        if len(marks) < need:
            raise RequestUseRefused("quorum_unreachable", f"{len(marks)} of the {need} holders "
                                    f"needed confirmed the request's single use ({', '.join(missing)} did not)")
        return marks

    def check_job(self, spec: dict, row: dict) -> None:
        """A signer's step 2 (RequestUseRefused naming the check if it fails)."""
        node = self.node
        rid, key_id, signers = spec["request_id"], row["key_id"], sorted(int(p) for p in spec["parties"])
        marks = spec.get(USE_MARKS)
        digest = use_digest(rid, key_id, signers)
        by_id = {n.id: n.index for n in node.cluster.nodes}
        good = set()
        for node_id, sig in (marks.items() if isinstance(marks, dict) else ()):
            p = by_id.get(node_id)
            if p in row["participants"] and identity_signed(node.directory, p, digest, sig):
                good.add(p)
        need = use_quorum(len(row["participants"]), row["threshold"])
        if len(good) < need:
            raise RequestUseRefused("use_not_confirmed", f"the job carries {len(good)} valid "
                                    f"confirmations of the request's single use; {need} are needed")
        if not self.replay().mark_request(rid, key_id, signers):
            raise RequestUseRefused("request_already_signed", "this node reserved the request "
                                    "for another signer set")
