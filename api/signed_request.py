"""Reading a signed client request: what the headers alone can refuse is refused before a
byte of the body is read (an unknown key id must not cost the node a 2 MiB body), then the
body is read up to its bound and the signature verified over it (:mod:`api.auth`)."""

from __future__ import annotations

from aiohttp import web

from api.auth import AuthError, RequestVerifier, authority_of


class Refusal(Exception):
    """The request is refused: ``code`` (its status in api/errors.py), ``message``; ``unread``:
    its body was not read (the connection is closed after the answer rather than drained)."""

    def __init__(self, code: str, message: str, *, unread: bool = False) -> None:
        super().__init__(message)
        self.code, self.message, self.unread = code, message, unread


def node_verifier(node) -> RequestVerifier:
    """The verifier of a node: its policy's users, its own authority (host:port of its URL in
    the cluster configuration), and its durable nonce ledger (in memory without a store)."""
    return RequestVerifier({u.id: u.key.public_key() for u in node.policy.users},
                           authority=authority_of(node.me.url),
                           nonces=node.store.nonces if node.store is not None else None)


async def authenticate(request: web.Request, verifier: RequestVerifier, max_body: int) -> tuple[str, bytes]:
    """The authenticated user id and the body, or :class:`Refusal`."""
    headers = list(request.headers.items())
    try:  # nonce, created, covered components, key id: before any body byte is read
        verifier.precheck(headers)
    except AuthError as exc:
        raise Refusal("unauthenticated", exc.message, unread=True) from None
    if request.content_length is not None and request.content_length > max_body:
        raise Refusal("body_too_large", "request body too large", unread=True)
    chunks, size = [], 0
    while chunk := await request.content.read(65536):
        size += len(chunk)
        if size > max_body:
            raise Refusal("body_too_large", "request body too large", unread=True)
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        return verifier.verify(request.method, str(request.url), headers, raw), raw
    except AuthError as exc:
        raise Refusal("unauthenticated", exc.message) from None
