"""Node and cluster configuration (TOML).

A node reads one file, ``node.toml``, which names the cluster file (identical on every node)::

    cluster = "cluster.toml"          # relative paths are relative to this file
    policy = "policy.toml"            # optional: the cluster policy (appliance.policy); without
                                      # it the policy is read from cluster.toml ([[users]],
                                      # [signing], [key_changes], [policy_change])

    [node]
    id = "node-1"
    listen = "127.0.0.1:8443"
    db = "node.db"
    paillier_bits = 3072              # 2048 selectable
    round_timeout_s = 30.0            # a protocol round that makes no progress this long fails
    job_timeout_s = 300.0
    lifecycle_interval_s = 2.0        # how often pending key changes are resolved with peers
    workers = 2                       # threads for CPU-heavy protocol steps
    presign_pool = 0                  # presignatures kept ready per signer set (0: off)

    [frost]
    pool = 0                          # FROST nonce pairs kept per key for each coordinator (0: off)

    [metrics]                         # who may scrape GET /metrics (besides signed user requests)
    auth = "bearer"                   # "bearer" (default), "mtls", or "none" (open: only if set)
    bearer_token_file = "metrics.token"   # bearer: the scraper's token, one line (0600)
    client_certs = ["scraper.crt"]    # mtls: the scraper's certificate(s), PEM, pinned

    [tls]
    cert = "tls/node.crt"
    key = "tls/node.key"

    [hsm]                             # see hsm.config.HSMConfig
    token_label = "node-1"
    pin_file = "hsm/node-1.pin"       # or pin_env = "VAR"; never pin = ... (refused)
    softhsm_conf = "hsm/softhsm2.conf"    # only for a SoftHSM2 token made by init --softhsm
    module = "/usr/lib/softhsm/libsofthsm2.so"   # any PKCS#11 module (init --pkcs11-module)

    [primes]
    pool_target = 2                   # safe and Blum primes kept sealed per kind (background)

    [aux]                             # aux-info made ahead of ECDSA keys (README, Protocol)
    pool = 0                          # aux-info kept ready for the whole cluster (0: off)
    keys_per_aux = 1000               # keys one pooled aux-info may serve
    low_water = 100                   # another is made when fewer keys than this fit

    [audit]                           # the hash-chained audit log lives in [node] db, so that a
                                      # state change and its entry commit in one transaction; a
                                      # log of the old layout (audit.db here) is moved in at start.
                                      # (`db` naming another file is refused: see api/README.md)
    checkpoint_every = 100            # entries between HSM-signed, peer co-signed checkpoints

    [http]                            # the HTTPS server's edge limits (api/edge.py)
    header_timeout_s = 20.0           # first byte of a request to the end of its headers (and TLS)
    body_timeout_s = 60.0             # end of the headers to the end of the body
    idle_timeout_s = 60.0             # a connection with no request in progress
    max_connections_per_client = 128  # open connections per source IP
    max_connections_per_peer = 256    # per pinned peer node (its certificate)
    linger_s = 10.0                   # after an answer sent before the request's body was read
                                      # (a refused request): what the client still sends is read
                                      # and discarded this long, then the connection is closed

    [testing]                         # never in production; fault injection is not a setting
    prime_file = "test-only-primes.json"   # seeds the prime pool from a test-only file
                                      # (appliance/faults.py: a FaultPlan object tests pass in)

``cluster.toml``::

    [cluster]
    id = "demo"

    [[nodes]]
    id = "node-1"
    index = 0                         # the node's fixed party index
    url = "https://127.0.0.1:8443"
    tls_cert = "-----BEGIN CERTIFICATE-----..."   # pinned
    identity_key = "02..."            # HSM identity key, compressed secp256k1, hex
    transport_key = "04..."           # HSM transport key, uncompressed P-256, hex

    [[users]]
    id = "alice"
    roles = ["initiator"]
    public_key = "-----BEGIN PUBLIC KEY-----..."  # Ed25519 or P-256 (SubjectPublicKeyInfo PEM)
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import coincurve
import msgspec
import tomli_w
from cryptography.hazmat.primitives.asymmetric import ec
from msgspec import Struct

from appliance.config_schema import ClusterFile, HttpTable, MetricsTable, NodeFile, NodeTable
from appliance.errors import ApplianceError
from appliance.fsmodes import make_private_dir, write_private_file
from appliance.schema import decode
from hsm.config import HSMConfig
from hsm.errors import HSMError

ROLES = ("initiator", "approver", "admin", "auditor")  # the built-in roles
ROLE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")  # a policy may define more


class ConfigError(ApplianceError):
    code = "bad_config"


@dataclass(frozen=True)
class PeerInfo:
    id: str
    index: int
    url: str
    tls_cert: str
    identity_key: bytes
    transport_key: bytes


@dataclass(frozen=True)
class ClusterConfig:
    id: str
    nodes: tuple[PeerInfo, ...]

    def node(self, node_id: str) -> PeerInfo:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise ConfigError(f"unknown node {node_id!r}")

    def by_index(self, index: int) -> PeerInfo:
        for n in self.nodes:
            if n.index == index:
                return n
        raise ConfigError(f"no node has index {index}")

    @classmethod
    def from_mapping(cls, m: dict, *, source: str | Path | None = None) -> "ClusterConfig":
        """From a parsed cluster.toml (``source``: its path, named in every error)."""
        f = decode(m, ClusterFile, ConfigError, source=str(source) if source else None)
        where = f"{source}: " if source else ""
        nodes = [PeerInfo(id=n.id, index=n.index, url=n.url.rstrip("/"), tls_cert=n.tls_cert,
                          identity_key=bytes.fromhex(n.identity_key),
                          transport_key=bytes.fromhex(n.transport_key)) for n in f.nodes]
        for i, n in enumerate(nodes):
            for attr, curve, ok in (("identity_key", "secp256k1", _on_secp256k1),
                                    ("transport_key", "P-256", _on_p256)):
                if not ok(getattr(n, attr)):
                    raise ConfigError(f"{where}[[nodes]] #{i + 1} {attr}: not a point on {curve}")
        for attr in ("id", "index"):
            seen: set = set()
            for i, n in enumerate(nodes):
                v = getattr(n, attr)
                if v in seen:
                    raise ConfigError(f"{where}[[nodes]] #{i + 1} {attr}: {v!r} is used by "
                                      "another node (node ids and indices must be unique)")
                seen.add(v)
        # [[users]] and the other policy tables belong to the policy (appliance.policy.Policy
        # checks them with its own schema)
        return cls(id=f.cluster.id, nodes=tuple(sorted(nodes, key=lambda n: n.index)))


def _on_secp256k1(b: bytes) -> bool:
    try:
        coincurve.PublicKey(b)
    except ValueError:
        return False
    return True


def _on_p256(b: bytes) -> bool:
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b)
    except ValueError:
        return False
    return True


METRICS_AUTH = ("bearer", "mtls", "none")


@dataclass(frozen=True)
class MetricsConfig:
    """``[metrics]``: how a scraper authenticates to ``GET /metrics``. Authenticated unless
    ``auth = "none"`` is set explicitly; ``[node] metrics_open`` (older releases) is ignored
    (``legacy_open`` records that it was set, for a warning)."""

    auth: str = "bearer"
    bearer_token_file: Path | None = None
    client_certs: tuple[Path, ...] = ()
    legacy_open: bool = False


def _metrics_config(source: Path, base: Path, m: MetricsTable, node: NodeTable,
                    auth_given: bool) -> MetricsConfig:
    if m.auth == "mtls" and not m.client_certs:
        raise ConfigError(f"{source}: [metrics] client_certs: auth = \"mtls\" needs the "
                          "scraper's certificates")
    return MetricsConfig(auth=m.auth, bearer_token_file=_resolve(base, m.bearer_token_file),
                         client_certs=tuple(_resolve(base, c) for c in m.client_certs),
                         legacy_open=node.metrics_open is True and not auth_given)


@dataclass(frozen=True)
class HttpLimits:
    header_timeout_s: float = 20.0
    body_timeout_s: float = 60.0
    idle_timeout_s: float = 60.0
    max_connections_per_client: int = 128
    max_connections_per_peer: int = 256
    linger_s: float = 10.0

    @classmethod
    def from_table(cls, t: HttpTable) -> "HttpLimits":
        return cls(**{f: getattr(t, f) for f in cls.__dataclass_fields__})

    @classmethod
    def from_mapping(cls, m: dict, *, source: str | Path | None = None) -> "HttpLimits":
        """From node.toml's ``[http]`` table (checked by :class:`HttpTable`)."""
        t = decode({"http": m}, NodeHttpOnly, ConfigError, source=str(source) if source else None)
        return cls.from_table(t.http)


class NodeHttpOnly(Struct, forbid_unknown_fields=True):
    http: HttpTable


@dataclass(frozen=True)
class NodeConfig:
    path: Path
    node_id: str
    listen_host: str
    listen_port: int
    db: Path
    tls_cert: Path
    tls_key: Path
    hsm: dict
    cluster: ClusterConfig
    paillier_bits: int = 3072
    round_timeout_s: float = 30.0
    job_timeout_s: float = 300.0
    workers: int = 2
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    presign_pool: int = 0
    frost_nonce_pool: int = 0  # [frost] pool
    prime_pool_target: int = 2
    prime_file: Path | None = None
    aux_pool: int = 0  # [aux] pool: aux-info kept ready for the whole committee (0: off)
    keys_per_aux: int = 1000  # [aux] keys_per_aux: keys one pooled aux-info may serve
    aux_low_water: int = 100  # [aux] low_water: make another when fewer keys than this fit
    lifecycle_interval_s: float = 2.0  # how often pending key changes are resolved
    policy_file: Path | None = None
    cluster_mapping: dict = field(default_factory=dict)  # cluster.toml as read (the policy's default source)
    audit_checkpoint_every: int = 100
    http: HttpLimits = field(default_factory=HttpLimits)
    cluster_path: Path | None = None  # where cluster_mapping was read (named in policy errors)

    @property
    def me(self) -> PeerInfo:
        return self.cluster.node(self.node_id)

    @property
    def data_dir(self) -> Path:
        return self.path.parent

    def hsm_config(self):
        return HSMConfig.from_mapping(self.hsm, state_dir=self.path.parent)


def _resolve(base: Path, p: str | None) -> Path | None:
    if p is None:
        return None
    q = Path(p)
    return q if q.is_absolute() else (base / q)


def _check_audit_db(path: Path, audit: dict) -> None:
    """``[audit] db``: the audit log is kept in the node's database (one transaction for a
    state change and its entry). The old default (``audit.db`` beside node.toml) is accepted,
    as the file that is moved in at start; any other file is refused, never silently used
    or silently ignored."""
    if "db" not in audit:
        return
    given = _resolve(path.parent, str(audit["db"]))
    if given is None or given.resolve() != (path.parent / "audit.db").resolve():
        raise ConfigError(f"{path}: [audit] db = {str(audit['db'])!r} is no longer supported: the "
                          "audit log lives in the node's database ([node] db) so that a state change "
                          "and its audit entry commit together; remove the setting (a log at "
                          "audit.db beside node.toml is moved in at start)")


def load_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def _table(m: dict, name: str) -> dict:
    t = m.get(name, {})
    return t if isinstance(t, dict) else {}


def load_node_config(path: str | Path) -> NodeConfig:
    """node.toml (:class:`NodeFile`) and the cluster.toml it names (:class:`ClusterFile`);
    a :class:`ConfigError` names the file, the table and the key of the first problem."""
    path = Path(path).resolve()
    m = load_toml(path)
    extra = sorted(set(_table(m, "testing")) - {"prime_file"})
    if extra:
        # fault injection is an object a test passes in (appliance/faults.py), never a setting
        raise ConfigError(f"{path}: [testing] {extra[0]}: unknown key: [testing] takes only "
                          "prime_file (fault injection is an object tests pass in, never a setting)")
    _check_audit_db(path, _table(m, "audit"))
    if "pin" in _table(m, "hsm"):
        try:
            HSMConfig.from_mapping(_table(m, "hsm"))  # the PIN is never a setting: its message
        except HSMError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    f = decode(m, NodeFile, ConfigError, source=str(path))
    base = path.parent
    cluster_path = _resolve(base, f.cluster)
    cluster_raw = load_toml(cluster_path)
    cluster = ClusterConfig.from_mapping(cluster_raw, source=cluster_path)
    hsm = {k: v for k, v in msgspec.structs.asdict(f.hsm).items() if v is not None}
    for k in ("pin_file", "softhsm_conf"):
        if hsm.get(k):
            hsm[k] = str(_resolve(base, hsm[k]))
    try:
        HSMConfig.from_mapping(hsm)  # e.g. no PIN source, a label over 32 bytes: refused now
    except HSMError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    node = f.node
    host, _, port = node.listen.rpartition(":")
    if not 0 < int(port) < 65536:
        raise ConfigError(f"{path}: [node] listen: the port must be 1 to 65535, got "
                          f"str {json.dumps(node.listen)}")
    cfg = NodeConfig(
        path=path, node_id=node.id, listen_host=host or "127.0.0.1", listen_port=int(port),
        db=_resolve(base, node.db),
        tls_cert=_resolve(base, f.tls.cert), tls_key=_resolve(base, f.tls.key),
        hsm=hsm, cluster=cluster,
        paillier_bits=node.paillier_bits, round_timeout_s=node.round_timeout_s,
        job_timeout_s=node.job_timeout_s, workers=node.workers,
        metrics=_metrics_config(path, base, f.metrics, node, "auth" in _table(m, "metrics")),
        presign_pool=node.presign_pool, frost_nonce_pool=f.frost.pool, prime_pool_target=f.primes.pool_target,
        prime_file=_resolve(base, f.testing.prime_file),
        aux_pool=f.aux.pool, keys_per_aux=f.aux.keys_per_aux, aux_low_water=f.aux.low_water,
        lifecycle_interval_s=node.lifecycle_interval_s,
        policy_file=_resolve(base, f.policy), cluster_mapping=cluster_raw,
        audit_checkpoint_every=f.audit.checkpoint_every,
        http=HttpLimits.from_table(f.http), cluster_path=cluster_path,
    )
    if all(n.id != node.id for n in cluster.nodes):
        raise ConfigError(f"{path}: [node] id: {node.id!r} is not a node of {cluster_path} "
                          f"([[nodes]]: {', '.join(n.id for n in cluster.nodes) or 'none'})")
    return cfg


# -- writing TOML (tomli-w) ----------------------------------------------------------------


def _plain(v: Any) -> Any:
    """``v`` as TOML can hold it: paths as strings, tuples as arrays, None left out of
    tables (TOML has no null: an absent key is the default)."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items() if x is not None}
    if isinstance(v, (list, tuple)):
        if any(x is None for x in v):
            raise ConfigError("cannot write None inside a TOML array")
        return [_plain(x) for x in v]
    if isinstance(v, Path):
        return str(v)
    return v


def dumps_toml(m: dict) -> str:
    """``m`` as TOML text (tomli-w). Multi-line strings such as PEM stay readable unless
    that would change them (tomli-w writes a CR LF in one as LF): then every string is
    written escaped on one line. Read back, the text gives ``m`` (None values left out)."""
    plain = _plain(m)
    try:
        text = tomli_w.dumps(plain, multiline_strings=True)
        if tomllib.loads(text) != plain:
            text = tomli_w.dumps(plain)
    except TypeError as exc:
        raise ConfigError(f"cannot write this to TOML: {exc}") from None
    return text


def write_toml(path: Path, m: dict) -> None:
    """Write ``m`` atomically to a 0600 file (a missing parent directory is made 0700)."""
    path = Path(path)
    if not path.parent.exists():
        make_private_dir(path.parent)
    write_private_file(path, dumps_toml(m))
