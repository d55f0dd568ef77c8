"""The one map from domain errors to HTTP: :data:`STATUS` (code -> status) and the error body
``{"error": {"code", "message", "culprits"?, "missing_nodes"?}}``.

Domain errors (:mod:`appliance.errors`) carry a code and no status. A refusal by the policy or
an authorization check (:class:`~appliance.errors.PolicyDenied`, whatever check its code names)
is 403; every other error's status is its code's here. A code missing from the table is a bug
(tests/api/test_api_errors.py checks every code the services raise): it answers 500.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from appliance.errors import PolicyDenied, ServiceError, TooDeep
from appliance.audit import AuditUnavailable
from appliance.ids import BadId
from appliance.payloads.errors import PayloadError

log = logging.getLogger("appliance.api")

#: the status of a refusal (:class:`PolicyDenied`), whatever its code
DENIED = 403

_BAD_INPUT = (
    # the body, query and ids of a request
    "bad_json", "bad_wait", "bad_since", "bad_id", "too_deep", "bad_body",
    # paged listings (appliance/paging.py)
    "bad_cursor", "bad_limit", "bad_status", "bad_time",
    # keys and operations
    "bad_threshold", "bad_nodes", "bad_paillier_bits", "bad_scheme", "not_a_holder", "unknown_node",
    "bad_import_bundle",
    # sign requests and decisions
    "bad_digest", "bad_request", "bad_payload", "bad_payload_type", "bad_derivation_path",
    "bad_network", "bad_signers", "missing_request", "bad_request_statement", "request_mismatch",
    "missing_approval", "bad_approval", "decision_mismatch", "bad_decision", "bad_reason", "bad_forward", "bad_public_key",
    "no_chain_code", "bad_kind", "bad_policy_update", "bad_cert_update", "bad_tls_certificate",
    # /v1/verify (appliance/formats.py)
    "missing_public_key", "digest_or_message", "bad_message", "bad_message_encoding", "bad_signature_format",
    "bad_signature_der", "bad_signature_r", "bad_signature_rsv", "bad_signature_jws",
    # peers: jobs, frames, reservations, checkpoints
    "bad_job", "bad_batch", "bad_reservation", "bad_checkpoint", "bad_claim",
    # payloads (appliance/payloads: PayloadError)
    "malformed_psbt", "malformed_eth_tx", "malformed_eip712", "malformed_message", "payload_too_large", "wrong_type",
    "bad_key", "bad_address", "bad_address_kind", "missing_utxo", "chain_id_required",
    "unsupported_tx_type", "unsupported_psbt", "unsupported_input", "sighash_not_allowed",
    "payload_too_complex", "nothing_to_sign", "taproot_unsupported",
    # taproot key-path inputs (payloads/psbt_taproot.py) and Solana messages (payloads/solana.py)
    "missing_spent_outputs", "taproot_key_mismatch", "taproot_untweaked_key", "malformed_sol_tx",
    "key_not_signer",
)

#: code -> HTTP status, for every error that is not a refusal
STATUS: dict[str, int] = {
    **{code: 400 for code in _BAD_INPUT},
    "unauthenticated": 401,
    "forbidden": 403, "peer_not_pinned": 403, "use_not_confirmed": 403,
    "bad_signature": 403,  # a reservation whose request is not signed by its initiator
    # a passkey (WebAuthn) approval refused (always a PolicyDenied, 403; listed so each has one)
    "webauthn_bad_challenge": 403, "webauthn_bad_origin": 403, "webauthn_bad_rp": 403,
    "webauthn_user_not_verified": 403, "webauthn_unknown_credential": 403,
    "webauthn_bad_signature": 403, "webauthn_counter_replay": 403,
    # the approval console (appliance/ui_sessions.py): no or an expired session cookie; a
    # challenge unknown, spent or expired; a sign-in or registration assertion refused
    "ui_session_required": 401, "ui_bad_challenge": 400, "ui_sign_in_refused": 403,
    "ui_registration_refused": 403,
    "ui_sessions_full": 503,  # every console session slot is held (a user's own oldest is reused)
    # a console read of a request for a key the signed-in person may neither approve nor
    # initiate on (and who is no auditor)
    "ui_not_permitted": 403,
    "not_found": 404, "unknown_key": 404, "no_route": 404,
    "method_not_allowed": 405,
    "body_timeout": 408,
    "key_exists": 409, "key_change_in_progress": 409, "job_exists": 409, "epoch_mismatch": 409,
    "not_pending": 409, "not_prepared": 409, "result_mismatch": 409, "not_committed": 409, "invalid_transition": 409, "node_quarantined": 409,
    "presignature_unavailable": 409, "old_state_mismatch": 409, "old_state_unconfirmed": 409,
    "request_already_signed": 409, "checkpoint_refused": 409, "policy_changed": 409,
    "digest_mismatch": 409, "tweak_mismatch": 409, "tls_key_not_staged": 409,
    "nonce_reused": 409,  # a different request under an (initiator, nonce) already used
    # a pooled FROST nonce pair spent, unknown, or whose HSM key is gone (a restored database)
    "nonce_unavailable": 409,
    # a keygen's pooled aux-info (issue 18): unknown here, made for another committee or modulus
    # size, serving its cap of keys already, an aux id used twice, or one that does not unseal
    "aux_unknown": 409, "aux_wrong_committee": 409, "aux_exhausted": 409, "aux_exists": 409, "aux_pool_full": 409,
    "aux_unusable": 500,
    "nonce_pool_full": 409,  # a holder publishing more pooled commitments than a coordinator keeps
    # an honest FROST signer refuses the coordinator's package (numbered checks, e.g. check 7:
    # a pooled commitment not signed by the signer it is listed for)
    "signing_refused": 409,
    # a Schnorr or Ed25519 key asked for what only an ECDSA key does (eth_tx, eip712, eip191,
    # P2WPKH psbt), or for what FROST keys do not have yet (refresh, reshare, derive, address)
    "scheme_mismatch": 409, "not_supported_for_scheme": 409,
    "key_disabled": 409, "key_not_disabled": 409,  # key lifecycle: sign a disabled key; enable an active one
    "key_deleted": 410,  # the key is deleting or deleted (its shares are destroyed)
    "body_too_large": 413,
    "import_share_unreadable": 422, "import_share_rejected": 422,
    "internal": 500, "bad_config": 500, "bad_policy": 500, "sealed_data_corrupt": 500,
    "signature_mismatch": 500,
    "protocol_abort": 502, "inconsistent_result": 502, "combined_signature_invalid": 502,
    "peer_refused": 502, "error": 502,
    # a request's owner answered for it with a view this node refuses (another request, a
    # request not signed by its initiator, a payload that does not match its hash)
    "peer_view_invalid": 502,
    "quorum_unreachable": 503, "hsm_unavailable": 503, "audit_unavailable": 503, "not_ready": 503,
    "job_timeout": 503, "round_timeout": 503, "node_restarted": 503, "cancelled": 503, "node_unreachable": 503,
}

#: the domain errors the middleware answers with their code (anything else is a 500)
DOMAIN_ERRORS = (ServiceError, PayloadError, AuditUnavailable, BadId, TooDeep)


def status_of(code: str, *, denied: bool = False) -> int:
    """The HTTP status of an error ``code`` (``denied``: a refusal, 403)."""
    if denied:
        return DENIED
    status = STATUS.get(code)
    if status is None:
        log.error("error code %r has no HTTP status in api/errors.py", code)
        return 500
    return status


def error_status(exc: Exception) -> int:
    return status_of(getattr(exc, "code", "internal"), denied=isinstance(exc, PolicyDenied))


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda o: json.dumps(o, separators=(",", ":")))


def error_body(code: str, message: str, *, culprits: list[str] | None = None,
               missing_nodes: list[str] | None = None) -> dict:
    err: dict[str, Any] = {"code": code, "message": message}
    if culprits is not None:
        err["culprits"] = culprits
    if missing_nodes is not None:
        err["missing_nodes"] = missing_nodes
    return {"error": err}


def refusal(code: str, message: str, status: int | None = None) -> web.Response:
    """An error answer made by the HTTP layer itself (``status``: only where aiohttp gave one)."""
    return json_response(error_body(code, message), status or status_of(code))


def error_response(exc: Exception) -> web.Response:
    """The answer to a domain error (one of :data:`DOMAIN_ERRORS`)."""
    message = getattr(exc, "message", None) or str(exc)
    return json_response(error_body(exc.code, message, culprits=getattr(exc, "culprits", None),
                                    missing_nodes=getattr(exc, "missing_nodes", None)), error_status(exc))


def public_error(err: dict) -> dict:
    """A failed request's or operation's recorded error as clients see it: ``status`` (HTTP),
    ``code``, ``message``, ``culprits``?, ``missing_nodes``? (a record of an earlier release
    keeps its own ``status``)."""
    out = {"status": err.get("status") or status_of(str(err.get("code")), denied=err.get("denied") is True)}
    out.update((k, v) for k, v in err.items() if k not in ("status", "denied"))
    return out


def with_public_errors(view: dict) -> dict:
    """An operation or sign-request view (or a list of them under ``sign_requests``) with its
    recorded error as clients see it."""
    if isinstance(view.get("error"), dict):
        view = {**view, "error": public_error(view["error"])}
    if isinstance(view.get("sign_requests"), list):
        view = {**view, "sign_requests": [with_public_errors(v) for v in view["sign_requests"]]}
    return view
