"""Prometheus metrics of one node (``GET /metrics``), on a per-node ``CollectorRegistry``.

Names follow Prometheus conventions: prefix ``appliance_``, base units (seconds), ``_total``
for counters. Labels stay low-cardinality: outcomes, reasons and operations come from fixed
lists (anything else is counted as ``other``), peers are the cluster's configured node ids,
keys are key ids (a cluster holds few keys); never request, session or user ids.

=============================================== ========= =============================
metric                                          type      labels
=============================================== ========= =============================
appliance_build_info                            gauge     version, python, protocol
process_*                                       (several) (none): CPU, memory, open fds, start
appliance_http_requests_total                   counter   method, route, status
appliance_http_request_duration_seconds         histogram method, route
appliance_sign_requests_created_total           counter
appliance_sign_requests_completed_total         counter   outcome
appliance_sign_requests_in_state                gauge     state
appliance_policy_denials_total                  counter   reason
appliance_protocol_round_duration_seconds       histogram protocol, round
appliance_protocol_session_duration_seconds     histogram protocol, outcome
appliance_jobs_total                            counter   kind, outcome
appliance_job_duration_seconds                  histogram kind, parties
appliance_hsm_operation_duration_seconds        histogram operation
appliance_hsm_errors_total                      counter   operation
appliance_presignatures_available               gauge     key
appliance_presignature_pool_target              gauge
appliance_frost_nonces_available                gauge     key
appliance_prime_pool_size                       gauge     kind, bits
appliance_peer_up                               gauge     peer
appliance_quorum_required                       gauge
appliance_peer_errors_total                     counter   peer
appliance_peer_connections_opened_total         counter   peer, pool
appliance_sign_stage_duration_seconds           histogram stage (appliance/stages.py)
appliance_sqlite_commits_total                  counter   site (the code that committed)
appliance_peer_messages_dropped_total           counter   reason
appliance_audit_entries_total                   counter
appliance_audit_write_failures_total            counter
appliance_audit_ok                              gauge
appliance_hsm_ready                             gauge
appliance_node_quarantined                      gauge     node (appliance/quarantine.py)
appliance_tls_cert_expiry_timestamp_seconds     gauge     node
=============================================== ========= =============================

Sign requests: ``created_total`` counts each request once when it is stored, and
``completed_total{outcome}`` once when it reaches its terminal state (``signed``, ``failed``,
``rejected``, ``cancelled``, ``expired``, ``denied``); ``in_state{state}`` are the ones still
open (``pending``, ``signing``), read from the store at each scrape. So
``sum(completed_total)`` counts finished requests, and a request refused before it was
created is not among them (``appliance_policy_denials_total`` counts it). The former
``appliance_sign_requests_total{outcome}`` mixed states (a signed request counted as
created, approved and signed) and is removed.
"""

from __future__ import annotations

import platform
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from appliance import __version__
from appliance.policy import REASONS

CONTENT_TYPE = CONTENT_TYPE_LATEST
OTHER = "other"

SIGN_OUTCOMES = ("signed", "failed", "rejected", "cancelled", "expired", "denied")
OPEN_STATES = ("pending", "signing")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
UNMATCHED = "unmatched"  # the route label of a request no route matched (never its path)
JOB_OUTCOMES = ("done", "failed", "cancelled", "timeout", "aborted")
PROTOCOLS = ("keygen", "aux", "refresh", "presign", "sign", "reshare", "frost-keygen", "frost-sign",
             "frost-sign-pooled")
JOB_KINDS = ("keygen", "refresh", "presign", "sign", "reshare", "frost_nonces")
HSM_OPERATIONS = ("seal", "unseal", "seal_presignature", "unseal_presignature",
                  "consume_presignature", "destroy_key", "sign", "transport_decrypt", "open",
                  "health")
DROP_REASONS = ("rejected", "malformed", "misrouted", "finished", "overflow", "frame", "replayed",
                "bad_signature")
PRIME_KINDS = ("safe", "blum")
AUX_EVENTS = ("generated", "taken", "fallback")
MAX_ROUND = 10
MAX_PARTIES = 16

ROUND_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
SESSION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
HTTP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
#: where a signature's time goes on one node (``appliance_sign_stage_duration_seconds``):
#: ``client_auth`` RFC 9421 verification of a client request; ``policy`` the policy and
#: transaction rules evaluated (coordinator and every signer); ``audit_append`` one audit
#: entry written; ``sqlite_commit`` one outermost COMMIT of the node's database (its fsyncs);
#: ``peer_call`` one HTTPS request to a peer, answer read. HSM operations have their own
#: histogram, protocol rounds theirs.
SIGN_STAGES = ("client_auth", "policy", "audit_append", "sqlite_commit", "peer_call")
HSM_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,63}$")


def _pick(value: Any, allowed: Iterable[str]) -> str:
    return value if isinstance(value, str) and value in allowed else OTHER


class Metrics:
    """All metrics of one node, in their own registry.

    ``peers``: the configured node ids (peer labels are limited to them);
    ``reasons``: the policy's reason codes (default :data:`appliance.policy.REASONS`).
    """

    def __init__(self, *, peers: Iterable[str] = (), reasons: Iterable[str] | None = None,
                 registry: CollectorRegistry | None = None, version: str = __version__,
                 protocol: str = "cggmp24") -> None:
        if reasons is None:
            reasons = REASONS
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.peers = frozenset(peers)
        self.reasons = frozenset(reasons)
        r = self.registry
        self.process = ProcessCollector(registry=r)  # process_cpu_seconds_total, ..._memory_bytes...
        self.http_requests = Counter(
            "appliance_http_requests_total", "HTTP requests answered, by method, route template "
            "(never the concrete path) and status code", ["method", "route", "status"], registry=r)
        self.http_seconds = Histogram(
            "appliance_http_request_duration_seconds", "Time to answer HTTP requests, by method "
            "and route template", ["method", "route"], buckets=HTTP_BUCKETS, registry=r)
        self.build = Info("appliance_build", "Build of this node (value is always 1)",
                          registry=r)
        self.build.info({"version": version, "python": platform.python_version(),
                         "protocol": protocol})
        self.sign_created = Counter(
            "appliance_sign_requests_created_total", "Sign requests created (stored, pending or "
            "signing)", registry=r)
        self.sign_completed = Counter(
            "appliance_sign_requests_completed_total", "Sign requests that reached their terminal "
            "state, by outcome (each request counted once)", ["outcome"], registry=r)
        self.sign_in_state = Gauge(
            "appliance_sign_requests_in_state", "Sign requests not finished, by state (as stored)",
            ["state"], registry=r)
        self.policy_denials = Counter(
            "appliance_policy_denials_total", "Requests and jobs refused by the policy, by reason",
            ["reason"], registry=r)
        self.round_seconds = Histogram(
            "appliance_protocol_round_duration_seconds",
            "Time from a protocol round's start until this node has every message of it",
            ["protocol", "round"], buckets=ROUND_BUCKETS, registry=r)
        self.session_seconds = Histogram(
            "appliance_protocol_session_duration_seconds",
            "Duration of protocol sessions this node took part in", ["protocol", "outcome"],
            buckets=SESSION_BUCKETS, registry=r)
        self.jobs = Counter("appliance_jobs_total", "Protocol jobs by kind and outcome",
                            ["kind", "outcome"], registry=r)
        self.job_seconds = Histogram("appliance_job_duration_seconds",
                                     "Duration of protocol jobs (all their sessions), by kind and "
                                     "number of parties", ["kind", "parties"],
                                     buckets=SESSION_BUCKETS, registry=r)
        self.hsm_seconds = Histogram(
            "appliance_hsm_operation_duration_seconds", "Duration of HSM (PKCS#11) operations",
            ["operation"], buckets=HSM_BUCKETS, registry=r)
        self.stage_seconds = Histogram(
            "appliance_sign_stage_duration_seconds", "Time spent in each stage of the request "
            "path (appliance.metrics.SIGN_STAGES), each occurrence observed", ["stage"],
            buckets=STAGE_BUCKETS, registry=r)
        self.hsm_errors = Counter("appliance_hsm_errors_total", "Failed HSM operations",
                                  ["operation"], registry=r)
        self.sqlite_commits = Counter(
            "appliance_sqlite_commits_total", "Commits of the node's database (each fsynced: "
            "synchronous=FULL), by the function that committed (appliance.sqlite_tx.commit_site)",
            ["site"], registry=r)
        self.presignatures = Gauge(
            "appliance_presignatures_available", "Presignatures ready on this node, per key",
            ["key"], registry=r)
        self.presignature_target = Gauge(
            "appliance_presignature_pool_target", "Presignatures this node keeps ready per signer "
            "set ([node] presign_pool; 0: no pool)", registry=r)
        self.frost_nonces = Gauge(
            "appliance_frost_nonces_available", "Pooled FROST nonce pairs of this node not yet spent, "
            "per key (for every coordinator; [frost] pool each)", ["key"], registry=r)
        self.prime_pool = Gauge("appliance_prime_pool_size",
                                "Sealed primes ready in this node's pool", ["kind", "bits"],
                                registry=r)
        self.aux_room = Gauge(
            "appliance_aux_pool_key_room", "Keys the whole committee's pooled aux-info can still "
            "take on this node (ECDSA keys made with only a DKG)", registry=r)
        self.aux_low_water = Gauge(
            "appliance_aux_pool_low_water", "The aux-info pool's low-water mark ([aux] low_water; 0: "
            "no pool): below this room the committee's lowest node makes another aux-info", registry=r)
        self.aux_events = Counter(
            "appliance_aux_pool_events_total", "Pooled aux-info generated, taken by a keygen "
            "coordinated here, or missing (the keygen ran its own aux session: fallback)", ["event"],
            registry=r)
        self.peer_up = Gauge("appliance_peer_up", "1 if the peer answered its last health check "
                             "as ready, 0 if not", ["peer"], registry=r)
        self.quorum_required = Gauge(
            "appliance_quorum_required", "Nodes needed to sign with every active key here (the "
            "largest threshold; 0: no key)", registry=r)
        self.peer_errors = Counter("appliance_peer_errors_total",
                                   "Failed calls to peers and misbehaviour blamed on them",
                                   ["peer"], registry=r)
        self.peer_connections = Counter(
            "appliance_peer_connections_opened_total", "TCP connections this node opened to a peer "
            "(kept alive and reused: it grows with concurrency, not with requests)", ["peer", "pool"],
            registry=r)
        self.dropped = Counter("appliance_peer_messages_dropped_total",
                               "Peer messages dropped without blaming their claimed sender",
                               ["reason"], registry=r)
        self.audit_entries = Counter("appliance_audit_entries_total",
                                     "Audit log entries written", registry=r)
        self.audit_failures = Counter("appliance_audit_write_failures_total",
                                      "Audit entries that could not be written (action refused)",
                                      registry=r)
        self.audit_ok = Gauge("appliance_audit_ok", "1 if the audit log is open and its last "
                              "write succeeded (else nothing is signed)", registry=r)
        self.hsm_ready = Gauge("appliance_hsm_ready", "1 if the node is started and its HSM "
                               "answers (else nothing is signed)", registry=r)
        self.cert_expiry = Gauge(
            "appliance_tls_cert_expiry_timestamp_seconds", "notAfter of the TLS certificates in "
            "force (this node's own and each pinned peer's), Unix time", ["node"], registry=r)
        for o in SIGN_OUTCOMES:  # zero series, so rates work from the start
            self.sign_completed.labels(o)
        for st in OPEN_STATES:
            self.sign_in_state.labels(st)
        for reason in self.reasons:
            self.policy_denials.labels(reason)
        for op in HSM_OPERATIONS:
            self.hsm_errors.labels(op)
        for reason in DROP_REASONS:
            self.dropped.labels(reason)
        for peer in self.peers:
            self.peer_errors.labels(peer)
        self.audit_entries.inc(0)
        for ev in AUX_EVENTS:
            self.aux_events.labels(ev)

    # -- counters with checked labels ---------------------------------------------------
    def sign_request_created(self) -> None:
        self.sign_created.inc()

    def sign_request_completed(self, outcome: str) -> None:
        """A sign request reached its terminal state: call once per request."""
        self.sign_completed.labels(_pick(outcome, SIGN_OUTCOMES)).inc()

    def http_request(self, method: str, route: str | None, status: int, seconds: float) -> None:
        """One answered HTTP request. ``route``: the matched route's template (None: no route
        matched: ``unmatched``, never the path). Templates come from the app's router (bounded)."""
        m = _pick(method, HTTP_METHODS)
        if route is None:
            route = UNMATCHED
        code = str(status) if isinstance(status, int) and 100 <= status <= 599 else OTHER
        self.http_requests.labels(m, route, code).inc()
        self.http_seconds.labels(m, route).observe(max(0.0, seconds))

    def policy_denied(self, reason: str) -> None:
        self.policy_denials.labels(_pick(reason, self.reasons)).inc()

    def peer_error(self, peer: str) -> None:
        if self.peers:
            label = _pick(peer, self.peers)
        else:
            label = peer if isinstance(peer, str) and _ID.match(peer) else OTHER
        self.peer_errors.labels(label).inc()

    def message_dropped(self, reason: str) -> None:
        self.dropped.labels(_pick(reason, DROP_REASONS)).inc()

    def job(self, kind: str, outcome: str, seconds: float | None = None,
            parties: int | None = None) -> None:
        k = _pick(kind, JOB_KINDS)
        self.jobs.labels(k, _pick(outcome, JOB_OUTCOMES)).inc()
        if seconds is not None:
            p = str(parties) if isinstance(parties, int) and 1 <= parties <= MAX_PARTIES else OTHER
            self.job_seconds.labels(k, p).observe(max(0.0, seconds))

    def audit_written(self, entry: Any = None) -> None:
        """Count one audit entry (usable as ``AuditLog(on_append=metrics.audit_written)``)."""
        self.audit_entries.inc()

    def audit_failed(self) -> None:
        self.audit_failures.inc()

    # -- durations ----------------------------------------------------------------------
    def observe_round(self, protocol: str, round_no: int | str, seconds: float) -> None:
        r = str(round_no) if isinstance(round_no, int) and 1 <= round_no <= MAX_ROUND else OTHER
        self.round_seconds.labels(_pick(protocol, PROTOCOLS), r).observe(max(0.0, seconds))

    def observe_session(self, protocol: str, outcome: str, seconds: float) -> None:
        self.session_seconds.labels(_pick(protocol, PROTOCOLS),
                                    _pick(outcome, JOB_OUTCOMES)).observe(max(0.0, seconds))

    def observe_hsm(self, operation: str, seconds: float, *, ok: bool = True) -> None:
        op = _pick(operation, HSM_OPERATIONS)
        self.hsm_seconds.labels(op).observe(max(0.0, seconds))
        if not ok:
            self.hsm_errors.labels(op).inc()

    def observe_stage(self, stage: str, seconds: float) -> None:
        self.stage_seconds.labels(_pick(stage, SIGN_STAGES)).observe(max(0.0, seconds))

    def sqlite_committed(self, seconds: float, site: str) -> None:
        """One commit of the node's database: its time (``sqlite_commit`` stage) and its
        site (``module.function``: a fixed set of code sites, so the label stays bounded)."""
        self.observe_stage("sqlite_commit", seconds)
        self.sqlite_commits.labels(site if _ID.match(site) else OTHER).inc()

    @contextmanager
    def stage(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.observe_stage(stage, time.perf_counter() - t0)

    def peer_connection_opened(self, peer: str, pool: str) -> None:
        label = _pick(peer, self.peers) if self.peers else OTHER
        self.peer_connections.labels(label, _pick(pool, ("protocol", "forward"))).inc()

    @contextmanager
    def time_round(self, protocol: str, round_no: int) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.observe_round(protocol, round_no, time.perf_counter() - t0)

    @contextmanager
    def time_session(self, protocol: str) -> Iterator[dict]:
        """``with m.time_session("sign") as s: ...`` -- outcome ``done``, or ``failed`` on an
        exception; set ``s["outcome"]`` to say otherwise (``aborted``, ``timeout``...)."""
        t0 = time.perf_counter()
        state = {"outcome": "done"}
        try:
            yield state
        except BaseException:
            if state["outcome"] == "done":
                state["outcome"] = "failed"
            raise
        finally:
            self.observe_session(protocol, state["outcome"], time.perf_counter() - t0)

    @contextmanager
    def time_hsm(self, operation: str) -> Iterator[None]:
        t0 = time.perf_counter()
        ok = False
        try:
            yield
            ok = True
        finally:
            self.observe_hsm(operation, time.perf_counter() - t0, ok=ok)

    # -- gauges -------------------------------------------------------------------------
    def set_presignatures(self, key_id: str, available: int) -> None:
        self.presignatures.labels(key_id).set(available)

    def set_presignature_counts(self, counts: Mapping[str, int]) -> None:
        """Set every key's count at once; keys no longer listed are removed."""
        for (key,) in list(self._label_values(self.presignatures)):
            if key not in counts:
                self.presignatures.remove(key)
        for key, n in counts.items():
            self.presignatures.labels(key).set(n)

    def set_frost_nonce_counts(self, counts: Mapping[str, int]) -> None:
        """Every FROST key's pooled nonce pairs at once; keys no longer listed are removed."""
        for (key,) in list(self._label_values(self.frost_nonces)):
            if key not in counts:
                self.frost_nonces.remove(key)
        for key, n in counts.items():
            self.frost_nonces.labels(key).set(n)

    def set_sign_requests_in_state(self, counts: Mapping[str, int]) -> None:
        for st in OPEN_STATES:
            self.sign_in_state.labels(st).set(int(counts.get(st, 0)))

    def set_peer_up(self, peer: str, up: bool) -> None:
        if peer in self.peers:  # configured node ids only
            self.peer_up.labels(peer).set(1 if up else 0)

    def set_cert_expiry(self, node: str, not_after: float) -> None:
        if node in self.peers or (not self.peers and isinstance(node, str) and _ID.match(node)):
            self.cert_expiry.labels(node).set(not_after)

    def aux_event(self, event: str) -> None:
        self.aux_events.labels(_pick(event, AUX_EVENTS)).inc()

    def set_aux_room(self, room: int, low_water: int) -> None:
        self.aux_room.set(room)
        self.aux_low_water.set(low_water)

    def set_prime_pool(self, kind: str, bits: int, size: int) -> None:
        self.prime_pool.labels(_pick(kind, PRIME_KINDS), str(int(bits))).set(size)

    @staticmethod
    def _label_values(metric: Any) -> list[tuple[str, ...]]:
        return list(metric._metrics.keys())  # prometheus_client keeps children here

    # -- exposition ---------------------------------------------------------------------
    def render(self) -> bytes:
        """The text exposition format (``Content-Type``: :data:`CONTENT_TYPE`)."""
        return render(self.registry)


class _WithoutCreated:
    """A registry view without the ``*_created`` timestamps prometheus_client adds to
    counters and histograms (the text format shows them as extra gauge families)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Any]:
        for family in self.registry.collect():
            if family.type in ("counter", "histogram", "summary"):
                family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family


def render(registry: CollectorRegistry) -> bytes:
    """Text exposition of ``registry`` (without ``_created`` series)."""
    return generate_latest(_WithoutCreated(registry))  # type: ignore[arg-type]
