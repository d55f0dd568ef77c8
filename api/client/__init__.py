"""``api.client.ApplianceClient`` (the DESIGN.md contract): the client library's async client,
:mod:`appliance_client` (a distribution of its own, ``threshold-appliance-client``, that a
script installs without the node's dependencies; the node's distribution ships it too)."""

from __future__ import annotations

from appliance_client.client import ApplianceAPIError, ApplianceClient, jws_signing_input, run

__all__ = ["ApplianceClient", "ApplianceAPIError", "jws_signing_input", "run"]
