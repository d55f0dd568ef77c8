"""Signed statements: :class:`Request` (an initiator's), :class:`Approval` (a decision on
one), and the client-side helpers that make them. They are the client library's
(:mod:`appliance_client.statements`): one statement format for who signs and who checks."""

from __future__ import annotations

from appliance_client.statements import APPROVAL_BINDING as APPROVAL_BINDING
from appliance_client.statements import Approval as Approval
from appliance_client.statements import Request as Request
from appliance_client.statements import SignedRequest as SignedRequest
from appliance_client.statements import make_approval as make_approval
from appliance_client.statements import make_request as make_request
from appliance_client.statements import new_nonce as new_nonce
from appliance_client.statements import payload_hash as payload_hash
from appliance_client.statements import SHOWN_FIELDS as SHOWN_FIELDS
from appliance_client.statements import summary_hash as summary_hash
