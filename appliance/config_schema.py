"""The typed schemas of ``node.toml`` and ``cluster.toml`` (:mod:`appliance.config` reads
them): one msgspec Struct per table, unknown keys refused, types and bounds checked, every
error naming the file, the table and the key (:func:`appliance.schema.decode`).

Every key has the default the node used before the schemas (README and api/README.md list
them); ``[node] metrics_open`` and ``[audit] db`` are older releases' keys, still read so that
their own messages can be given (see :mod:`appliance.config`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

from appliance.ids import GRAMMARS
from hsm.config import DEFAULT_MODULE

NodeId = Annotated[str, Meta(pattern=f"^{GRAMMARS['node_id'].pattern}$")]
ClusterId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$")]
FileName = Annotated[str, Meta(min_length=1, max_length=4096)]
Listen = Annotated[str, Meta(pattern=r"^[^\s]*:[0-9]{1,5}$")]
Seconds = Annotated[float, Meta(gt=0, le=7 * 86400)]
IdentityKey = Annotated[str, Meta(pattern=r"^0[23][0-9a-fA-F]{64}$")]  # compressed secp256k1
TransportKey = Annotated[str, Meta(pattern=r"^04[0-9a-fA-F]{128}$")]   # uncompressed P-256
EnvVar = Annotated[str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]


class _Table(Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    pass


class NodeTable(_Table):
    id: NodeId
    listen: Listen = "127.0.0.1:8443"
    db: FileName = "node.db"
    paillier_bits: Literal[2048, 3072] = 3072
    round_timeout_s: Seconds = 30.0
    job_timeout_s: Seconds = 300.0
    lifecycle_interval_s: Seconds = 2.0
    workers: Annotated[int, Meta(ge=1, le=256)] = 2
    presign_pool: Annotated[int, Meta(ge=0, le=10_000)] = 0
    metrics_open: bool | None = None  # older releases; ignored (a warning at start)


class MetricsTable(_Table):
    auth: Literal["bearer", "mtls", "none"] = "bearer"
    bearer_token_file: FileName = "metrics.token"
    client_certs: list[FileName] = []


class TlsTable(_Table):
    cert: FileName = "tls/node.crt"
    key: FileName = "tls/node.key"


class HsmTable(_Table):
    """``[hsm]`` (:class:`hsm.config.HSMConfig`; ``pin`` is refused before this is read)."""

    token_label: Annotated[str, Meta(min_length=1, max_length=32)]
    pin_file: FileName | None = None
    pin_env: EnvVar | None = None
    module: FileName = DEFAULT_MODULE
    softhsm_conf: FileName | None = None
    identity_curve: Literal["secp256k1", "secp256r1"] = "secp256k1"  # hsm.config.IDENTITY_CURVES


#: the most nonce pairs a node keeps per FROST key and coordinator (the receiving coordinator's bound too)
FROST_POOL_MAX = 1_000


class FrostTable(_Table):
    """``[frost]``: FROST keys (schnorr-bip340, ed25519)."""

    # nonce pairs this node keeps ready per key for each coordinator (itself and each other
    # holder); 0: no pool, every FROST signature runs the two-round session
    pool: Annotated[int, Meta(ge=0, le=FROST_POOL_MAX)] = 0


class PrimesTable(_Table):
    pool_target: Annotated[int, Meta(ge=0, le=64)] = 2


class AuxTable(_Table):
    """``[aux]``: aux-info (Paillier and ring-Pedersen) made ahead of ECDSA keys."""

    # aux-info records with room for another key kept ready for the whole cluster's committee,
    # made in the background by its lowest-index node; 0: off (each keygen runs its own)
    pool: Annotated[int, Meta(ge=0, le=16)] = 0
    # keys one aux-info may serve (README, Protocol: "Aux-info made ahead of keys")
    keys_per_aux: Annotated[int, Meta(ge=1, le=100_000)] = 1000
    # the low-water mark: another aux-info is made when the committee's aux-info can take
    # fewer keys than this (so a keygen finds one while the next is made)
    low_water: Annotated[int, Meta(ge=0, le=100_000)] = 100


class AuditTable(_Table):
    checkpoint_every: Annotated[int, Meta(ge=1, le=1_000_000)] = 100
    db: FileName | None = None  # older releases (see appliance.config._check_audit_db)


class HttpTable(_Table):
    header_timeout_s: Seconds = 20.0
    body_timeout_s: Seconds = 60.0
    idle_timeout_s: Seconds = 60.0
    max_connections_per_client: Annotated[int, Meta(ge=1, le=1_000_000)] = 128
    max_connections_per_peer: Annotated[int, Meta(ge=1, le=1_000_000)] = 256
    linger_s: Seconds = 10.0  # aiohttp's lingering_time (api/edge.py runner_for)


class TestingTable(_Table):
    prime_file: FileName | None = None


class NodeFile(_Table):
    node: NodeTable
    hsm: HsmTable
    cluster: FileName = "cluster.toml"
    policy: FileName | None = None
    metrics: MetricsTable = MetricsTable()
    tls: TlsTable = TlsTable()
    primes: PrimesTable = PrimesTable()
    frost: FrostTable = FrostTable()
    aux: AuxTable = AuxTable()
    audit: AuditTable = AuditTable()
    http: HttpTable = HttpTable()
    testing: TestingTable = TestingTable()


class ClusterTable(_Table):
    id: ClusterId = "cluster"


class NodeEntry(_Table):
    id: NodeId
    index: Annotated[int, Meta(ge=0, le=10_000)]
    url: Annotated[str, Meta(pattern=r"^https://[^\s/?#]+/?$")]  # the node's base URL
    tls_cert: str
    identity_key: IdentityKey
    transport_key: TransportKey


class ClusterFile(_Table):
    """cluster.toml: ``[cluster]``, ``[[nodes]]``, and the policy's tables, which
    :class:`appliance.policy.Policy` checks with its own schema."""

    cluster: ClusterTable = ClusterTable()
    nodes: list[NodeEntry] = []
    policy: dict[str, Any] | None = None
    users: list[dict[str, Any]] = []
    signing: dict[str, Any] | None = None
    key_changes: dict[str, Any] | None = None
    policy_change: dict[str, Any] | None = None
