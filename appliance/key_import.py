"""Key import: an existing private key (an ECDSA secp256k1 key, a BIP340 secret key or an
Ed25519 seed) moves into the appliance, and no node ever sees it whole or writes a share in
plaintext.

On the operator's offline machine (``appliance key import``)::

    appliance key import --private-key key.hex --cluster cluster.toml --threshold 2 \\
                         [--scheme ecdsa-secp256k1|schnorr-bip340|ed25519] \\
                         [--nodes node-1,node-2,node-3] [--chain-code HEX] --out bundle.json

splits the key into t-of-n Shamir shares with Feldman commitments in the scheme's group
(:func:`appliance.tss.dealer.split_key`; for FROST keys :func:`appliance.tss.frost.dealer.split_key`)
and encrypts each share to its node's HSM transport key from the cluster configuration (ECDH
P-256 + HKDF + AES-GCM, :func:`hsm.encrypt_to`, bound to the import id and the node id). The
bundle holds only public values and those envelopes.

Bundle versions: v1 is an ECDSA bundle (no ``scheme`` field; what earlier releases wrote and
still read); v2 carries ``scheme`` (``schnorr-bip340`` or ``ed25519``), so a node that knows only
v1 refuses a FROST bundle instead of importing it as an ECDSA key. In a v2 bundle the
commitments and ``public_key`` are the scheme's serialized group elements (``public_key`` is
the group key P: 33-byte SEC1 for BIP340, whose signatures verify under the Taproot output key
Q = output_key(P, b""); 32 bytes for Ed25519); ``chain_code`` is 32 bytes for BIP340 and
empty for Ed25519 (no derivation).

Online, an admin hands the bundle to any node (``POST /v1/keys/import``, ``appliance key
submit-import``). Every node decrypts its own envelope inside its HSM, checks the share against
the commitments (:func:`appliance.tss.dealer.accept_share`) before anything else — a share that
does not match is refused by that node, naming the problem — seals it, and the nodes run
aux-info. A refresh right after is recommended (the dealer's machine saw the whole key) and
offered (``"refresh": true`` runs it as part of the operation).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from appliance.config import ClusterConfig, PeerInfo
from appliance.errors import ApplianceError
from appliance.tss.dealer import split_key
from appliance.tss.frost import dealer as frost_dealer
from appliance.tss.frost import taproot
from appliance.tss.frost.dealer import IMPORT_SCHEMES
from appliance.tss.frost.suites import suite_for
from appliance.tss.group import Q, Point, SystemRNG
from appliance_client.statements import import_request_params
from hsm.transport import encrypt_to

FORMAT = "appliance-key-import"
VERSION = 1  # ECDSA bundles
VERSION_FROST = 2  # bundles with a ``scheme`` (FROST keys)
ECDSA = "ecdsa-secp256k1"


class ImportBundleError(ApplianceError, ValueError):
    code = "bad_import_bundle"


def share_context(import_id: bytes, node_id: str) -> bytes:
    """What a share's envelope is bound to (decrypting it for another import or node fails)."""
    return b"appliance/key-import/v1/" + import_id + b"/" + node_id.encode()


def _hex32(text: str) -> bytes:
    t = "".join(text.split()).lower()
    if t.startswith("0x"):
        t = t[2:]
    if len(t) != 64:
        raise ImportBundleError("the private key must be 32 bytes of hex (64 digits)")
    try:
        return bytes.fromhex(t)
    except ValueError:
        raise ImportBundleError("the private key is not hex") from None


def parse_private_key(text: str) -> int:
    """An ECDSA private key as hex (64 digits, optional 0x prefix, whitespace ignored)."""
    d = int.from_bytes(_hex32(text), "big")
    if not 0 < d < Q:
        raise ImportBundleError("the private key must be in [1, n-1]")
    return d


def parse_frost_secret(scheme: str, text: str) -> bytes:
    """A ``schnorr-bip340`` secret key (big-endian, in [1, n-1]) or an ``ed25519`` RFC 8032
    seed, as hex (64 digits, optional 0x prefix, whitespace ignored): its 32 bytes."""
    if scheme not in IMPORT_SCHEMES:
        raise ImportBundleError(f"scheme must be one of {ECDSA}, {', '.join(IMPORT_SCHEMES)}")
    raw = _hex32(text)
    try:
        frost_dealer.secret_scalar(scheme, raw)
    except ApplianceError as exc:
        raise ImportBundleError(str(exc)) from None
    return raw


@dataclass(frozen=True)
class Bundle:
    """A parsed, checked import bundle (public values and per-node envelopes)."""

    import_id: bytes
    threshold: int
    parties: list[int]
    node_ids: list[str]
    commitments: list[bytes]  # serialized elements of the scheme's group
    chain_code: bytes
    envelopes: dict[str, bytes]
    scheme: str = ECDSA

    @property
    def public_key(self) -> bytes:
        """The key as a key row stores it: ECDSA's compressed key, a FROST key's group key P."""
        return self.commitments[0]

    @property
    def is_frost(self) -> bool:
        return self.scheme != ECDSA

    @property
    def shown_public_key(self) -> bytes:
        """The key as the appliance shows it and its signatures verify under: ECDSA's
        compressed key; BIP340: the x-only Taproot output key Q = output_key(P, b"") (as
        appliance/keys/frost_keys.py shows a FROST key); Ed25519: the RFC 8032 key."""
        if self.scheme == "schnorr-bip340":
            return taproot.output_key(Point.from_bytes(self.public_key), b"").to_bytes()[1:]
        return self.public_key

    def points(self) -> list[Point]:
        """An ECDSA bundle's commitments as points."""
        return [Point.from_bytes(c) for c in self.commitments]

    def to_json(self) -> dict:
        head = ({"format": FORMAT, "version": VERSION_FROST, "scheme": self.scheme} if self.is_frost
                else {"format": FORMAT, "version": VERSION})
        return {
            **head, "import_id": self.import_id.hex(),
            "threshold": self.threshold, "nodes": list(self.node_ids), "parties": list(self.parties),
            "public_key": self.public_key.hex(), "chain_code": self.chain_code.hex(),
            "commitments": [c.hex() for c in self.commitments],
            "shares": {nid: env.hex() for nid, env in self.envelopes.items()},
        }


def request_params(bundle: Bundle) -> dict:
    """The params of the signed ``import`` request that authorizes this bundle (what the
    initiating admin signs and the other admins approve): the hash of the bundle's canonical
    JSON, its public key, threshold and nodes. Every node recomputes them from the bundle."""
    return import_request_params(bundle.to_json())


def build_bundle(private_key: int | bytes, cluster: ClusterConfig, threshold: int,
                 node_ids: list[str] | None = None, *, chain_code: bytes | None = None,
                 scheme: str = ECDSA) -> Bundle:
    """Split and encrypt (run this offline). ``node_ids``: the key's nodes (default all).
    ``private_key``: an ECDSA key as an int; for ``schnorr-bip340`` / ``ed25519`` the 32 bytes
    of :func:`parse_frost_secret` (a BIP340 secret key, an Ed25519 seed). ``chain_code``: a
    BIP340 or ECDSA key's (default random); an Ed25519 key has none."""
    nodes = [cluster.node(n) for n in node_ids] if node_ids else list(cluster.nodes)
    if len({n.id for n in nodes}) != len(nodes) or len(nodes) < 2:
        raise ImportBundleError("a key needs at least two distinct nodes")
    if chain_code is not None and len(chain_code) != 32:
        raise ImportBundleError("the chain code must be 32 bytes")
    parties = sorted(n.index for n in nodes)
    import_id = secrets.token_bytes(16)
    rng = SystemRNG()
    if scheme == ECDSA:
        if not isinstance(private_key, int):
            raise ImportBundleError("an ECDSA private key is an integer")
        split = split_key(private_key, threshold, parties, rng, chain_code=chain_code, import_id=import_id)
        commitments = [c.to_bytes() for c in split.commitments]
        shares = {j: s.to_bytes(32, "big") for j, s in split.shares.items()}
        chain = split.chain_code
    else:
        if scheme == "ed25519" and chain_code is not None:
            raise ImportBundleError("an ed25519 key has no chain code (no derivation)")
        if not isinstance(private_key, (bytes, bytearray)):
            raise ImportBundleError(f"a {scheme} secret is 32 bytes")
        try:
            fsplit = frost_dealer.split_key(scheme, bytes(private_key), threshold, parties, rng, import_id=import_id)
        except ApplianceError as exc:
            raise ImportBundleError(str(exc)) from None
        commitments, shares = list(fsplit.commitments), dict(fsplit.shares)
        chain = b"" if scheme == "ed25519" else (chain_code if chain_code is not None else rng.token_bytes(32))
    envelopes = {}
    for n in sorted(nodes, key=lambda n: n.index):
        envelopes[n.id] = encrypt_to(n.transport_key, shares[n.index], context=share_context(import_id, n.id))
    shares.clear()
    return Bundle(import_id, threshold, parties, [n.id for n in sorted(nodes, key=lambda n: n.index)],
                  commitments, chain, envelopes, scheme)


def parse_bundle_public(obj: object) -> Bundle:
    """A bundle read without the cluster configuration (a client making the signed import
    request): node ids and party indices as the bundle states them. The nodes check them."""
    if not isinstance(obj, dict) or not isinstance(obj.get("parties"), list):
        raise ImportBundleError("the bundle must be a JSON object with its party indices")
    try:
        parties = {int(p): str(n) for p, n in zip(obj["parties"], list(obj.get("nodes") or []))}
    except (TypeError, ValueError):
        raise ImportBundleError("the bundle's parties and nodes do not pair up") from None
    cluster = ClusterConfig(id="bundle", nodes=tuple(
        PeerInfo(id=n, index=p, url="", tls_cert="", identity_key=b"", transport_key=b"")
        for p, n in parties.items()))
    return parse_bundle(obj, cluster)


def parse_bundle(obj: object, cluster: ClusterConfig) -> Bundle:
    """Check a bundle's shape and public values against the cluster configuration."""
    if not isinstance(obj, dict):
        raise ImportBundleError("the bundle must be a JSON object")
    if obj.get("format") != FORMAT or obj.get("version") not in (VERSION, VERSION_FROST):
        raise ImportBundleError(f"not an {FORMAT} v{VERSION} or v{VERSION_FROST} bundle")
    scheme = obj.get("scheme", ECDSA) if obj["version"] == VERSION_FROST else ECDSA
    if obj["version"] == VERSION and "scheme" in obj:
        raise ImportBundleError(f"a v{VERSION} bundle is an {ECDSA} bundle (a scheme is named in v{VERSION_FROST})")
    if obj["version"] == VERSION_FROST and scheme not in IMPORT_SCHEMES:
        raise ImportBundleError(f"a v{VERSION_FROST} bundle's scheme must be one of {', '.join(IMPORT_SCHEMES)}")
    try:
        import_id = bytes.fromhex(obj["import_id"])
        threshold = obj["threshold"]
        node_ids = list(obj["nodes"])
        chain_code = bytes.fromhex(obj["chain_code"])
        commitments = [_element(scheme, bytes.fromhex(c)) for c in obj["commitments"]]
        envelopes = {str(k): bytes.fromhex(v) for k, v in dict(obj["shares"]).items()}
    except (KeyError, TypeError, ValueError, ApplianceError) as exc:
        raise ImportBundleError(f"malformed bundle: {type(exc).__name__}: {exc}"[:200]) from None
    if len(import_id) != 16:
        raise ImportBundleError("import_id must be 16 bytes")
    if not isinstance(threshold, int) or isinstance(threshold, bool) or not 1 <= threshold <= len(node_ids):
        raise ImportBundleError("threshold must be between 1 and the number of nodes")
    if len(set(node_ids)) != len(node_ids) or len(node_ids) < 2:
        raise ImportBundleError("nodes must be at least two distinct node ids")
    try:
        nodes = [cluster.node(str(n)) for n in node_ids]
    except ApplianceError as exc:
        raise ImportBundleError(str(exc)) from None
    parties = sorted(n.index for n in nodes)
    if "parties" in obj and sorted(obj["parties"]) != parties:
        raise ImportBundleError("the bundle's party indices do not match the cluster configuration")
    if set(envelopes) != set(node_ids):
        raise ImportBundleError("the bundle needs exactly one encrypted share per node")
    if len(commitments) != threshold:
        raise ImportBundleError("the commitment vector must have exactly t points (none at infinity)")
    if len(chain_code) != (0 if scheme == "ed25519" else 32):
        raise ImportBundleError("the chain code must be 32 bytes" if scheme != "ed25519"
                                else "an ed25519 bundle has no chain code")
    if "public_key" in obj and obj["public_key"] != commitments[0].hex():
        raise ImportBundleError("the public key is not the first commitment")
    ordered = [n.id for n in sorted(nodes, key=lambda n: n.index)]
    return Bundle(import_id, threshold, parties, ordered, commitments, chain_code, envelopes, scheme)


def _element(scheme: str, data: bytes) -> bytes:
    """A commitment checked as an element of the scheme's group (never the identity), in its
    canonical encoding."""
    if scheme == ECDSA:
        return Point.from_bytes(data).to_bytes()  # strict; EncodingError for infinity
    G = suite_for(scheme).G
    return G.serialize_element(G.deserialize_element(data))
