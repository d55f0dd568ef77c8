"""The JSON bodies of the client routes as msgspec Structs: decoded once at the edge
(:func:`api.routes.common.body_of`) and the source of ``/openapi.json``'s schemas.

Each request body names, per field, the error code the service gives for a bad value of it
(:attr:`field_codes`) and for a missing or null one (:attr:`missing_codes`), so a body refused
here answers the same code the service would have; anything else is ``bad_body``.

Signed statements are typed (:class:`SignedStatement`, its :class:`RequestStatement` with the
fields of :class:`appliance.policy.Request`) and refuse unknown fields, as the policy does: a
statement is handed on with exactly the fields it was signed with.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from appliance.ids import GRAMMARS
from appliance.policy import BITCOIN_NETWORKS, PAYLOAD_TYPES, SCHEMES

Digest = Annotated[str, Meta(pattern="^[0-9a-fA-F]{64}$", description="32-byte digest, hex")]
Hex32 = Annotated[str, Meta(pattern="^[0-9a-f]{64}$")]
NodeId = Annotated[str, Meta(pattern=f"^{GRAMMARS['node_id'].pattern}$")]
KeyId = Annotated[str, Meta(pattern=f"^{GRAMMARS['key_id'].pattern}$")]
PaillierBits = Literal[2048, 3072]
Scheme = Literal[SCHEMES]  # type: ignore[valid-type]
PayloadType = Literal[PAYLOAD_TYPES]  # type: ignore[valid-type]
Network = Literal[BITCOIN_NETWORKS]  # type: ignore[valid-type]


class Body(Struct):
    """A request body: which code a bad (``field_codes``) or missing (``missing_codes``) field
    answers."""

    field_codes: ClassVar[dict[str, str]] = {}
    missing_codes: ClassVar[dict[str, str]] = {}


# ---------------------------------------------------------------------------------------
# signed statements


class RequestStatement(Struct, forbid_unknown_fields=True):
    """What an initiator signs (appliance.policy.Request; every field present, null allowed
    where the policy allows it)."""

    type: str
    cluster_id: str
    policy_hash: Hex32
    action: str
    key_id: str | None
    initiator: str
    nonce: str
    created_at: int
    expires_at: int
    derivation_path: str | None
    digest: str | None
    payload_type: str | None
    payload_hash: str | None
    params: dict[str, Any] | None
    network: str | None


class SignedStatement(Struct, forbid_unknown_fields=True):
    """The initiator's signed request (appliance.policy.make_request; the client library makes it)."""

    statement: RequestStatement
    signature: Annotated[str, Meta(description="the initiator's signature of the canonical statement, hex")]


B64url = Annotated[str, Meta(pattern="^[A-Za-z0-9_-]+$", max_length=5462,
                             description="unpadded base64url")]


class WebAuthnAssertion(Struct, forbid_unknown_fields=True):
    """A passkey's assertion over an approval statement (navigator.credentials.get with
    challenge = SHA-256 of the statement's canonical JSON), each field base64url."""

    credential_id: B64url
    authenticator_data: B64url
    client_data_json: B64url
    signature: B64url


class SignedDecision(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A user's signed decision on a request (appliance.policy.make_approval): approve, reject
    or the initiator's cancel; its approver is the authenticated user. Signed with the user's
    key file (``signature``, hex) or with a passkey (``webauthn``): exactly one of them."""

    statement: dict[str, Any]
    signature: str | UnsetType = UNSET
    webauthn: WebAuthnAssertion | UnsetType = UNSET

    def __post_init__(self) -> None:
        if (self.signature is UNSET) == (self.webauthn is UNSET):
            raise ValueError("a decision carries signature or webauthn (one of them)")


_REQUEST_CODES = {"request": "bad_request_statement"}
_REQUEST_MISSING = {"request": "missing_request"}


# ---------------------------------------------------------------------------------------
# request bodies


class CreateKey(Body):
    field_codes: ClassVar = {"threshold": "bad_threshold", "nodes": "bad_nodes",
                             "paillier_bits": "bad_paillier_bits", "scheme": "bad_scheme", **_REQUEST_CODES}
    missing_codes: ClassVar = {"threshold": "bad_threshold", **_REQUEST_MISSING}

    threshold: Annotated[int, Meta(ge=1)]
    request: SignedStatement
    nodes: Annotated[list[NodeId], Meta(description="node ids (default all)")] | None = None
    paillier_bits: PaillierBits | None = None
    scheme: Annotated[Scheme, Meta(description=(
        "ecdsa-secp256k1 (CGGMP, the default), schnorr-bip340 or ed25519 (FROST); other than the "
        "default, the signed request's params carry it too"))] | None = None


class ImportKey(Body):
    field_codes: ClassVar = {"bundle": "bad_import_bundle", "paillier_bits": "bad_paillier_bits",
                             **_REQUEST_CODES}
    missing_codes: ClassVar = {"bundle": "bad_import_bundle", **_REQUEST_MISSING}

    bundle: Annotated[dict[str, Any], Meta(description="made offline by `appliance key import` (version 1: an "
                                           "ECDSA key; version 2: its `scheme`, schnorr-bip340 or ed25519)")]
    request: Annotated[SignedStatement, Meta(description="the initiator's signed import request: params "
                                             "bundle_hash, public_key, threshold, nodes, and a version-2 "
                                             "bundle's scheme")]
    paillier_bits: PaillierBits | UnsetType = UNSET


#: a signed statement the service checks itself, after the fields it reads first (documented
#: as a SignedStatement): the sign-request service names a malformed payload before the
#: statement, whose payload_hash a client could not make for it
LateStatement = Annotated[Any, Meta(extra_json_schema={"$ref": "#/components/schemas/SignedStatement"})]


class CreateSignRequest(Body):
    field_codes: ClassVar = {"digest": "bad_digest", "derivation_path": "bad_derivation_path",
                             "signers": "bad_signers", "payload_type": "bad_payload_type",
                             "network": "bad_network"}
    missing_codes: ClassVar = _REQUEST_MISSING

    request: LateStatement
    digest: Digest | None = None
    derivation_path: str | None = None
    signers: Annotated[list[NodeId], Meta(description="node ids to sign")] | None = None
    payload: Annotated[Any, Meta(description="psbt: base64; eth_tx: hex of the unsigned "
                                 "transaction; eip712: the typed-data object; message (signs its "
                                 "SHA-256) and eip191 (personal_sign): the text, 1 to 4096 bytes "
                                 "of UTF-8")] = None
    payload_type: PayloadType | None = None
    network: Annotated[Network, Meta(description="Bitcoin network of a PSBT (default: the key "
                                     "rule's)")] | None = None


class Decide(Body):
    """An approval, rejection or cancel of a sign request, or an approval of a key operation."""

    field_codes: ClassVar = {"approval": "bad_approval"}
    missing_codes: ClassVar = {"approval": "missing_approval"}

    approval: SignedDecision


class SignatureParts(Struct, omit_defaults=True):
    """Exactly one form: ``der``, ``r`` and ``s``, ``rsv`` or ``jws`` (ECDSA), or ``sig``
    (BIP340 or Ed25519)."""

    der: Annotated[str, Meta(description="strict DER, hex")] | None = None
    r: Annotated[str, Meta(description="32 bytes hex (with s)")] | None = None
    s: Annotated[str, Meta(description="32 bytes hex (with r)")] | None = None
    rsv: Annotated[str, Meta(description="65 bytes hex: r || s || v, v 27 or 28 (or 0 or 1)")] | None = None
    jws: Annotated[str, Meta(description="ES256K JWS signature: base64url of r || s")] | None = None
    sig: Annotated[str, Meta(description="64 bytes hex: a BIP340 or Ed25519 (RFC 8032) signature")] | None = None


class Verify(Body):
    field_codes: ClassVar = {"digest": "bad_digest", "message": "bad_message",
                             "message_encoding": "bad_message_encoding", "signature": "bad_signature_format",
                             "public_key": "bad_public_key", "key_id": "bad_id", "scheme": "bad_scheme"}
    missing_codes: ClassVar = {"signature": "bad_signature_format"}

    signature: Annotated[str | SignatureParts, Meta(
        description="DER hex, or {der}, {r, s}, {rsv} or {jws}; {sig} for schnorr-bip340 and ed25519")]
    digest: Annotated[str, Meta(description="32-byte digest, hex (or message)")] | None = None
    message: Annotated[str, Meta(description="the message (or digest); the node verifies its SHA-256")] | None = None
    message_encoding: Annotated[Literal["hex", "base64", "utf8"], Meta(
        description="how message is written (default hex)")] | None = None
    public_key: Annotated[str, Meta(description="SEC1 hex, or 32 bytes hex for a Schnorr scheme (or key_id)")
                          ] | None = None
    key_id: str | None = None
    scheme: Annotated[Scheme, Meta(description=(
        "the signature's scheme (default ecdsa-secp256k1; with key_id, the key's): schnorr-bip340 verifies "
        "BIP340 over the digest or the message's SHA-256, ed25519 RFC 8032 over the digest or the message "
        "itself"))] | None = None


class Refresh(Body):
    field_codes: ClassVar = _REQUEST_CODES
    missing_codes: ClassVar = _REQUEST_MISSING

    request: SignedStatement


class KeyLifecycle(Body):
    """``POST /v1/keys/{key_id}/disable|enable|delete``: the initiator's signed request (action
    ``disable``, ``enable`` or ``delete``, params ``{}``)."""
    field_codes: ClassVar = _REQUEST_CODES
    missing_codes: ClassVar = _REQUEST_MISSING

    request: SignedStatement


class Reshare(Body):
    field_codes: ClassVar = {"threshold": "bad_threshold", "nodes": "bad_nodes", **_REQUEST_CODES}
    missing_codes: ClassVar = {"threshold": "bad_threshold", "nodes": "bad_nodes", **_REQUEST_MISSING}

    threshold: Annotated[int, Meta(ge=1)]
    nodes: list[NodeId]
    request: SignedStatement


class PolicySignature(Struct, forbid_unknown_fields=True):
    user: str
    signature: str


class PolicyUpdate(Body):
    field_codes: ClassVar = {"policy": "bad_policy_update", "previous_policy_hash": "bad_policy_update",
                             "signatures": "bad_policy_update"}
    missing_codes: ClassVar = field_codes

    policy: Annotated[dict[str, Any], Meta(description="the new policy (canonical form)")]
    previous_policy_hash: Hex32
    signatures: list[PolicySignature]


class CertUpdate(Body, forbid_unknown_fields=True):
    """A node's new pinned TLS certificate (appliance.policy.CertUpdate), signed by the
    policy_change quorum of the policy in force."""

    field_codes: ClassVar = {f: "bad_cert_update" for f in ("cluster_id", "policy_hash", "version", "node_id",
                                                             "previous_cert_sha256", "tls_cert", "signatures")}
    missing_codes: ClassVar = field_codes

    cluster_id: str
    policy_hash: Annotated[Hex32, Meta(description="the policy whose admins signed it")]
    version: Annotated[int, Meta(ge=1, description="the next certificate update version")]
    node_id: NodeId
    previous_cert_sha256: Annotated[Hex32, Meta(description="SHA-256 of the certificate it replaces (DER)")]
    tls_cert: Annotated[str, Meta(max_length=16384, description="the new leaf certificate, PEM")]
    signatures: list[PolicySignature]


class Empty(Body):
    """A body with nothing in it (``{}`` or none)."""


class PeerObject(Body):
    """A peer's JSON object, checked field by field by the service it goes to (peer routes
    are not typed here yet)."""


# ---------------------------------------------------------------------------------------
# response bodies (documented; the services build them)


Uncompressed = Annotated[str, Meta(pattern="^04[0-9a-f]{128}$", description="SEC1 uncompressed, hex")]
SpkiDer = Annotated[str, Meta(description=(
    "SubjectPublicKeyInfo DER (id-ecPublicKey, secp256k1), base64, as AWS KMS GetPublicKey"))]
SpkiPem = Annotated[str, Meta(pattern="^-----BEGIN PUBLIC KEY-----\n", description="the same SubjectPublicKeyInfo, PEM")]


class Addresses(Struct):
    eth: Annotated[str, Meta(description="EIP-55")]
    p2wpkh: Annotated[str, Meta(description="bech32, of the compressed key, on network")]
    p2pkh: Annotated[str, Meta(description="base58, of the compressed key, on network")]
    network: Annotated[Network, Meta(description="the key rule's Bitcoin network")]


class Key(Struct):
    key_id: str
    public_key: Annotated[str | None, Meta(description=(
        "ecdsa-secp256k1: compressed SEC1, hex; schnorr-bip340: the x-only BIP341 output key "
        "Q = P + H_TapTweak(P)·G (what signatures verify under); ed25519: the 32-byte key"))]
    threshold: int
    nodes: list[str]
    epoch: int
    paillier_bits: Annotated[int, Meta(description="0 for a FROST key (no Paillier modulus)")]
    status: str
    created: float
    scheme: Scheme = "ecdsa-secp256k1"
    internal_key: Annotated[str, Meta(description=(
        "schnorr-bip340: the DKG's x-only key P (the Taproot internal key; never an output key "
        "itself)"))] | None = None
    p2tr: Annotated[str, Meta(description="schnorr-bip340: bech32m P2TR address of Q (key path "
                              "only), on network")] | None = None
    network: Network | None = None
    public_key_uncompressed: Uncompressed | None = None
    public_key_spki_der: SpkiDer | None = None
    public_key_pem: SpkiPem | None = None
    addresses: Addresses | None = None
    presignatures: Annotated[dict[str, int], Meta(
        description="presignatures ready on this node per signer set (node ids joined by commas)")] | None = None


NextCursor = Annotated[str | None, Meta(description=(
    "pass as ?cursor= for the next page; null on the last page"))]


class KeyList(Struct):
    keys: list[Key]
    next_cursor: NextCursor = None


class Signature(Struct):
    """An ECDSA signature over secp256k1, low-S (``der``, ``r``, ``s``...); for a Schnorr or
    Ed25519 key ``sig`` only."""

    der: Annotated[str, Meta(description="DER, hex")] | None = None
    r: Hex32 | None = None
    s: Hex32 | None = None
    sig: Annotated[str, Meta(pattern="^[0-9a-f]{128}$", description=(
        "schnorr-bip340 and ed25519 keys: the 64-byte BIP340 or RFC 8032 signature, hex"))] | None = None
    recovery_id: Annotated[int, Meta(ge=0, le=3)] | None = None
    rsv: Annotated[str, Meta(pattern="^[0-9a-f]{128}(1b|1c)$", description=(
        "65 bytes hex: r || s || v with v = 27 + recovery_id (Ethereum's ecrecover form); "
        "absent without a recovery id 0 or 1"))] | None = None
    jws: Annotated[str, Meta(pattern="^[A-Za-z0-9_-]{86}$", description=(
        "the ES256K JWS Signature (RFC 8812): base64url of r || s; a compact JWS is "
        "header.payload.jws when the digest was SHA-256 of the ASCII header.payload"))] | None = None


class ApprovalStatement(Struct):
    """What a passkey signs for one decision (GET /v1/sign-requests/{id}/approval-statement)."""

    statement: Annotated[dict[str, Any], Meta(description="the approval statement (type, the request's "
                                              "binding, approver, decision, signed_at, expires_at): "
                                              "post it back unchanged")]
    challenge: Annotated[str, Meta(description="base64url SHA-256 of the statement's canonical JSON "
                                   "(RFC 8785): the WebAuthn challenge")]
    credential_ids: Annotated[list[str], Meta(description="the caller's passkeys in the policy "
                                              "(base64url): allowCredentials")]
    rp_id: Annotated[str | None, Meta(description="the policy's [webauthn].rp_id (null: none)")]


class DecisionView(Struct, omit_defaults=True):
    approver: str
    decision: str
    signed_at: int | None = None
    reason: Annotated[str | None, Meta(description="a rejection's reason, signed with it")] = None


class PublicError(Struct):
    """A failed operation's or request's recorded error, with its HTTP status."""

    status: int
    code: str
    message: str | None = None
    culprits: list[str] | None = None
    missing_nodes: list[str] | None = None


class KeyVersion(Struct):
    epoch: int
    created: Annotated[float, Meta(description="its sealed share stored on this node (Unix seconds)")]
    committed: Annotated[float | None, Meta(description="put in use (every holder had it)")] = None
    superseded: Annotated[float | None, Meta(description="a later epoch put in use, or the key deleted")] = None
    destroyed: Annotated[float | None, Meta(description="its sealed share destroyed here")] = None


class KeyVersions(Struct):
    key_id: str
    status: str
    epoch: int
    created: float
    versions: list[KeyVersion]


class PhaseDone(Struct):
    """A phase the operation has finished (or left) and how long it took on the coordinator."""

    phase: str
    done: int
    total: int
    ms: float


class Progress(Struct):
    """What a key operation is doing now (api/README.md, Progress): ``phase`` is one of
    ``waiting_for_approval`` (approvals counted of those needed), ``keygen``, ``reshare``,
    ``aux`` or ``refresh`` (protocol rounds finished), ``primes`` (primes in hand of the four an
    aux-info run needs), ``aux_keys`` (Paillier and ring-Pedersen keys made), ``parties`` (other
    parties' results in), ``commit``; as the coordinating node sees it."""

    phase: str
    done: Annotated[int, Meta(ge=0)]
    total: Annotated[int, Meta(ge=1)]
    completed: list[PhaseDone]
    detail: str | None = None
    updated: Annotated[float, Meta(description="when it last changed (Unix seconds)")] | None = None


class Operation(Struct):
    operation_id: str
    kind: str
    key_id: str | None
    status: str
    created: float
    updated: float
    result: dict[str, Any] | None = None
    error: PublicError | None = None
    request: SignedStatement | None = None
    decisions: list[DecisionView] | None = None
    progress: Progress | None = None


class SignRequest(Struct):
    request_id: str
    key_id: str
    status: str
    digest: str | None = None
    derivation_path: str | None = None
    initiator: str | None = None
    signers: list[NodeId] | None = None
    created: float | None = None
    updated: float | None = None
    payload_type: str | None = None
    payload_hash: str | None = None
    network: str | None = None
    expires_at: int | None = None
    request: SignedStatement | None = None
    decoded: Annotated[dict[str, Any], Meta(description="what the node decoded from the payload")] | None = None
    decisions: list[DecisionView] | None = None
    signature: Signature | None = None
    signatures: Annotated[list[Signature], Meta(description="one per input signed (a PSBT)")] | None = None
    result: Annotated[dict[str, Any], Meta(
        description="the signed payload: psbt {psbt, complete, tx_hex?, txid?}; eth_tx {raw_tx, tx_hash, "
                    "v, r, s}; eip712 {signature, r, s, v}; message {der, r, s, recovery_id, "
                    "message_sha256}; eip191 {signature, r, s, v, address}; sol_tx {signature, "
                    "signature_hex, signer, complete, transaction}; a FROST key's message {sig, signed}")] | None = None
    public_key: str | None = None
    presignature: Annotated[str, Meta(description="the presignature it used, if one")] | None = None
    error: PublicError | None = None


class UISignRequest(SignRequest):
    """A sign request as the console shows it: with the policy rule it falls under."""

    rule: Annotated[str, Meta(description="the policy table: [signing] or [signing.keys.<key_id>]")] | None = None


class SignRequestList(Struct):
    sign_requests: list[SignRequest]
    next_cursor: NextCursor = None


class VerifyResult(Struct, omit_defaults=True):
    valid: bool
    digest: Annotated[Hex32, Meta(description="the digest verified, or the message's SHA-256")]
    low_s: Annotated[bool, Meta(description="ECDSA only: s is in the lower half")] | None = None
    scheme: Annotated[Scheme, Meta(description="a Schnorr signature's scheme")] | None = None


class Health(Struct):
    status: Literal["ok"]
    node_id: NodeId
    version: str


class Readiness(Struct):
    """``/readyz``: 200 when ready, else 503 with the same body and a ``reason``."""

    ready: bool
    node_id: NodeId
    hsm: bool
    audit: bool
    primes: Annotated[dict[str, Any], Meta(description="the prime pool: source and counts per kind")]
    reason: str | None = None


class Derived(Struct):
    key_id: KeyId
    path: str
    public_key: Annotated[str, Meta(description=(
        "ecdsa-secp256k1: the child's compressed SEC1 key; schnorr-bip340: the x-only output key "
        "Q_C = output_key(C, b\"\") of the child C (what a sign request with this derivation_path "
        "signs for)"))]
    xpub: Annotated[str, Meta(description="the child's BIP32 xpub (for schnorr-bip340: of C)")]
    chain_code: Hex32
    depth: int
    public_key_uncompressed: Uncompressed | None = None
    public_key_spki_der: SpkiDer | None = None
    public_key_pem: SpkiPem | None = None
    addresses: Addresses | None = None
    scheme: Annotated[Scheme, Meta(description="schnorr-bip340 children only")] | None = None
    internal_key: Annotated[str, Meta(description="schnorr-bip340: x(C), the child's internal key")] | None = None
    p2tr: Annotated[str, Meta(description="schnorr-bip340: bech32m P2TR address of Q_C")] | None = None
    network: Network | None = None


class Address(Struct):
    key_id: KeyId
    kind: Literal["p2wpkh", "eth", "p2tr", "sol"]
    address: str
    public_key: str
    path: str
    network: Network | None


class PolicyView(Struct):
    cluster_id: str
    policy_hash: Hex32
    version: int
    policy: Annotated[dict[str, Any], Meta(description="the policy in force (canonical form)")]
    updates: Annotated[int, Meta(description="policy updates applied since the base policy")]


class PolicyApplied(Struct):
    policy_hash: Hex32
    version: int
    applied: Annotated[bool, Meta(description="false: this policy was already in force")]
    nodes: Annotated[dict[str, str], Meta(
        description="per node: applied, current, or the code it refused with")] | None = None


class PinnedCert(Struct):
    node_id: NodeId
    index: int
    url: str
    tls_cert: Annotated[str, Meta(description="the pinned leaf certificate, PEM")]
    tls_cert_sha256: Hex32


class ClusterCerts(Struct):
    version: Annotated[int, Meta(description="certificate updates applied (0: cluster.toml's pins)")]
    nodes: list[PinnedCert]


class CertApplied(Struct):
    version: int
    node_id: NodeId
    tls_cert_sha256: Hex32
    applied: Annotated[bool, Meta(description="false: this update was in force already")]
    nodes: Annotated[dict[str, str], Meta(
        description="per node: applied, current, or the code it refused with")] | None = None


class Quarantined(Struct):
    node_id: NodeId
    since: float
    reason: str
    job_id: str | None = None


class QuarantineList(Struct):
    nodes: list[Quarantined]


class QuarantineCleared(Quarantined):
    cleared: bool = True


class SignedCheckpoint(Struct):
    checkpoint: Annotated[dict[str, Any], Meta(description="type, node, seq, head, time")]
    signature: str
    cosignatures: dict[str, str]


class AuditAnchor(Struct):
    """``GET /v1/audit/checkpoints``: what ``appliance audit verify --anchor`` reads."""

    type: Literal["appliance/audit-anchor/v1"]
    node: NodeId
    witnessed: list[SignedCheckpoint]
    own: SignedCheckpoint | None


class OpenAPIDocument(Struct):
    """``GET /openapi.json``: this document (OpenAPI 3.1)."""

    openapi: Literal["3.1.0"]
    info: Annotated[dict[str, Any], Meta(description="title, version, description")]
    servers: Annotated[list[dict[str, Any]], Meta(description="the node's own URL")]
    paths: dict[str, dict[str, Any]]
    components: dict[str, Any]


class ErrorDetail(Struct):
    code: str
    message: str
    culprits: list[str] | None = None
    missing_nodes: list[str] | None = None


class Error(Struct):
    """Every refusal: ``{"error": {"code", "message", "culprits"?, "missing_nodes"?}}``."""

    error: ErrorDetail


def required_fields(body: type[Struct]) -> tuple[str, ...]:
    """The fields a body must carry."""
    info = msgspec.inspect.type_info(body)
    return tuple(f.name for f in info.fields if f.required)


# ---------------------------------------------------------------------------------------
# the approval console (/ui/api, api/routes/ui.py)


class UISignIn(Body, forbid_unknown_fields=True):
    """A passkey sign-in: the challenge the node gave and the assertion over it."""

    challenge: B64url
    webauthn: WebAuthnAssertion


class UIRegistration(Body, forbid_unknown_fields=True):
    """A new credential from navigator.credentials.create (the enrol page), base64url."""

    challenge: B64url
    credential_id: B64url
    client_data_json: B64url
    attestation_object: B64url
    label: Annotated[str, Meta(max_length=64)] = ""


class UIChallenge(Struct):
    challenge: Annotated[str, Meta(description="base64url, single use, 120 s")]
    rp_id: str


class UISession(Struct):
    user: str
    expires_at: float


class UIPasskeyEntry(Struct):
    passkey: Annotated[dict[str, Any], Meta(description="the policy's passkeys entry: {id, public_key, alg, label}")]


class UISignedOut(Struct):
    signed_out: bool


class UIMe(Struct):
    user: str
    roles: list[str]


class UIAudit(Struct):
    entries: list[dict[str, Any]]
