"""The Python client of a threshold-signing appliance's HTTP API.

    from appliance_client import SyncApplianceClient

    with SyncApplianceClient("https://node-1:8443", "alice", "alice.key.pem",
                             server_cert=open("node-1.crt").read()) as c:
        req = c.request_signature(key_id, digest)
        done = c.wait_signature(req["request_id"])

:class:`ApplianceClient` is the async client (aiohttp); :class:`SyncApplianceClient` runs it on
a private event loop for scripts. Requests are signed with the user's key (RFC 9421,
:mod:`appliance_client.httpsig`); statements (requests, approvals) are built and signed in
:mod:`appliance_client.statements`. This package imports nothing of the node (``appliance``,
``api``, ``hsm``) and needs only aiohttp, cryptography, http-message-signatures and rfc8785.
"""

from __future__ import annotations

from appliance_client.client import ApplianceAPIError, ApplianceClient, jws_signing_input
from appliance_client.statements import CertUpdate
from appliance_client.sync import SyncApplianceClient

__all__ = ["ApplianceAPIError", "ApplianceClient", "CertUpdate", "SyncApplianceClient", "jws_signing_input"]
