"""One request per (initiator, nonce), cluster-wide: the nonce is the idempotency key.

A client that retries (a payment sent again by a new process, signed again with a fresh
``created_at``) must get the first request back, from any node, and never a second
signature; a different body under the same nonce is refused (``nonce_reused``, 409).

1. The request id is derived from (cluster, initiator, nonce) only
   (:attr:`appliance.policy.Request.request_id`), never from ``created_at``: every node
   computes the same id for a retry. So the holders' once-per-request records
   (appliance/request_use.py: a request reserved for one signer set on ``n - t + 1`` holders;
   each signer takes part once per request id) already forbid a second signature under the
   nonce, whatever nodes the retries reach, concurrently or not, whatever the content.
2. The content is what defines "the same request": :meth:`Request.content_hash` (action, key,
   digest or payload hash, derivation path, params, network; not ``created_at``,
   ``expires_at``, ``policy_hash``) and the signers the body names. The node that receives a
   request first *claims* its id here and on every other node (``POST
   /v1/peer/requests/{id}/claim``): each records ``id -> (content, owner)`` durably, the
   first claim wins (an ``INSERT OR IGNORE`` in one fsynced transaction), and answers with
   the recorded claim. Any answer with another content: ``nonce_reused``.
3. The owner (the node that keeps the request) is the one the answers name most, ties to the
   lowest index. Two nodes that receive the same request at once get the same answer from
   every node both reach (a record is fixed by the first claim to arrive), so they agree on
   the owner; the other one answers with the owner's request (``GET
   /v1/peer/sign-requests/{id}``, which waits while the owner is still creating it). If the
   owner does not have it (its creation was refused) or is down, the node creates the
   request itself: step 1 still holds it to one signature.

Key operations (keygen, import, refresh, reshare) carry the same signed statement: the same
rule applies to them on the node that received them (appliance/keys/service.py), and step 1
(every party takes part once per request id) across nodes.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from appliance.errors import ServiceError
from appliance.ids import peer_path
from appliance.policy import PolicyError, Request, SignedRequest
from appliance.ports import Late, PeerLink, ReplayStore
from appliance.transport import PeerError

if TYPE_CHECKING:  # pragma: no cover
    from appliance.runtime import Runtime

_CONTEXT = b"threshold-appliance/request-claim/v1\x00"
MAX_SIGNERS = 64


class Created(NamedTuple):
    """What a create gives: the request's (or operation's) view, and whether this call made it
    (False: a retry, answered with the first one: HTTP 200 instead of 202)."""

    view: dict
    new: bool


class NonceReused(ServiceError):
    """A request under an (initiator, nonce) already used for a different request."""

    def __init__(self) -> None:
        super().__init__("nonce_reused", "this nonce was already used by this initiator for a different "
                         "request (a retry must send the same request)")


def claim_content(request: Request, signers: list[str] | None) -> str:
    """What a claim records: the request's content and the signers the body names."""
    named = "-" if signers is None else ",".join(sorted(signers))
    return hashlib.sha256(_CONTEXT + request.content_hash().encode() + b"\x00" + named.encode()).hexdigest()


def choose_owner(owners: list[int]) -> int:
    """The owner named by the most recorded claims; a tie goes to the lowest index."""
    counts = Counter(owners)
    return min(counts, key=lambda p: (-counts[p], p))


class RequestClaims:
    """Steps 2 and 3 for one node (``rt``: its identity, peers and policy)."""

    def __init__(self, rt: "Runtime", *, replay: Late[ReplayStore], peers: PeerLink,
                 seen: Callable[[int, bool], None] | None = None) -> None:
        self.rt = rt
        self.replay = replay
        self.link = peers
        # ``seen(index, ready)``: each peer's readiness as it gave it with its claim answer
        # (PeerHealth.note: the health check that follows in the same request does not ask again)
        self.seen = seen

    def claim_here(self, sr: SignedRequest, signers: list[str] | None) -> dict:
        """Claim on this node only (owner: this node, unless claimed); the recorded claim,
        ``{content, owner}``. NonceReused if it records a different request."""
        r = sr.request
        content = claim_content(r, signers)
        first = self.replay().claim_request(sr.request_id, r.initiator, r.nonce, content, self.rt.index)
        if first["content"] != content:
            raise NonceReused()
        return first

    async def claim_everywhere(self, sr: SignedRequest, signers: list[str] | None, here: dict) -> int:
        """Claim on every other node (``here``: this node's recorded claim); the owner of the
        request (this node's index if it should create it). NonceReused if any node records a
        different request under the id. A node that does not answer is left out."""
        rt = self.rt
        content = claim_content(sr.request, signers)
        body = {"request": sr.to_json(), "signers": signers}
        others = [p for p in rt.peers if p != rt.index]
        answers = await asyncio.gather(
            *(self.link.request(rt.peers[p], "POST", peer_path("requests", sr.request_id, "claim"),
                                json_body=body, timeout=5.0) for p in others),
            return_exceptions=True)
        owners = [here["owner"]]
        by_id = {peer.id: i for i, peer in rt.peers.items()}
        for p, a in zip(others, answers):
            if isinstance(a, BaseException) and not isinstance(a, PeerError):
                raise a
            if self.seen is not None and isinstance(a, dict) and type(a.get("ready")) is bool:
                self.seen(p, a["ready"])
            if (isinstance(a, PeerError) or not isinstance(a, dict) or not isinstance(a.get("content"), str)
                    or a.get("owner") not in by_id):
                continue  # unreachable, or refused it (its policy differs): left out
            if a["content"] != content:
                raise NonceReused()
            owners.append(by_id[a["owner"]])
        return choose_owner(owners)

    def confirm(self, request_id: str, body: Any, from_index: int) -> dict:
        """``POST /v1/peer/requests/{id}/claim`` from node ``from_index``: record its claim
        unless one is recorded; the recorded one."""
        rt = self.rt
        try:
            sr = SignedRequest.from_json(body.get("request") if isinstance(body, dict) else None)
        except PolicyError:
            raise ServiceError("bad_claim", "a claim carries the signed request and the signers named") from None
        signers = body.get("signers")
        if signers is not None and not (isinstance(signers, list) and len(signers) <= MAX_SIGNERS
                                        and all(isinstance(s, str) and len(s) <= 64 for s in signers)):
            raise ServiceError("bad_claim", "a claim's signers are a list of node ids or null")
        if sr.request_id != request_id:
            raise ServiceError("request_mismatch", "the claim names another request")
        if not sr.verify(rt.policy):
            raise ServiceError("bad_signature", "the request is not signed by its initiator")
        r = sr.request
        first = self.replay().claim_request(request_id, r.initiator, r.nonce, claim_content(r, signers), from_index)
        return {"request_id": request_id, "content": first["content"], "owner": rt.peers[first["owner"]].id}
