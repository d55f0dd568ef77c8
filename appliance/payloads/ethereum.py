"""Ethereum transactions: EIP-155 legacy, EIP-2930 (type 1) and EIP-1559 (type 2).

The payload is the hex of the *unsigned* serialized transaction:
- legacy: ``rlp([nonce, gasPrice, gas, to, value, data, chainId, 0, 0])`` (EIP-155; the
  pre-EIP-155 six-field form has no replay protection and is refused);
- type 1: ``0x01 || rlp([chainId, nonce, gasPrice, gas, to, value, data, accessList])``;
- type 2: ``0x02 || rlp([chainId, nonce, maxPriorityFeePerGas, maxFeePerGas, gas, to, value,
  data, accessList])``.
The digest is keccak256 of exactly that encoding. Decoding is pyrlp's, strict: canonical
RLP only (no leading zeros, no over-long lengths, nothing trailing), typed fields via its
sedes, and we re-encode and compare byte for byte. Blob (type 3) and set-code (type 4,
EIP-7702: delegates the account to code) transactions are refused.

Calldata is decoded for the ERC-20 methods ``transfer``, ``approve`` and ``transferFrom``
(eth-abi, strict padding); anything else is an unknown contract call, marked as such.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import rlp
from rlp.sedes import Binary, CountableList, List, big_endian_int, binary

from appliance.payloads.addresses import eth_address
from appliance.payloads.errors import PayloadError, SignatureMismatch
from appliance.payloads.types import DecodedPayload, KeyContext, SigningItem, Transfer, TxFacts
from appliance.tss import ecdsa

MAX_TX_BYTES = 128 * 1024  # geth's txMaxSize
UINT64_MAX = 2**64 - 1
UINT256_MAX = 2**256 - 1
#: chain ids EIP-155 v (chain_id*2+36) still fits comfortably; geth caps chain id to 64 bits too
MAX_CHAIN_ID = 2**63 - 1
_HEX = re.compile(r"^(0x)?([0-9a-fA-F]{2})*$")

CHAIN_NAMES = {1: "mainnet", 11155111: "sepolia", 17000: "holesky", 560048: "hoodi",
               5: "goerli", 10: "optimism", 56: "bsc", 137: "polygon", 8453: "base",
               42161: "arbitrum", 31337: "anvil", 1337: "dev"}

_address = Binary.fixed_length(20, allow_empty=True)
_access_list = CountableList(List([Binary.fixed_length(20), CountableList(Binary.fixed_length(32))],
                                  strict=True))

LEGACY_FIELDS = (("nonce", big_endian_int), ("gasPrice", big_endian_int), ("gas", big_endian_int),
                 ("to", _address), ("value", big_endian_int), ("data", binary),
                 ("chainId", big_endian_int), ("r", big_endian_int), ("s", big_endian_int))
TYPE1_FIELDS = (("chainId", big_endian_int), ("nonce", big_endian_int),
                ("gasPrice", big_endian_int), ("gas", big_endian_int), ("to", _address),
                ("value", big_endian_int), ("data", binary), ("accessList", _access_list))
TYPE2_FIELDS = (("chainId", big_endian_int), ("nonce", big_endian_int),
                ("maxPriorityFeePerGas", big_endian_int), ("maxFeePerGas", big_endian_int),
                ("gas", big_endian_int), ("to", _address), ("value", big_endian_int),
                ("data", binary), ("accessList", _access_list))
_FIELDS = {0: LEGACY_FIELDS, 1: TYPE1_FIELDS, 2: TYPE2_FIELDS}
_TYPE_NAMES = {0: "legacy", 1: "eip2930", 2: "eip1559"}

# ERC-20 methods we read: selector -> (name, argument types)
ERC20_METHODS = {
    bytes.fromhex("a9059cbb"): ("transfer", ("address", "uint256")),
    bytes.fromhex("095ea7b3"): ("approve", ("address", "uint256")),
    bytes.fromhex("23b872dd"): ("transferFrom", ("address", "address", "uint256")),
}


def _tx_bytes(payload: Any) -> bytes:
    if isinstance(payload, str):
        if len(payload) > 2 * MAX_TX_BYTES + 2:
            raise PayloadError("payload_too_large", f"transaction larger than {MAX_TX_BYTES} bytes")
        if not _HEX.match(payload):
            raise PayloadError("malformed_eth_tx", "an eth_tx payload is the hex of the unsigned transaction")
        raw = bytes.fromhex(payload[2:] if payload[:2] in ("0x", "0X") else payload)
    elif isinstance(payload, (bytes, bytearray, memoryview)):
        raw = bytes(payload)
    else:
        raise PayloadError("wrong_type", "an eth_tx payload is a hex string")
    if len(raw) > MAX_TX_BYTES:
        raise PayloadError("payload_too_large", f"transaction larger than {MAX_TX_BYTES} bytes")
    if not raw:
        raise PayloadError("malformed_eth_tx", "empty transaction")
    return raw


def parse_unsigned(raw: bytes) -> tuple[int, dict[str, Any]]:
    """(tx type, fields) of an unsigned transaction, strictly."""
    first = raw[0]
    if first >= 0xC0:
        tx_type, body = 0, raw
    elif first in (1, 2):
        tx_type, body = first, raw[1:]
    elif first in (3, 4):
        raise PayloadError("unsupported_tx_type",
                           f"type {first} transactions ({'blob' if first == 3 else 'EIP-7702 set-code'}) are not signed")
    else:
        raise PayloadError("malformed_eth_tx", f"unknown transaction type byte 0x{first:02x}")
    try:
        items = rlp.decode(body, strict=True)
    except rlp.exceptions.DecodingError as exc:
        raise PayloadError("malformed_eth_tx", f"bad RLP: {exc}") from exc
    if not isinstance(items, list):
        raise PayloadError("malformed_eth_tx", "the transaction is not an RLP list")
    fields = _FIELDS[tx_type]
    if tx_type == 0 and len(items) == 6:
        raise PayloadError("chain_id_required",
                           "pre-EIP-155 legacy transactions have no chain id (replayable): not signed")
    signed_len = len(fields) + (0 if tx_type == 0 else 3)
    if len(items) == signed_len and len(items) != len(fields):
        raise PayloadError("malformed_eth_tx", "this transaction is already signed")
    if len(items) != len(fields):
        raise PayloadError("malformed_eth_tx",
                           f"a {_TYPE_NAMES[tx_type]} transaction has {len(fields)} fields, got {len(items)}")
    out: dict[str, Any] = {}
    for (name, sedes), item in zip(fields, items):
        try:
            out[name] = sedes.deserialize(item)
        except (rlp.exceptions.DeserializationError, rlp.exceptions.ListDeserializationError,
                TypeError, ValueError) as exc:
            raise PayloadError("malformed_eth_tx", f"field {name}: {exc}") from exc
    if rlp.encode([sedes.serialize(out[name]) for name, sedes in fields]) != body:
        raise PayloadError("malformed_eth_tx", "non-canonical encoding")
    if tx_type == 0 and (out.pop("r"), out.pop("s")) != (0, 0):
        raise PayloadError("malformed_eth_tx",
                           "an unsigned EIP-155 transaction ends with chainId, 0, 0")
    for name in ("nonce", "gas"):
        if out[name] > UINT64_MAX:
            raise PayloadError("malformed_eth_tx", f"{name} does not fit 64 bits")
    for name in ("value", "gasPrice", "maxFeePerGas", "maxPriorityFeePerGas"):
        if name in out and out[name] > UINT256_MAX:
            raise PayloadError("malformed_eth_tx", f"{name} does not fit 256 bits")
    if not 1 <= out["chainId"] <= MAX_CHAIN_ID:
        raise PayloadError("chain_id_required", "chain id must be between 1 and 2^63-1")
    if tx_type == 2 and out["maxPriorityFeePerGas"] > out["maxFeePerGas"]:
        raise PayloadError("malformed_eth_tx", "maxPriorityFeePerGas exceeds maxFeePerGas")
    return tx_type, out


def encode_unsigned(tx_type: int, fields: dict[str, Any]) -> bytes:
    """The unsigned serialization (what the client sends, and what is hashed)."""
    values = dict(fields)
    if tx_type == 0:
        values.update(r=0, s=0)
    body = rlp.encode([sedes.serialize(values[name]) for name, sedes in _FIELDS[tx_type]])
    return body if tx_type == 0 else bytes([tx_type]) + body


def _keccak(data: bytes) -> bytes:
    from eth_utils import keccak

    return keccak(data)


def _checksum(addr: bytes) -> str:
    from eth_utils import to_checksum_address

    return to_checksum_address(addr)


def _eth(wei: int) -> str:
    return f"{wei // 10**18}.{wei % 10**18:018d}".rstrip("0").rstrip(".")


def decode_calldata(to: str | None, value: int, data: bytes) -> tuple[list[Transfer], dict]:
    """Transfers and a description of a call to ``to`` with ``value`` wei and ``data``."""
    from eth_abi import decode

    transfers: list[Transfer] = []
    info: dict[str, Any] = {"method": None, "selector": None}
    if to is None:
        transfers.append(Transfer("ETH", value, None, "contract_creation"))
        info["method"] = "create"
        return transfers, info
    if not data:
        transfers.append(Transfer("ETH", value, to, "transfer"))
        return transfers, info
    selector = data[:4]
    info["selector"] = "0x" + selector.hex()
    method = ERC20_METHODS.get(selector) if len(data) >= 4 else None
    args = None
    if method is not None and len(data) == 4 + 32 * len(method[1]):
        try:
            args = decode(list(method[1]), data[4:], strict=True)
        except Exception:  # noqa: BLE001 -- eth-abi raises several types; undecodable is "unknown"
            args = None
    if args is None:
        info["method"] = "unknown"
        transfers.append(Transfer("ETH", value, to, "contract_call"))
        return transfers, info
    name = method[0]
    token = f"ERC20:{to}"
    info.update(method=name, token=to)
    if value:
        transfers.append(Transfer("ETH", value, to, "contract_call"))
    if name == "transfer":
        dest, amount = _checksum(args[0]), args[1]
        transfers.append(Transfer(token, amount, dest, "transfer"))
        info.update(recipient=dest, amount=str(amount))
    elif name == "approve":
        dest, amount = _checksum(args[0]), args[1]
        transfers.append(Transfer(token, amount, dest, "approval"))
        info.update(spender=dest, amount=str(amount), unlimited=amount == UINT256_MAX)
    else:
        src, dest, amount = _checksum(args[0]), _checksum(args[1]), args[2]
        transfers.append(Transfer(token, amount, dest, "transfer"))
        info.update(sender=src, recipient=dest, amount=str(amount))
    return transfers, info


def decode_eth_tx(payload: Any, key: KeyContext) -> DecodedPayload:
    """Decode an unsigned Ethereum transaction and compute its signing hash."""
    raw = _tx_bytes(payload)
    tx_type, f = parse_unsigned(raw)
    digest = _keccak(raw)
    signer = key.signer
    to = _checksum(f["to"]) if f["to"] else None
    transfers, call = decode_calldata(to, f["value"], f["data"])
    price = f["maxFeePerGas"] if tx_type == 2 else f["gasPrice"]
    max_fee = f["gas"] * price
    chain_id = f["chainId"]
    summary: dict[str, Any] = {
        "type": "eth_tx", "chain": "ethereum", "chain_id": chain_id,
        "network": CHAIN_NAMES.get(chain_id), "tx_type": _TYPE_NAMES[tx_type],
        "from": eth_address(signer.public_key), "path": signer.path,
        "nonce": f["nonce"], "to": to, "value": str(f["value"]), "value_eth": _eth(f["value"]),
        "gas_limit": f["gas"],
        "max_fee": str(max_fee), "max_fee_eth": _eth(max_fee),
        "data": "0x" + f["data"][:512].hex() + ("..." if len(f["data"]) > 512 else ""),
        "data_len": len(f["data"]),
        "method": call["method"], "selector": call["selector"],
        "call": {k: v for k, v in call.items() if k not in ("method", "selector")} or None,
        "destinations": [t.to_dict() for t in transfers],
    }
    if tx_type == 2:
        summary.update(max_fee_per_gas=str(f["maxFeePerGas"]),
                       max_priority_fee_per_gas=str(f["maxPriorityFeePerGas"]))
    else:
        summary["gas_price"] = str(f["gasPrice"])
    if tx_type in (1, 2):
        summary["access_list_len"] = len(f["accessList"])
    facts = TxFacts("eth_tx", chain="ethereum", network=CHAIN_NAMES.get(chain_id), chain_id=chain_id,
                    transfers=tuple(transfers), fee=max_fee, fee_asset="ETH",
                    contract=to if f["data"] else None, method=call["method"],
                    unknown_call=call["method"] == "unknown")
    item = SigningItem(digest, signer.public_key, signer.tweak, signer.path)
    return DecodedPayload("eth_tx", (item,), summary, facts, canonical=raw)


def recoverable(item: SigningItem, sig: ecdsa.Signature) -> ecdsa.Signature:
    """The low-S form of ``sig`` with its recovery id, checked against the item's key
    (EIP-2 requires low S; v carries y parity only, so an x-overflow R is refused)."""
    if not isinstance(sig, ecdsa.Signature):
        raise SignatureMismatch("signatures must be appliance.tss.ecdsa.Signature objects")
    sig = sig.normalized()
    if not ecdsa.verify(item.public_key, item.digest, sig, strict_low_s=True):
        raise SignatureMismatch("the signature does not verify for the transaction digest")
    if sig.recovery_id is None or ecdsa.recover_public_key(item.digest, sig).to_bytes() != item.public_key:
        sig = sig.with_recovery_id(item.public_key, item.digest)
    if sig.recovery_id & 2:
        raise SignatureMismatch("R's x-coordinate overflows q: Ethereum cannot encode this signature")
    return sig


def assemble_eth_tx(decoded: DecodedPayload, signatures: Sequence[ecdsa.Signature]) -> dict:
    """``{"raw_tx": hex, "tx_hash": hex, "v", "r", "s"}`` for the signed transaction (plain hex,
    no 0x prefix, like every hex string of the API: ``bytes.fromhex`` and HexBytes both read it)."""
    if len(signatures) != 1 or len(decoded.items) != 1:
        raise SignatureMismatch("an Ethereum transaction takes exactly one signature")
    item = decoded.items[0]
    sig = recoverable(item, signatures[0])
    raw = decoded.canonical
    tx_type, f = parse_unsigned(raw)
    names = [n for n, _ in _FIELDS[tx_type]]
    sedes = dict(_FIELDS[tx_type])
    if tx_type == 0:
        v = f["chainId"] * 2 + 35 + sig.recovery_id
        values = [sedes[n].serialize(f[n]) for n in names[:6]]
        signed = rlp.encode(values + [big_endian_int.serialize(x) for x in (v, sig.r, sig.s)])
    else:
        v = sig.recovery_id
        values = [sedes[n].serialize(f[n]) for n in names]
        signed = bytes([tx_type]) + rlp.encode(
            values + [big_endian_int.serialize(x) for x in (v, sig.r, sig.s)])
    return {"raw_tx": signed.hex(), "tx_hash": _keccak(signed).hex(),
            "v": v, "r": sig.r.to_bytes(32, "big").hex(), "s": sig.s.to_bytes(32, "big").hex()}


__all__ = [
    "CHAIN_NAMES",
    "MAX_TX_BYTES",
    "assemble_eth_tx",
    "decode_calldata",
    "decode_eth_tx",
    "encode_unsigned",
    "parse_unsigned",
]
