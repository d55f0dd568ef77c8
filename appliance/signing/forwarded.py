"""A request another node keeps, as this node shows it (issue 17 review, finding 1).

A node answering for a request held elsewhere asks only the owner its claims record
(appliance/request_claims.py) and trusts nothing of the answer it can check itself: the
answer must name the URL's request, carry the request signed by its initiator (as this node's
policy knows them), and the payload whose hash that request names. The node then decodes the
payload itself: the decoded summary a console page shows, and the one an approval statement
binds, are this node's own. What it cannot check from the answer alone (status, decisions so
far, signatures) is the owner's word, as before; every signer re-checks decisions and
digests before it contributes a share."""

from __future__ import annotations

from typing import Any

from appliance.errors import ServiceError
from appliance.policy import PolicyError, SignedRequest, payload_hash

#: the fields of a forwarded view this node sets from the signed request and its own decode
REQUEST_FIELDS = ("key_id", "derivation_path", "initiator", "digest", "payload_type", "payload_hash",
                  "expires_at", "network", "decoded")


def refuse(why: str) -> ServiceError:
    return ServiceError("peer_view_invalid", f"the owner's answer for the request is refused: {why}")


def checked_request(policy: Any, request_id: str, answer: Any) -> tuple[SignedRequest, Any]:
    """The signed request of an owner's ``answer`` for ``request_id`` and its payload (None
    for a digest), each checked; ``peer_view_invalid`` naming what is wrong otherwise."""
    if not isinstance(answer, dict):
        raise refuse("not an object")
    if answer.get("request_id") != request_id:
        raise refuse("it names another request")
    try:
        sr = SignedRequest.from_json(answer.get("request"))
    except PolicyError:
        raise refuse("no well-formed signed request") from None
    if sr.request_id != request_id:
        raise refuse("its signed request is another request")
    if not sr.verify(policy):
        raise refuse("the request is not signed by its initiator")
    r = sr.request
    payload = answer.get("payload")
    if r.payload_type is None:
        if payload is not None:
            raise refuse("a payload for a digest request")
        return sr, None
    try:
        ok = payload is not None and payload_hash(r.payload_type, payload) == r.payload_hash
    except PolicyError:
        ok = False
    if not ok:
        raise refuse("the payload does not match the request's payload_hash")
    return sr, payload


def rebuilt_view(answer: dict, sr: SignedRequest, dec: Any) -> dict:
    """The owner's view with every field the signed request or this node's decode gives
    replaced by them (and the peer-only ``payload`` left out)."""
    r = sr.request
    out = {k: v for k, v in answer.items() if k != "payload"}
    out.update(request_id=sr.request_id, key_id=r.key_id, derivation_path=r.derivation_path,
               initiator=r.initiator, digest=r.digest, payload_type=r.payload_type,
               payload_hash=r.payload_hash, expires_at=r.expires_at, network=dec.network,
               request=sr.to_json(), decoded=dec.to_dict())
    return out
