"""Solana messages (legacy and v0): decode, check our key signs, report transfers and programs.

The payload (``payload_type="sol_tx"``) is the base64 of a Solana *message*: the bytes an
Ed25519 key signs (a transaction is ``compact-u16(n) || n signatures || message``). Layout:

- v0 only: a prefix byte ``0x80 | version`` (``0x80``); a first byte below 0x80 is a legacy
  message's header. Other versions are refused (``unsupported_tx_type``).
- header: ``num_required_signatures``, ``num_readonly_signed``, ``num_readonly_unsigned``;
- ``compact-u16`` count of 32-byte account keys (the first ``num_required_signatures`` sign;
  the first of them pays the fee);
- the 32-byte recent blockhash;
- ``compact-u16`` count of instructions: ``program_id_index`` (u8), ``compact-u16`` account
  indices (u8 each), ``compact-u16`` data length and the data;
- v0 only: ``compact-u16`` address table lookups: table address (32), ``compact-u16``
  writable indices, ``compact-u16`` readonly indices (u8 each).

``compact-u16`` is Solana's short_vec: 1-3 bytes, 7 bits each, the canonical (shortest)
encoding only, at most 0xffff. Nothing may follow the message. Sanity (as the runtime's
``sanitize``): at least one signer, the fee payer writable, counts within the keys, no
duplicate key, program ids among the static keys and never the fee payer, account indices
within the static + looked-up accounts.

Accounts loaded from address lookup tables cannot be resolved offline (the table's content
lives on chain): they are shown as ``lookup:<table>/<w|r><index>`` and a transfer to one has an
*unresolved* destination that no allow-list names (a deny-list cannot see it either: the
summary warns). Our key must be one of the first ``num_required_signatures`` static keys
(``key_not_signer``), and the key must be an ``ed25519`` key (``scheme_mismatch``).

Instructions decoded (facts for the rules; anything else is an *unknown* program call, which
``allow_contract_calls: false`` refuses):
- System Program: Transfer, TransferWithSeed, CreateAccount, CreateAccountWithSeed,
  WithdrawNonceAccount (lamports leave: transfers of ``SOL``), AdvanceNonceAccount.
- SPL Token and Token-2022: Transfer (amount; the mint is not in the instruction: asset
  ``SPL:unknown``), TransferChecked (amount, decimals, asset ``SPL:<mint>``).
- Compute Budget: unit limit and price (the priority fee), heap frame, loaded data size.
- Associated Token Account: Create and CreateIdempotent (the payer funds the account's rent).
- Memo (v1, v2): the memo text is shown.
A known program with data we do not decode exactly (another discriminant, a wrong length) is
refused when it could move value (System, SPL Token: ``malformed_sol_tx`` for a bad length)
or reported as an unknown call otherwise. ``fee`` is the most the fee payer can pay: 5000
lamports per signature plus the priority fee ``ceil(unit_limit * unit_price / 10^6)`` (unit
limit: the instruction's, else 200 000 per non-compute-budget instruction, at most 1 400 000).
A message does not say which cluster it is for (mainnet-beta, devnet...): no network rule.

The item signed is the message itself (``SigningItem.message``; ``digest`` = SHA-256 of it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import base58
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.payloads.errors import PayloadError, SignatureMismatch
from appliance.payloads.types import ED25519, DecodedPayload, KeyContext, SigningItem, Transfer, TxFacts

#: Solana's PACKET_DATA_SIZE: no transaction (signatures included) is larger
MAX_MESSAGE_BYTES = 1232
MAX_MESSAGE_BASE64 = (MAX_MESSAGE_BYTES + 2) // 3 * 4
LAMPORTS_PER_SIGNATURE = 5000
DEFAULT_UNITS_PER_INSTRUCTION = 200_000
MAX_COMPUTE_UNITS = 1_400_000
#: what a transfer's destination reads when its account comes from a lookup table
UNRESOLVED = "unresolved"

SYSTEM_PROGRAM = "11111111111111111111111111111111"
TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
TOKEN_2022_PROGRAM = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb"
COMPUTE_BUDGET_PROGRAM = "ComputeBudget111111111111111111111111111111"
ATA_PROGRAM = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL"
MEMO_PROGRAMS = ("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr", "Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo")
PROGRAM_NAMES = {SYSTEM_PROGRAM: "system", TOKEN_PROGRAM: "spl-token", TOKEN_2022_PROGRAM: "spl-token-2022",
                 COMPUTE_BUDGET_PROGRAM: "compute-budget", ATA_PROGRAM: "associated-token-account",
                 MEMO_PROGRAMS[0]: "memo", MEMO_PROGRAMS[1]: "memo-v1"}


def b58(raw: bytes) -> str:
    return base58.b58encode(raw).decode()


def _bad(message: str) -> PayloadError:
    return PayloadError("malformed_sol_tx", message)


class _Reader:
    def __init__(self, raw: bytes) -> None:
        self.raw, self.pos = raw, 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.raw):
            raise _bad(f"truncated message: {what}")
        out = self.raw[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def compact_u16(self, what: str) -> int:
        """Solana short_vec: canonical only (no trailing zero group), at most 0xffff."""
        value = 0
        for i in range(3):
            b = self.u8(what)
            value |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                if i > 0 and b == 0:
                    raise _bad(f"{what}: non-canonical compact-u16")
                if value > 0xFFFF:
                    raise _bad(f"{what}: compact-u16 above 0xffff")
                return value
        raise _bad(f"{what}: compact-u16 longer than 3 bytes")


@dataclass(frozen=True)
class Instruction:
    program_index: int
    accounts: tuple[int, ...]
    data: bytes


@dataclass(frozen=True)
class Lookup:
    table: bytes
    writable: tuple[int, ...]
    readonly: tuple[int, ...]


@dataclass(frozen=True)
class Message:
    """A parsed message (``version``: None for legacy, 0 for v0)."""

    version: int | None
    num_required_signatures: int
    num_readonly_signed: int
    num_readonly_unsigned: int
    account_keys: tuple[bytes, ...]
    recent_blockhash: bytes
    instructions: tuple[Instruction, ...]
    lookups: tuple[Lookup, ...] = ()

    @property
    def num_accounts(self) -> int:
        return len(self.account_keys) + sum(len(t.writable) + len(t.readonly) for t in self.lookups)

    def account(self, index: int) -> str:
        """base58 address of account ``index``, or ``lookup:<table>/w3`` for one from a table."""
        if index < len(self.account_keys):
            return b58(self.account_keys[index])
        i = index - len(self.account_keys)
        for t in self.lookups:  # every table's writable accounts first, then the readonly ones
            if i < len(t.writable):
                return f"lookup:{b58(t.table)}/w{t.writable[i]}"
            i -= len(t.writable)
        for t in self.lookups:
            if i < len(t.readonly):
                return f"lookup:{b58(t.table)}/r{t.readonly[i]}"
            i -= len(t.readonly)
        raise _bad(f"account index {index} out of range")

    def is_writable(self, index: int) -> bool:
        n_static = len(self.account_keys)
        if index < self.num_required_signatures:
            return index < self.num_required_signatures - self.num_readonly_signed
        if index < n_static:
            return index < n_static - self.num_readonly_unsigned
        return self.account(index).split("/")[-1].startswith("w")


def _message_bytes(payload: Any) -> bytes:
    if isinstance(payload, str):
        text = payload.strip()
        if len(text) > MAX_MESSAGE_BASE64:
            raise PayloadError("payload_too_large", f"a Solana message is at most {MAX_MESSAGE_BYTES} bytes")
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _bad("a sol_tx payload is the base64 of a Solana message") from exc
    elif isinstance(payload, (bytes, bytearray, memoryview)):
        raw = bytes(payload)
    else:
        raise PayloadError("wrong_type", "a sol_tx payload is a base64 string")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise PayloadError("payload_too_large", f"a Solana message is at most {MAX_MESSAGE_BYTES} bytes")
    if not raw:
        raise _bad("empty message")
    return raw


def parse_message(raw: bytes) -> Message:
    """Parse and sanity-check a legacy or v0 message (``malformed_sol_tx``,
    ``unsupported_tx_type``)."""
    r = _Reader(raw)
    version = None
    if raw[0] & 0x80:
        version = r.u8("version") & 0x7F
        if version != 0:
            raise PayloadError("unsupported_tx_type", f"Solana message version {version} is not supported (legacy, v0)")
    n_sig, n_ro_signed, n_ro_unsigned = r.u8("header"), r.u8("header"), r.u8("header")
    keys = tuple(r.take(32, "account key") for _ in range(r.compact_u16("account keys")))
    blockhash = r.take(32, "recent blockhash")
    instructions = []
    for _ in range(r.compact_u16("instructions")):
        program = r.u8("program id index")
        accounts = tuple(r.take(r.compact_u16("instruction accounts"), "instruction accounts"))
        data = r.take(r.compact_u16("instruction data"), "instruction data")
        instructions.append(Instruction(program, accounts, data))
    lookups = []
    if version == 0:
        for _ in range(r.compact_u16("address table lookups")):
            table = r.take(32, "lookup table")
            writable = tuple(r.take(r.compact_u16("lookup indexes"), "lookup indexes"))
            readonly = tuple(r.take(r.compact_u16("lookup indexes"), "lookup indexes"))
            if not writable and not readonly:
                raise _bad("an address table lookup loads no account")
            lookups.append(Lookup(table, writable, readonly))
    if r.pos != len(raw):
        raise _bad(f"{len(raw) - r.pos} bytes after the message")
    msg = Message(version, n_sig, n_ro_signed, n_ro_unsigned, keys, blockhash, tuple(instructions), tuple(lookups))
    _sanitize(msg)
    return msg


def _sanitize(msg: Message) -> None:
    n = len(msg.account_keys)
    if msg.num_required_signatures == 0 or msg.num_required_signatures > n:
        raise _bad("the header's signer count does not fit the account keys")
    if msg.num_readonly_signed >= msg.num_required_signatures:
        raise _bad("the fee payer must be a writable signer")
    if msg.num_readonly_unsigned > n - msg.num_required_signatures:
        raise _bad("the header's readonly count does not fit the account keys")
    if len(set(msg.account_keys)) != n:
        raise _bad("an account key appears twice")
    if len({t.table for t in msg.lookups}) != len(msg.lookups):
        raise _bad("a lookup table appears twice")
    if msg.num_accounts > 256:
        raise _bad("more than 256 accounts")
    for j, ix in enumerate(msg.instructions):
        if ix.program_index == 0 or ix.program_index >= n:
            raise _bad(f"instruction {j}: program id index {ix.program_index} is not a static non-payer account")
        if any(a >= msg.num_accounts for a in ix.accounts):
            raise _bad(f"instruction {j}: account index out of range")


# ---------------------------------------------------------------------------------------
# instructions


@dataclass
class _Decoded:
    kind: str  # "transfer", "create_account", ..., or "unknown"
    fields: dict
    transfers: list[Transfer]


def _u64(data: bytes, at: int) -> int:
    return struct.unpack_from("<Q", data, at)[0]


def _need(data: bytes, size: int, accounts: Sequence[int], n_accounts: int, what: str) -> None:
    if len(data) != size:
        raise _bad(f"{what}: {len(data)} data bytes, expected {size}")
    if len(accounts) < n_accounts:
        raise _bad(f"{what}: {len(accounts)} accounts, expected at least {n_accounts}")


def _rust_string(data: bytes, at: int) -> tuple[str, int]:
    if at + 8 > len(data):
        raise _bad("truncated seed")
    n = _u64(data, at)
    if n > 32 or at + 8 + n > len(data):  # MAX_SEED_LEN
        raise _bad("bad seed length")
    try:
        return data[at + 8:at + 8 + n].decode(), at + 8 + n
    except UnicodeDecodeError as exc:
        raise _bad("seed is not UTF-8") from exc


def _system(msg: Message, ix: Instruction) -> _Decoded:
    if len(ix.data) < 4:
        raise _bad("system instruction without a discriminant")
    tag, acc, d = struct.unpack_from("<I", ix.data)[0], ix.accounts, ix.data

    def sol(amount: int, to: int, kind: str = "transfer") -> list[Transfer]:
        return [Transfer("SOL", amount, msg.account(acc[to]), kind)]

    if tag == 2:  # Transfer { lamports }
        _need(d, 12, acc, 2, "system transfer")
        return _Decoded("transfer", {"from": msg.account(acc[0]), "to": msg.account(acc[1]),
                                     "lamports": str(_u64(d, 4))}, sol(_u64(d, 4), 1))
    if tag == 0:  # CreateAccount { lamports, space, owner }
        _need(d, 52, acc, 2, "system create_account")
        return _Decoded("create_account", {"from": msg.account(acc[0]), "new_account": msg.account(acc[1]),
                                           "lamports": str(_u64(d, 4)), "space": _u64(d, 12),
                                           "owner": b58(d[20:52])}, sol(_u64(d, 4), 1))
    if tag == 3:  # CreateAccountWithSeed { base, seed, lamports, space, owner }
        seed, at = _rust_string(d, 36)
        _need(d, at + 48, acc, 2, "system create_account_with_seed")
        return _Decoded("create_account_with_seed", {"from": msg.account(acc[0]), "new_account": msg.account(acc[1]),
                                                     "seed": seed, "lamports": str(_u64(d, at)),
                                                     "owner": b58(d[at + 16:at + 48])}, sol(_u64(d, at), 1))
    if tag == 11:  # TransferWithSeed { lamports, from_seed, from_owner }
        seed, at = _rust_string(d, 12)
        _need(d, at + 32, acc, 3, "system transfer_with_seed")
        return _Decoded("transfer_with_seed", {"from": msg.account(acc[0]), "to": msg.account(acc[2]),
                                               "lamports": str(_u64(d, 4)), "seed": seed}, sol(_u64(d, 4), 2))
    if tag == 5:  # WithdrawNonceAccount(lamports): [nonce, recipient, sysvar, sysvar, authority]
        _need(d, 12, acc, 5, "system withdraw_nonce_account")
        return _Decoded("withdraw_nonce_account", {"nonce_account": msg.account(acc[0]), "to": msg.account(acc[1]),
                                                   "lamports": str(_u64(d, 4))}, sol(_u64(d, 4), 1))
    if tag == 4:  # AdvanceNonceAccount: [nonce, recent_blockhashes sysvar, authority]
        _need(d, 4, acc, 3, "system advance_nonce_account")
        return _Decoded("advance_nonce_account", {"nonce_account": msg.account(acc[0])}, [])
    # Assign, Allocate, nonce authority changes...: they change who controls an account
    return _Decoded("unknown", {"discriminant": tag}, [])


def _token(msg: Message, ix: Instruction) -> _Decoded:
    d, acc = ix.data, ix.accounts
    if not d:
        raise _bad("token instruction without a discriminant")
    if d[0] == 3:  # Transfer { amount }: [source, destination, authority, ...]
        _need(d, 9, acc, 3, "token transfer")
        amount = _u64(d, 1)
        return _Decoded("token_transfer", {"source": msg.account(acc[0]), "destination": msg.account(acc[1]),
                                           "authority": msg.account(acc[2]), "amount": str(amount), "mint": None},
                        [Transfer("SPL:unknown", amount, msg.account(acc[1]))])
    if d[0] == 12:  # TransferChecked { amount, decimals }: [source, mint, destination, authority, ...]
        _need(d, 10, acc, 4, "token transfer_checked")
        amount, mint = _u64(d, 1), msg.account(acc[1])
        asset = f"SPL:{mint}" if not mint.startswith("lookup:") else "SPL:unknown"
        return _Decoded("token_transfer_checked", {"source": msg.account(acc[0]), "mint": mint,
                                                   "destination": msg.account(acc[2]),
                                                   "authority": msg.account(acc[3]), "amount": str(amount),
                                                   "decimals": d[9]},
                        [Transfer(asset, amount, msg.account(acc[2]))])
    # Approve (delegation), SetAuthority, CloseAccount, Burn, MintTo...
    return _Decoded("unknown", {"discriminant": d[0]}, [])


def _compute_budget(ix: Instruction, budget: dict) -> _Decoded:
    d = ix.data
    sizes = {1: 5, 2: 5, 3: 9, 4: 5}
    if not d or sizes.get(d[0]) != len(d):
        return _Decoded("unknown", {}, [])
    names = {1: "request_heap_frame", 2: "set_compute_unit_limit", 3: "set_compute_unit_price",
             4: "set_loaded_accounts_data_size_limit"}
    value = _u64(d, 1) if d[0] == 3 else struct.unpack_from("<I", d, 1)[0]
    if d[0] in (2, 3):
        key = "unit_limit" if d[0] == 2 else "unit_price"
        if key in budget:
            raise _bad(f"two compute-budget {names[d[0]]} instructions")
        budget[key] = value
    return _Decoded(names[d[0]], {"value": str(value)}, [])


def _instruction(msg: Message, ix: Instruction, budget: dict) -> _Decoded:
    program = msg.account(ix.program_index)
    if program == SYSTEM_PROGRAM:
        return _system(msg, ix)
    if program in (TOKEN_PROGRAM, TOKEN_2022_PROGRAM):
        return _token(msg, ix)
    if program == COMPUTE_BUDGET_PROGRAM:
        return _compute_budget(ix, budget)
    if program == ATA_PROGRAM and ix.data in (b"", b"\x00", b"\x01") and len(ix.accounts) >= 4:
        return _Decoded("create_associated_token_account",
                        {"payer": msg.account(ix.accounts[0]), "account": msg.account(ix.accounts[1]),
                         "owner": msg.account(ix.accounts[2]), "mint": msg.account(ix.accounts[3])}, [])
    if program in MEMO_PROGRAMS:
        return _Decoded("memo", {"memo": ix.data[:256].decode("utf-8", "replace")}, [])
    return _Decoded("unknown", {}, [])


def _max_fee(msg: Message, budget: dict) -> int:
    others = sum(1 for ix in msg.instructions if msg.account(ix.program_index) != COMPUTE_BUDGET_PROGRAM)
    limit = budget.get("unit_limit", DEFAULT_UNITS_PER_INSTRUCTION * others)
    limit = min(limit, MAX_COMPUTE_UNITS)
    priority = -(-limit * budget.get("unit_price", 0) // 1_000_000)
    return LAMPORTS_PER_SIGNATURE * msg.num_required_signatures + priority


def _sol(lamports: int) -> str:
    return f"{lamports // 10**9}.{lamports % 10**9:09d}"


# ---------------------------------------------------------------------------------------
# decoding and assembling


def decode_sol_tx(payload: Any, key: KeyContext) -> DecodedPayload:
    """Decode a Solana message for ``key`` (an ``ed25519`` KeyContext)."""
    if key.scheme != ED25519:
        raise PayloadError("scheme_mismatch", f"a sol_tx is signed by an ed25519 key, not a {key.scheme} key")
    raw = _message_bytes(payload)
    msg = parse_message(raw)
    ours = key.public_key
    if ours not in msg.account_keys[:msg.num_required_signatures]:
        where = "is not among the message's signers" if ours not in msg.account_keys else \
            "is in the message but not as a signer"
        raise PayloadError("key_not_signer", f"this key ({b58(ours)}) {where}")
    budget: dict = {}
    instructions, transfers, warnings = [], [], []
    unknown_programs: list[str] = []
    for j, ix in enumerate(msg.instructions):
        program = msg.account(ix.program_index)
        dec = _instruction(msg, ix, budget)
        if dec.kind == "unknown" and program not in unknown_programs:
            unknown_programs.append(program)
        for t in dec.transfers:
            if t.destination.startswith("lookup:"):
                warnings.append(f"instruction {j} pays an account from a lookup table ({t.destination}): "
                                "its address cannot be resolved offline")
                t = Transfer(t.asset, t.amount, f"{UNRESOLVED}:{t.destination[len('lookup:'):]}", t.kind)
            if t.asset == "SPL:unknown":
                warnings.append(f"instruction {j} moves tokens of an unnamed mint (Transfer, not TransferChecked)")
            transfers.append(t)
        instructions.append({"index": j, "program_id": program, "program": PROGRAM_NAMES.get(program),
                             "kind": dec.kind, "accounts": [msg.account(a) for a in ix.accounts],
                             "data": ix.data[:256].hex() + ("..." if len(ix.data) > 256 else ""),
                             **dec.fields})
    if unknown_programs:
        warnings.append("instructions of programs the appliance does not decode: " + ", ".join(unknown_programs))
    fee = _max_fee(msg, budget)
    programs = list(dict.fromkeys(msg.account(ix.program_index) for ix in msg.instructions))
    summary = {
        "type": "sol_tx", "chain": "solana", "asset": "SOL", "unit": "lamport",
        "version": "legacy" if msg.version is None else f"v{msg.version}",
        "fee_payer": b58(msg.account_keys[0]), "signer": b58(ours),
        "signer_index": msg.account_keys.index(ours),
        "signers": [b58(k) for k in msg.account_keys[:msg.num_required_signatures]],
        "recent_blockhash": b58(msg.recent_blockhash),
        "accounts": [{"address": msg.account(i), "signer": i < msg.num_required_signatures,
                      "writable": msg.is_writable(i)} for i in range(msg.num_accounts)],
        "address_table_lookups": [{"table": b58(t.table), "writable_indexes": list(t.writable),
                                   "readonly_indexes": list(t.readonly)} for t in msg.lookups],
        "instructions": instructions, "programs": programs, "unknown_programs": unknown_programs,
        "transfers": [t.to_dict() for t in transfers],
        "fee": fee, "fee_sol": _sol(fee), "compute_unit_limit": budget.get("unit_limit"),
        "compute_unit_price_micro_lamports": budget.get("unit_price"),
        "warnings": warnings,
    }
    facts = TxFacts("sol_tx", chain="solana", transfers=tuple(transfers), fee=fee, fee_asset="SOL",
                    contract=unknown_programs[0] if unknown_programs else None,
                    unknown_call=bool(unknown_programs))
    item = SigningItem(hashlib.sha256(raw).digest(), ours, 0, "m", scheme=ED25519, message=raw)
    return DecodedPayload("sol_tx", (item,), summary, facts, canonical=raw)


def assemble_sol_tx(decoded: DecodedPayload, signatures: Sequence[bytes]) -> dict:
    """``{"signature": base58, "signature_hex", "signer", "complete", "transaction"}``: the
    wire transaction (base64: ``compact-u16(n) || signatures || message``) with our signature
    in our slot and zeros in the others' (``complete`` when we are the only signer). The
    signature is checked with ``cryptography``'s Ed25519 first (:class:`SignatureMismatch`)."""
    if len(signatures) != 1 or len(decoded.items) != 1:
        raise SignatureMismatch("a Solana message takes exactly one signature")
    item, sig = decoded.items[0], signatures[0]
    if not isinstance(sig, (bytes, bytearray)) or len(sig) != 64:
        raise SignatureMismatch("an Ed25519 signature is 64 bytes")
    try:
        Ed25519PublicKey.from_public_bytes(item.public_key).verify(bytes(sig), item.message)
    except InvalidSignature as exc:
        raise SignatureMismatch("the Ed25519 signature does not verify for the message") from exc
    msg = parse_message(decoded.canonical)
    n = msg.num_required_signatures
    slots = [b"\x00" * 64] * n
    slots[msg.account_keys.index(item.public_key)] = bytes(sig)
    tx = _compact_u16(n) + b"".join(slots) + decoded.canonical
    return {"signature": b58(bytes(sig)), "signature_hex": bytes(sig).hex(), "signer": b58(item.public_key),
            "complete": n == 1, "transaction": base64.b64encode(tx).decode()}


def _compact_u16(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


__all__ = [
    "MAX_MESSAGE_BYTES",
    "Message",
    "assemble_sol_tx",
    "decode_sol_tx",
    "parse_message",
]
