"""The gauges read when ``GET /metrics`` is scraped: peer reachability (each peer's health
asked now, in parallel, 2 s timeout), the HSM and the audit log, open sign requests by
state, the prime and presignature pools, and the notAfter of every TLS certificate in force."""

from __future__ import annotations

import logging
from pathlib import Path

from cryptography import x509

from appliance.cluster.health import PeerHealth
from appliance.ports import AuditSink, KeyStore, Late, SignRequestStore
from appliance.pools.primes import PrimeSupply
from appliance.runtime import Runtime
from appliance.signing.states import PENDING, SIGNING

log = logging.getLogger("appliance.metrics")

PEER_MAX_AGE_S = 0.0  # each scrape asks every peer now (2 s timeout each, in parallel)


class NodeGauges:
    def __init__(self, rt: Runtime, health: PeerHealth, primes: PrimeSupply, *,
                 requests: Late[SignRequestStore], key_store: Late[KeyStore], audit: Late[AuditSink]) -> None:
        self.rt = rt
        self.health = health
        self.primes = primes
        self.requests = requests
        self.key_store = key_store
        self.audit = audit
        self._not_after: dict[str, float] = {}  # PEM -> notAfter (parsed once)

    async def refresh(self) -> None:
        """Set every scrape-time gauge. A gauge that cannot be read now keeps its last value
        (a metric never fails the scrape)."""
        rt, m = self.rt, self.rt.metrics
        m.hsm_ready.set(1 if rt.ready and await self.health.hsm_healthy() else 0)
        m.audit_ok.set(1 if self.audit.value is not None and rt.audit_ok else 0)
        m.presignature_target.set(rt.config.presign_pool)
        others = [i for i in rt.peers if i != rt.index]
        await self.health.split_healthy(others, max_age=PEER_MAX_AGE_S)  # sets appliance_peer_up
        store, keys = self.requests.value, self.key_store.value
        if store is not None and keys is not None:
            try:
                m.quorum_required.set(max((int(k["threshold"]) for k in keys.list_keys("active")), default=0))
                m.set_sign_requests_in_state({st: len(store.list_sign_requests((st,))) for st in (PENDING, SIGNING)})
                counts = self.primes.counts()
                for kind in ("safe", "blum"):
                    m.set_prime_pool(kind, rt.config.paillier_bits // 2, int(counts.get(kind, 0)))
            except Exception:  # noqa: BLE001 - a gauge never fails the scrape
                log.exception("reading the store for the metrics failed")
        self._cert_gauges()

    def _cert_gauges(self) -> None:
        rt, m = self.rt, self.rt.metrics
        for n in rt.cluster.nodes:
            try:
                pem = Path(rt.config.tls_cert).read_text() if n.index == rt.index else n.tls_cert
                m.set_cert_expiry(n.id, self._expiry(pem))
            except (OSError, ValueError):
                log.warning("the TLS certificate of %s could not be read for its expiry", n.id)

    def _expiry(self, pem: str) -> float:
        t = self._not_after.get(pem)
        if t is None:
            t = x509.load_pem_x509_certificate(pem.encode()).not_valid_after_utc.timestamp()
            self._not_after[pem] = t
        return t
