"""Who may scrape ``GET /metrics`` (``[metrics]`` in node.toml, :class:`MetricsConfig`).

The metrics name key ids and count requests, so they are not for everyone:

* ``auth = "bearer"`` (the default): ``Authorization: Bearer <token>``, the token being the
  one line of ``bearer_token_file`` (``appliance init`` writes a random one, 0600). Compared
  in constant time (SHA-256 digests). No token file: every scrape is refused.
* ``auth = "mtls"``: the scraper presents a TLS client certificate pinned in ``client_certs``
  (its SHA-256 fingerprint must be one of theirs; a node's certificate is not enough).
* ``auth = "none"``: open; only when set explicitly.

A request signed by a user of the policy (RFC 9421, :mod:`api.auth`) is accepted besides, so
``ApplianceClient.metrics()`` keeps working; the server checks that itself.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from pathlib import Path

from appliance.config import ConfigError, MetricsConfig
from appliance.tls import fingerprint_pem

# RFC 6750 section 2.1: "Bearer" 1*SP b64token
_BEARER = re.compile(r"(?i:Bearer) +([A-Za-z0-9\-._~+/]+=*)")
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]{32,512}=*")
MAX_AUTHORIZATION = 1024


@dataclass(frozen=True)
class MetricsAuth:
    mode: str
    token_digest: bytes | None = None  # SHA-256 of the bearer token
    cert_pems: tuple[str, ...] = ()
    cert_fingerprints: frozenset[str] = frozenset()
    problem: str | None = None  # why no scraper can get in (a missing token file), for the log

    @classmethod
    def from_config(cls, cfg: MetricsConfig) -> "MetricsAuth":
        if cfg.auth == "none":
            return cls("none")
        if cfg.auth == "mtls":
            pems = tuple(_read(p, "metrics client certificate") for p in cfg.client_certs)
            try:
                fps = frozenset(fingerprint_pem(pem) for pem in pems)
            except ValueError as exc:
                raise ConfigError(f"[metrics] client_certs: not a PEM certificate: {exc}") from None
            return cls("mtls", cert_pems=pems, cert_fingerprints=fps)
        path = cfg.bearer_token_file
        try:
            token = _read(path, "metrics token").strip() if path is not None else ""
        except ConfigError as exc:
            return cls("bearer", problem=f"{exc}: /metrics refuses every scraper")
        if _TOKEN.fullmatch(token) is None:
            raise ConfigError(f"{path}: a metrics token is 32 to 512 characters of A-Z a-z 0-9 -._~+/")
        return cls("bearer", token_digest=hashlib.sha256(token.encode()).digest())

    def allows(self, authorization: str | None, client_cert_fingerprint: str | None) -> bool:
        """True if the scraper's credentials are good (or the metrics are open)."""
        if self.mode == "none":
            return True
        if self.mode == "mtls":
            return client_cert_fingerprint is not None and client_cert_fingerprint in self.cert_fingerprints
        if self.token_digest is None or authorization is None or len(authorization) > MAX_AUTHORIZATION:
            return False
        m = _BEARER.fullmatch(authorization)
        if m is None:
            return False
        return hmac.compare_digest(hashlib.sha256(m.group(1).encode()).digest(), self.token_digest)

    def challenge(self) -> dict[str, str]:
        """The WWW-Authenticate header of a refusal (RFC 6750) for bearer mode."""
        return {"WWW-Authenticate": 'Bearer realm="appliance-metrics"'} if self.mode == "bearer" else {}


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the {what} {path}: {getattr(exc, 'strerror', None) or exc}") from None
