"""Key import: an existing secp256k1 private key moves into the appliance, and no node ever
sees it whole or writes a share in plaintext.

On the operator's offline machine (``appliance key import``)::

    appliance key import --private-key key.hex --cluster cluster.toml --threshold 2 \\
                         [--nodes node-1,node-2,node-3] [--chain-code HEX] --out bundle.json

splits the key into t-of-n Shamir shares with Feldman commitments
(:func:`appliance.tss.dealer.split_key`) and encrypts each share to its node's HSM transport
key from the cluster configuration (ECDH P-256 + HKDF + AES-GCM, :func:`hsm.encrypt_to`, bound
to the import id and the node id). The bundle holds only public values and those envelopes.

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
from appliance.tss.group import Q, Point, SystemRNG
from appliance_client.statements import import_request_params
from hsm.transport import encrypt_to

FORMAT = "appliance-key-import"
VERSION = 1


class ImportBundleError(ApplianceError, ValueError):
    code = "bad_import_bundle"


def share_context(import_id: bytes, node_id: str) -> bytes:
    """What a share's envelope is bound to (decrypting it for another import or node fails)."""
    return b"appliance/key-import/v1/" + import_id + b"/" + node_id.encode()


def parse_private_key(text: str) -> int:
    """A private key as hex (64 digits, optional 0x prefix, whitespace ignored)."""
    t = "".join(text.split()).lower()
    if t.startswith("0x"):
        t = t[2:]
    if len(t) != 64:
        raise ImportBundleError("the private key must be 32 bytes of hex (64 digits)")
    try:
        d = int(t, 16)
    except ValueError:
        raise ImportBundleError("the private key is not hex") from None
    if not 0 < d < Q:
        raise ImportBundleError("the private key must be in [1, n-1]")
    return d


@dataclass(frozen=True)
class Bundle:
    """A parsed, checked import bundle (public values and per-node envelopes)."""

    import_id: bytes
    threshold: int
    parties: list[int]
    node_ids: list[str]
    commitments: list[Point]
    chain_code: bytes
    envelopes: dict[str, bytes]

    @property
    def public_key(self) -> bytes:
        return self.commitments[0].to_bytes()

    def to_json(self) -> dict:
        return {
            "format": FORMAT, "version": VERSION, "import_id": self.import_id.hex(),
            "threshold": self.threshold, "nodes": list(self.node_ids), "parties": list(self.parties),
            "public_key": self.public_key.hex(), "chain_code": self.chain_code.hex(),
            "commitments": [c.to_bytes().hex() for c in self.commitments],
            "shares": {nid: env.hex() for nid, env in self.envelopes.items()},
        }


def request_params(bundle: Bundle) -> dict:
    """The params of the signed ``import`` request that authorizes this bundle (what the
    initiating admin signs and the other admins approve): the hash of the bundle's canonical
    JSON, its public key, threshold and nodes. Every node recomputes them from the bundle."""
    return import_request_params(bundle.to_json())


def build_bundle(private_key: int, cluster: ClusterConfig, threshold: int,
                 node_ids: list[str] | None = None, *, chain_code: bytes | None = None) -> Bundle:
    """Split and encrypt (run this offline). ``node_ids``: the key's nodes (default all)."""
    nodes = [cluster.node(n) for n in node_ids] if node_ids else list(cluster.nodes)
    if len({n.id for n in nodes}) != len(nodes) or len(nodes) < 2:
        raise ImportBundleError("a key needs at least two distinct nodes")
    if chain_code is not None and len(chain_code) != 32:
        raise ImportBundleError("the chain code must be 32 bytes")
    parties = sorted(n.index for n in nodes)
    import_id = secrets.token_bytes(16)
    split = split_key(private_key, threshold, parties, SystemRNG(), chain_code=chain_code, import_id=import_id)
    envelopes = {}
    for n in sorted(nodes, key=lambda n: n.index):
        envelopes[n.id] = encrypt_to(n.transport_key, split.shares[n.index].to_bytes(32, "big"),
                                     context=share_context(import_id, n.id))
    return Bundle(import_id, threshold, parties, [n.id for n in sorted(nodes, key=lambda n: n.index)],
                  list(split.commitments), split.chain_code, envelopes)


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
    if obj.get("format") != FORMAT or obj.get("version") != VERSION:
        raise ImportBundleError(f"not an {FORMAT} v{VERSION} bundle")
    try:
        import_id = bytes.fromhex(obj["import_id"])
        threshold = obj["threshold"]
        node_ids = list(obj["nodes"])
        chain_code = bytes.fromhex(obj["chain_code"])
        commitments = [Point.from_bytes(bytes.fromhex(c)) for c in obj["commitments"]]
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
    if len(commitments) != threshold or any(c.is_infinity for c in commitments):
        raise ImportBundleError("the commitment vector must have exactly t points (none at infinity)")
    if len(chain_code) != 32:
        raise ImportBundleError("the chain code must be 32 bytes")
    if "public_key" in obj and obj["public_key"] != commitments[0].to_bytes().hex():
        raise ImportBundleError("the public key is not the first commitment")
    ordered = [n.id for n in sorted(nodes, key=lambda n: n.index)]
    return Bundle(import_id, threshold, parties, ordered, commitments, chain_code, envelopes)
