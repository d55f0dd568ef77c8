"""FROST signing (RFC 9591 §5) for a ``FrostKeyShare``: single-use nonces, the signer's checks
of what a coordinator hands it, the coordinator's identifiable aggregation, and the two-round
sans-I/O protocol in this package's ``Party`` form.

Key as used for signing: PK and every (sk_i, PK_i) as stored; for ``schnorr-bip340`` with a
``merkle_root`` (b"" for a key-path-only output, or the 32-byte script-tree root) the BIP341
tweak of ``taproot.tweak_key`` is applied first, to the share and to every verification
share, so a bad share is still named against PK_i'. ``merkle_root=None`` signs for the
untweaked key.

Nonces: ``FrostNonces`` holds (d_i, e_i) and its commitment. ``consume()`` succeeds once per
object and its copies (``NonceSpent`` after), and a spent object is not serialized again.
Across a seal the node's store keeps it single-use (one HSM key per nonce, destroyed on
spend — the integration's part): reusing (d_i, e_i) for two different binding factors or
challenges gives two linear equations that reveal sk_i.

The signer's checks of a ``SigningPackage`` (``sign_package``), each a ``SigningRefused``
whose message starts with its number (first, nonces of another index or scheme are a local
misuse, ``ParameterError``, and are not consumed):
1. the package's message is the one this signer was asked (approved) to sign;
2. the signer set has at least t members, all participants of the key, this signer among them;
3. this signer's commitment in the package is the one its nonces made;
4. every commitment decodes as two valid elements other than the identity;
then ρ_i, R and c are computed by the signer itself from the message and the full list, so a
coordinator that shows different lists or messages to different signers gets shares that do
not combine, and no ROS/Drijvers-style choice of binding factors is possible.

The coordinator's checks (``aggregate_package``): its package's signer set is at least t
participants of the key (``ParameterError`` otherwise); every share decodes (check 5) and
z_i·G == R_i + c·λ_i·PK_i (check 6, RFC 9591 §5.4); failures are collected and the abort names
every signer whose share failed; the aggregate is verified before it is returned.

The protocol (``FrostSignParty``), every party a signer and its own coordinator:
Round 1 (broadcast, echoed): the session-parameter hash (scheme, key fingerprint, message,
  signer set, tweak) and (D_i, E_i) (fresh, or from a pooled ``FrostNonces``). A party given
  another message or signer set stops the session without blame before any share is sent.
Round 2 (broadcast): z_i over the commitment list of round 1 (each commitment signed by its
  sender, so a relay cannot change one: it is dropped); the echo confirms everyone saw the
  same list; each share is checked (6) and the result is the verified signature.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from appliance.errors import ApplianceError, EncodingError, ParameterError
from appliance.tss import wire
from appliance.tss.frost import core, taproot
from appliance.tss.frost.keyshare import FrostKeyShare
from appliance.tss.frost.suites import suite_for
from appliance.tss.group import RNG
from appliance.tss.protocol import (
    Done,
    MessageSigner,
    MessageVerifier,
    Misbehaviour,
    Party,
    ProtocolAbort,
    Round,
    setup_hash,
)
from appliance.tss.single_use import SingleUse


_SIGNER_SET = "the signer set must be at least t participants of the key"


class NonceSpent(ApplianceError):
    """A FROST nonce pair was offered for a second signature share."""

    code = "nonce_spent"


class SigningRefused(ApplianceError):
    """An honest signer refuses what the coordinator handed it (numbered checks above)."""

    code = "signing_refused"


@dataclass(frozen=True)
class FrostNonces:
    """One signer's (d_i, e_i) with its commitment (D_i, E_i). Secret: seal it, use it once."""

    nonce_id: bytes
    scheme: str
    index: int
    hiding: bytes
    binding: bytes
    D: bytes
    E: bytes
    _use: SingleUse = field(default_factory=lambda: SingleUse("a nonce"), init=False, repr=False, compare=False)

    def __repr__(self) -> str:
        return f"FrostNonces(id={self.nonce_id.hex()}, index={self.index}, <secret>)"

    @property
    def spent(self) -> bool:
        return self._use.spent

    def consume(self) -> core.Nonces:
        """The nonce pair, once; NonceSpent on any later call (on this object or a copy)."""
        if not self._use.claim():
            raise NonceSpent("this nonce was already used")
        G = suite_for(self.scheme).G
        return core.Nonces(G.deserialize_scalar(self.hiding), G.deserialize_scalar(self.binding))

    def to_bytes(self) -> bytes:
        if self._use.spent:
            raise NonceSpent("a spent nonce is not serialized again")
        return wire.encode(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> "FrostNonces":
        return wire.decode(data, cls)


def new_nonces(share: FrostKeyShare, rng: RNG) -> FrostNonces:
    """Round one (RFC 9591 §5.1) ahead of time, for a pool."""
    S = share.suite
    G = S.G
    nonces, com = core.commit(S, share.identifier(share.index), share.sk(), rng)
    return FrostNonces(rng.token_bytes(16), share.scheme, share.index,
                       G.serialize_scalar(nonces.hiding), G.serialize_scalar(nonces.binding),
                       G.serialize_element(com.hiding), G.serialize_element(com.binding))


@dataclass(frozen=True)
class SigningPackage:
    """What a coordinator sends each signer: the message and party -> (D_j, E_j)."""

    message: bytes
    commitments: dict[int, list[bytes]]


def _keys(share: FrostKeyShare, merkle_root: bytes | None) -> tuple[Any, Any, dict[int, Any]]:
    """(sk_i, PK, {j: PK_j}) as signing uses them (tweaked for a Taproot output key)."""
    S = share.suite
    sk, PK = share.sk(), share.PK()
    PKs = {j: share.PK_i(j) for j in share.participants}
    if merkle_root is None:
        return sk, PK, PKs
    if not S.taproot:
        raise ParameterError("a taproot tweak needs a schnorr-bip340 key")
    sk, _, Q = taproot.tweak_key(sk, PKs[share.index], PK, merkle_root)
    return sk, Q, {j: taproot.tweak_public(X, PK, merkle_root)[0] for j, X in PKs.items()}


def _commitment_list(share: FrostKeyShare, commitments: dict[int, list[bytes]]) -> list[core.Commitment]:
    G = share.suite.G
    out = []
    for j, pair in commitments.items():
        if len(pair) != 2:
            raise EncodingError("a commitment is two elements")
        out.append(core.Commitment(share.identifier(j), G.deserialize_element(pair[0]),
                                   G.deserialize_element(pair[1])))
    return sorted(out, key=lambda c: core._id_int(share.suite, c.identifier))


def _is_signer_set(share: FrostKeyShare, signers: set[int]) -> bool:
    return len(signers) >= share.threshold and signers <= set(share.participants)


def sign_package(share: FrostKeyShare, nonces: FrostNonces, package: SigningPackage,
                 approved_message: bytes, *, merkle_root: bytes | None = None) -> bytes:
    """The signer's round two: checks 1-4, then z_i (the nonces are consumed)."""
    if nonces.index != share.index or nonces.scheme != share.scheme:
        raise ParameterError("these nonces belong to another share")
    if package.message != approved_message:
        raise SigningRefused("check 1: the message is not the one this signer approved")
    signers = set(package.commitments)
    if not _is_signer_set(share, signers) or share.index not in signers:
        raise SigningRefused("check 2: the signer set is too small, has strangers or leaves this signer out")
    if package.commitments[share.index] != [nonces.D, nonces.E]:
        raise SigningRefused("check 3: this signer's commitment was changed")
    try:
        commitments = _commitment_list(share, package.commitments)
    except EncodingError as exc:
        raise SigningRefused(f"check 4: {exc}") from exc
    S = share.suite
    sk, PK, _ = _keys(share, merkle_root)
    z = core.sign(S, share.identifier(share.index), sk, PK, nonces.consume(), package.message, commitments)
    return S.G.serialize_scalar(z)


def aggregate_package(share: FrostKeyShare, package: SigningPackage, shares: dict[int, bytes], *,
                      merkle_root: bytes | None = None) -> bytes:
    """The coordinator: check every z_j (naming every bad one), aggregate, verify."""
    S = share.suite
    G = S.G
    if not _is_signer_set(share, set(package.commitments)):
        raise ParameterError(_SIGNER_SET)
    commitments = _commitment_list(share, package.commitments)
    _, PK, PKs = _keys(share, merkle_root)
    ctx = core.signing_context(S, PK, package.message, commitments)
    by_party = dict(zip(sorted(package.commitments, key=lambda j: core._id_int(S, share.identifier(j))),
                        commitments))
    faults: dict[int, str] = {}
    zs = []
    for j in sorted(package.commitments):
        try:
            z_j = G.deserialize_scalar(shares[j])
        except (KeyError, EncodingError):
            faults[j] = "check 5: signature share missing or not a scalar"
            continue
        if not core.verify_signature_share(S, ctx, by_party[j], PKs[j], z_j):
            faults[j] = "check 6: signature share does not verify against the signer's verification share"
        zs.append(z_j)
    if faults:
        raise ProtocolAbort("; ".join(f"party {j}: {why}" for j, why in sorted(faults.items())), faults,
                            protocol=FrostSignParty.PROTOCOL, round=2)
    sig = core.aggregate(S, ctx, zs)
    if not core.verify_signature(S, package.message, sig, PK):
        raise ProtocolAbort("internal: the aggregate signature does not verify", protocol=FrostSignParty.PROTOCOL)
    return sig


# --------------------------------------------------------------------------------------
# the two-round protocol


@dataclass(frozen=True)
class SignR1:
    setup: bytes
    D: bytes
    E: bytes


@dataclass(frozen=True)
class SignR2:
    z: bytes


class FrostSignParty(Party):
    PROTOCOL = "frost-sign"

    def __init__(self, session_id: bytes, share: FrostKeyShare, signers: list[int], message: bytes,
                 signer: MessageSigner, verifier: MessageVerifier, rng: RNG, *,
                 nonces: FrostNonces | None = None, merkle_root: bytes | None = None) -> None:
        super().__init__(session_id, share.index, signers, signer, verifier, rng)
        if not _is_signer_set(share, set(self.parties)):
            raise ParameterError(_SIGNER_SET)
        if nonces is not None and (nonces.index != share.index or nonces.scheme != share.scheme):
            raise ParameterError("these nonces belong to another share")
        self.share = share
        self.message = bytes(message)
        self.merkle_root = merkle_root
        self.nonces = nonces if nonces is not None else new_nonces(share, rng)
        self.setup = setup_hash(self.PROTOCOL, scheme=share.scheme, key=share.public_fingerprint(),
                                message=hashlib.sha256(self.message).digest(), signers=self.parties,
                                tweak=b"-" if merkle_root is None else b"+" + merkle_root)

    def _first_round(self) -> "SignRound1":
        return SignRound1(self)


@dataclass(eq=False)
class SignRound1(Round):
    """Send (D_i, E_i) with the session parameters; check everyone's commitments decode."""

    broadcast = SignR1
    echo = True
    party: FrostSignParty

    def send(self):
        p = self.party
        return SignR1(p.setup, p.nonces.D, p.nonces.E), {}

    def agree(self, broadcasts: dict[int, SignR1]) -> None:
        self.party.require_same_setup(self.party.setup, {j: m.setup for j, m in broadcasts.items()})

    def check(self, j: int, msg: SignR1, direct: None) -> None:
        G = self.party.share.suite.G
        try:
            G.deserialize_element(msg.D), G.deserialize_element(msg.E)
        except EncodingError as exc:
            raise Misbehaviour(f"check 4: {exc}") from exc

    def finish(self, broadcasts: dict[int, SignR1], directs: dict) -> Round:
        p = self.party
        package = SigningPackage(p.message, {**{j: [m.D, m.E] for j, m in broadcasts.items()},
                                             p.me: [p.nonces.D, p.nonces.E]})
        return self.next(package=package)


@dataclass(eq=False)
class SignRound2(Round):
    """Send z_i; check every z_j against PK_j; aggregate and verify."""

    broadcast = SignR2
    party: FrostSignParty
    package: SigningPackage

    _own: bytes = field(default=b"", init=False)

    def send(self):
        p = self.party
        self._own = sign_package(p.share, p.nonces, self.package, p.message, merkle_root=p.merkle_root)
        return SignR2(self._own), {}

    def finish(self, broadcasts: dict[int, SignR2], directs: dict) -> Done:
        p = self.party
        shares = {**{j: m.z for j, m in broadcasts.items()}, p.me: self._own}
        return Done(aggregate_package(p.share, self.package, shares, merkle_root=p.merkle_root))


FrostSignParty.ROUNDS = {1: SignRound1, 2: SignRound2}
