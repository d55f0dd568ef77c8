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

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.errors import ApplianceError
from appliance.fsmodes import make_private_dir, write_private_file
from appliance.ids import GRAMMARS, is_id
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
    def from_mapping(cls, m: dict) -> "ClusterConfig":
        c = m.get("cluster", {})
        nodes = []
        for n in m.get("nodes", []):
            try:
                nodes.append(PeerInfo(
                    id=str(n["id"]), index=int(n["index"]), url=str(n["url"]).rstrip("/"),
                    tls_cert=str(n["tls_cert"]), identity_key=bytes.fromhex(n["identity_key"]),
                    transport_key=bytes.fromhex(n["transport_key"]),
                ))
            except (KeyError, ValueError, TypeError) as exc:
                raise ConfigError(f"bad [[nodes]] entry: {exc}") from None
        bad_ids = [n.id for n in nodes if not is_id("node_id", n.id)]
        if bad_ids:
            raise ConfigError(f"node ids must match {GRAMMARS['node_id'].pattern}: {bad_ids}")
        if len({n.id for n in nodes}) != len(nodes) or len({n.index for n in nodes}) != len(nodes):
            raise ConfigError("node ids and indices must be unique")
        # [[users]] belong to the policy (appliance.policy.Policy.from_mapping checks them)
        return cls(id=str(c.get("id", "cluster")), nodes=tuple(sorted(nodes, key=lambda n: n.index)))


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


def _metrics_config(base: Path, m: dict, node: dict) -> MetricsConfig:
    if not isinstance(m, dict):
        raise ConfigError("[metrics] must be a table")
    auth = m.get("auth", "bearer")
    if auth not in METRICS_AUTH:
        raise ConfigError(f"[metrics] auth must be one of {', '.join(METRICS_AUTH)}")
    certs = m.get("client_certs", [])
    if not isinstance(certs, list) or not all(isinstance(c, str) and c for c in certs):
        raise ConfigError("[metrics] client_certs must be a list of PEM file names")
    if auth == "mtls" and not certs:
        raise ConfigError('[metrics] auth = "mtls" needs client_certs (the scraper\'s certificates)')
    token = m.get("bearer_token_file", "metrics.token")
    if not isinstance(token, str) or not token:
        raise ConfigError("[metrics] bearer_token_file must be a file name")
    return MetricsConfig(auth=auth, bearer_token_file=_resolve(base, token),
                         client_certs=tuple(_resolve(base, c) for c in certs),
                         legacy_open=node.get("metrics_open") is True and "auth" not in m)


@dataclass(frozen=True)
class HttpLimits:
    header_timeout_s: float = 20.0
    body_timeout_s: float = 60.0
    idle_timeout_s: float = 60.0
    max_connections_per_client: int = 128
    max_connections_per_peer: int = 256

    @classmethod
    def from_mapping(cls, m: dict) -> "HttpLimits":
        unknown = set(m) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown [http] settings: {sorted(unknown)}")
        lim = cls(**{k: type(getattr(cls, k))(v) for k, v in m.items()})
        if min(lim.header_timeout_s, lim.body_timeout_s, lim.idle_timeout_s) <= 0 \
                or min(lim.max_connections_per_client, lim.max_connections_per_peer) < 1:
            raise ConfigError("[http] timeouts must be positive and connection caps at least 1")
        return lim


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
    prime_pool_target: int = 2
    prime_file: Path | None = None
    lifecycle_interval_s: float = 2.0  # how often pending key changes are resolved
    policy_file: Path | None = None
    cluster_mapping: dict = field(default_factory=dict)  # cluster.toml as read (the policy's default source)
    audit_checkpoint_every: int = 100
    http: HttpLimits = field(default_factory=HttpLimits)

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


def load_node_config(path: str | Path) -> NodeConfig:
    path = Path(path).resolve()
    m = load_toml(path)
    if set(m.get("testing", {})) - {"prime_file"}:
        # fault injection is an object a test passes in (appliance/faults.py), never a setting
        raise ConfigError(f"{path}: [testing] takes only prime_file, not "
                          f"{sorted(set(m['testing']) - {'prime_file'})}")
    _check_audit_db(path, m.get("audit", {}))
    base = path.parent
    cluster_path = _resolve(base, m.get("cluster", "cluster.toml"))
    cluster_raw = load_toml(cluster_path)
    cluster = ClusterConfig.from_mapping(cluster_raw)
    node = m.get("node", {})
    tls = m.get("tls", {})
    hsm = dict(m.get("hsm", {}))
    for k in ("pin_file", "softhsm_conf"):
        if hsm.get(k):
            hsm[k] = str(_resolve(base, hsm[k]))
    try:
        HSMConfig.from_mapping(hsm)  # e.g. a pin key: refused now, not at every retry
    except HSMError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    testing = dict(m.get("testing", {}))
    primes = m.get("primes", {})
    audit = m.get("audit", {})
    try:
        node_id = str(node["id"])
        listen = str(node.get("listen", "127.0.0.1:8443"))
        host, _, port = listen.rpartition(":")
        cfg = NodeConfig(
            path=path, node_id=node_id, listen_host=host or "127.0.0.1", listen_port=int(port),
            db=_resolve(base, node.get("db", "node.db")),
            tls_cert=_resolve(base, tls.get("cert", "tls/node.crt")),
            tls_key=_resolve(base, tls.get("key", "tls/node.key")),
            hsm=hsm, cluster=cluster,
            paillier_bits=int(node.get("paillier_bits", 3072)),
            round_timeout_s=float(node.get("round_timeout_s", 30.0)),
            job_timeout_s=float(node.get("job_timeout_s", 300.0)),
            workers=int(node.get("workers", 2)),
            metrics=_metrics_config(base, m.get("metrics", {}), node),
            presign_pool=int(node.get("presign_pool", 0)),
            prime_pool_target=int(primes.get("pool_target", 2)),
            prime_file=_resolve(base, testing.get("prime_file")),
            lifecycle_interval_s=float(node.get("lifecycle_interval_s", 2.0)),
            policy_file=_resolve(base, m.get("policy")),
            cluster_mapping=cluster_raw,
            audit_checkpoint_every=int(audit.get("checkpoint_every", 100)),
            http=HttpLimits.from_mapping(dict(m.get("http", {}))),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: bad [node] settings: {exc}") from None
    if cfg.paillier_bits not in (2048, 3072):
        raise ConfigError("paillier_bits must be 2048 or 3072")
    cluster.node(node_id)  # must be in the cluster
    return cfg


# -- writing TOML (the small subset the appliance writes) ----------------------------------


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        if "\n" in v:
            if "'''" in v:
                raise ConfigError("cannot write this string to TOML")
            return "'''\n" + v + "'''"
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Path):
        return _toml_value(str(v))
    raise ConfigError(f"cannot write {type(v).__name__} to TOML")


def dumps_toml(m: dict) -> str:
    """Top-level scalars, then tables, then arrays of tables (one level deep)."""
    out: list[str] = []
    scalars = {k: v for k, v in m.items() if not isinstance(v, dict)
               and not (isinstance(v, list) and v and isinstance(v[0], dict))}
    for k, v in scalars.items():
        out.append(f"{k} = {_toml_value(v)}")
    for k, v in m.items():
        if isinstance(v, dict):
            out.append(f"\n[{k}]")
            out += [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items() if vv is not None]
    for k, v in m.items():
        if isinstance(v, list) and v and isinstance(v[0], dict):
            for item in v:
                out.append(f"\n[[{k}]]")
                out += [f"{kk} = {_toml_value(vv)}" for kk, vv in item.items() if vv is not None]
    return "\n".join(out) + "\n"


def write_toml(path: Path, m: dict) -> None:
    """Write ``m`` atomically to a 0600 file (a missing parent directory is made 0700)."""
    path = Path(path)
    if not path.parent.exists():
        make_private_dir(path.parent)
    text = dumps_toml(m)
    tomllib.loads(text)  # round-trip check
    write_private_file(path, text)
