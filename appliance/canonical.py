"""RFC 8785 canonical JSON: the client library's module (:mod:`appliance_client.canonical`),
one for the statements users sign and the node checks, the audit log and the checkpoints."""

from __future__ import annotations

from appliance_client.canonical import MAX_SAFE_INT as MAX_SAFE_INT
from appliance_client.canonical import CanonicalError as CanonicalError
from appliance_client.canonical import canonical_hash as canonical_hash
from appliance_client.canonical import canonical_json as canonical_json
from appliance_client.canonical import parse_canonical as parse_canonical
from appliance_client.canonical import parse_json as parse_json
from appliance_client.canonical import sha256_hex as sha256_hex
