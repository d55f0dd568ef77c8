"""EIP-712 typed data: the digest ``keccak256(0x19 0x01 || domainSeparator || hashStruct(message))``
computed by eth-account's ``encode_typed_data`` from the JSON object (as for
``eth_signTypedData_v4``), and the 65-byte ``r || s || v`` signature (v = 27 + recovery id).

The object is checked before eth-account sees it: a dict with exactly ``types``,
``primaryType``, ``domain`` and ``message``; JSON values only (no floats); at most
``MAX_JSON_BYTES`` serialized, ``MAX_DEPTH`` deep and ``MAX_NODES`` values.

EIP-2612 ``Permit`` (and the DAI-style ``Permit`` with ``allowed``) is read as an approval of
the token at ``verifyingContract`` to ``spender``; other typed data is a signature for the
verifying contract (its destination for allow-lists), with no amount we can read.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

from appliance.bounded import TooDeep, loads_json
from appliance.payloads.addresses import eth_address, normalize_eth_address
from appliance.payloads.errors import PayloadError, SignatureMismatch
from appliance.payloads.ethereum import CHAIN_NAMES, UINT256_MAX, recoverable
from appliance.payloads.eth_typed import encode_typed_data
from appliance.payloads.types import DecodedPayload, KeyContext, SigningItem, Transfer, TxFacts
from appliance.tss import ecdsa

MAX_JSON_BYTES = 64 * 1024
MAX_DEPTH = 32
MAX_NODES = 10_000
_KEYS = {"types", "primaryType", "domain", "message"}


def _check_json(obj: Any) -> None:
    stack = [(obj, 0)]
    nodes = 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise PayloadError("payload_too_large", f"typed data has more than {MAX_NODES} values")
        if depth > MAX_DEPTH:
            raise PayloadError("payload_too_large", f"typed data nested deeper than {MAX_DEPTH}")
        if isinstance(value, dict):
            for k, v in value.items():
                if not isinstance(k, str):
                    raise PayloadError("malformed_eip712", "object keys must be strings")
                stack.append((v, depth + 1))
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
        elif isinstance(value, float):
            raise PayloadError("malformed_eip712", "numbers in typed data must be integers or strings")
        elif value is not None and not isinstance(value, (str, int, bool)):
            raise PayloadError("wrong_type", f"typed data holds a {type(value).__name__}, not JSON")


def _typed_data(payload: Any) -> dict:
    if isinstance(payload, (str, bytes, bytearray)):
        if len(payload) > MAX_JSON_BYTES:
            raise PayloadError("payload_too_large", f"typed data larger than {MAX_JSON_BYTES} bytes")
        try:
            payload = loads_json(payload)
        except TooDeep as exc:
            raise PayloadError("too_deep", f"typed data nested deeper than {MAX_DEPTH}") from exc
        except (ValueError, UnicodeDecodeError) as exc:
            raise PayloadError("malformed_eip712", "typed data is not valid JSON") from exc
    if not isinstance(payload, dict):
        raise PayloadError("wrong_type", "an eip712 payload is the typed-data JSON object")
    _check_json(payload)
    try:
        size = len(json.dumps(payload, separators=(",", ":")))
    except (TypeError, ValueError, RecursionError) as exc:
        raise PayloadError("malformed_eip712", "typed data is not serializable JSON") from exc
    if size > MAX_JSON_BYTES:
        raise PayloadError("payload_too_large", f"typed data larger than {MAX_JSON_BYTES} bytes")
    keys = set(payload)
    if keys != _KEYS:
        missing, extra = _KEYS - keys, keys - _KEYS
        raise PayloadError("malformed_eip712",
                           "typed data needs exactly types, primaryType, domain and message"
                           + (f"; missing {sorted(missing)}" if missing else "")
                           + (f"; unexpected {sorted(extra)}" if extra else ""))
    if not isinstance(payload["types"], dict) or not isinstance(payload["domain"], dict) \
            or not isinstance(payload["message"], dict) or not isinstance(payload["primaryType"], str):
        raise PayloadError("malformed_eip712", "types, domain and message are objects; primaryType a string")
    if payload["primaryType"] not in payload["types"] or payload["primaryType"] == "EIP712Domain":
        raise PayloadError("malformed_eip712", "primaryType must name a type defined in types")
    return payload


def _uint(value: Any, what: str) -> int:
    """An EIP-712 uint as eth-account reads it: int, decimal string or 0x-hex string."""
    n = None
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    elif isinstance(value, str) and 0 < len(value) <= 80:
        try:
            n = int(value, 16) if value[:2] in ("0x", "0X") else int(value, 10)
        except ValueError:
            n = None
    if n is None:
        raise PayloadError("malformed_eip712", f"{what} is not an unsigned integer")
    if not 0 <= n <= UINT256_MAX:
        raise PayloadError("malformed_eip712", f"{what} is out of range")
    return n


def decode_eip712(payload: Any, key: KeyContext) -> DecodedPayload:
    """Decode EIP-712 typed data and compute the digest to sign."""
    from eth_utils import keccak

    data = _typed_data(payload)
    try:
        signable = encode_typed_data(full_message=copy.deepcopy(data))
    except PayloadError:
        raise
    except Exception as exc:  # eth-account/eth-abi raise many types for bad typed data
        raise PayloadError("malformed_eip712", f"typed data does not encode: {type(exc).__name__}: {exc}") from exc
    if signable.version != b"\x01" or len(signable.header) != 32 or len(signable.body) != 32:
        raise PayloadError("malformed_eip712", "unexpected EIP-712 encoding")
    digest = keccak(b"\x19" + signable.version + signable.header + signable.body)

    domain = data["domain"]
    chain_id = _uint(domain["chainId"], "domain.chainId") if "chainId" in domain else None
    contract = None
    if "verifyingContract" in domain:
        contract = normalize_eth_address(domain["verifyingContract"], "domain.verifyingContract")
    primary = data["primaryType"]
    message = data["message"]
    signer = key.signer
    transfers: list[Transfer] = []
    permit = None
    if primary == "Permit" and contract is not None and "spender" in message:
        spender = normalize_eth_address(message["spender"], "message.spender")
        if "value" in message:  # EIP-2612
            amount = _uint(message["value"], "message.value")
        elif "allowed" in message:  # DAI: allowed=true means unlimited
            # read as eth-account encodes a bool: false only for falsy values, "False", "false", "0"
            allowed = message["allowed"]
            falsy = not allowed or (isinstance(allowed, str) and allowed in ("False", "false", "0"))
            amount = 0 if falsy else UINT256_MAX
        else:
            amount = None
        if amount is not None:
            transfers.append(Transfer(f"ERC20:{contract}", amount, spender, "approval"))
            permit = {"token": contract, "spender": spender, "amount": str(amount),
                      "unlimited": amount == UINT256_MAX,
                      "deadline": str(message.get("deadline", message.get("expiry")))}
    if not transfers:
        transfers.append(Transfer(None, 0, contract, "signature"))
    summary = {
        "type": "eip712", "chain": "ethereum", "chain_id": chain_id,
        "network": CHAIN_NAMES.get(chain_id) if chain_id is not None else None,
        "signer": eth_address(signer.public_key), "path": signer.path,
        "primary_type": primary,
        "domain": {k: domain[k] for k in ("name", "version", "chainId", "verifyingContract", "salt")
                   if k in domain},
        "contract": contract, "permit": permit,
        "message": message,
        "domain_separator": "0x" + bytes(signable.header).hex(),
        "message_hash": "0x" + bytes(signable.body).hex(),
        "destinations": [t.to_dict() for t in transfers],
    }
    facts = TxFacts("eip712", chain="ethereum",
                    network=CHAIN_NAMES.get(chain_id) if chain_id is not None else None,
                    chain_id=chain_id, transfers=tuple(transfers), contract=contract,
                    method=primary)
    item = SigningItem(bytes(digest), signer.public_key, signer.tweak, signer.path)
    return DecodedPayload("eip712", (item,), summary, facts, canonical=data)


def assemble_eip712(decoded: DecodedPayload, signatures: Sequence[ecdsa.Signature]) -> dict:
    """``{"signature": hex of r||s||v (65 bytes, v = 27 + recovery id; no 0x), "r", "s", "v"}``."""
    if len(signatures) != 1 or len(decoded.items) != 1:
        raise SignatureMismatch("typed data takes exactly one signature")
    sig = recoverable(decoded.items[0], signatures[0])
    v = 27 + sig.recovery_id
    return {"signature": (sig.compact() + bytes([v])).hex(),
            "r": sig.r.to_bytes(32, "big").hex(), "s": sig.s.to_bytes(32, "big").hex(), "v": v}


__all__ = ["MAX_JSON_BYTES", "assemble_eip712", "decode_eip712"]
