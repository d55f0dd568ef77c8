"""Sample payloads for a public key: for tests, LocalCluster end-to-end checks and the demo.

    psbt_b64 = sample_psbt([(pubkey, 50_000), (pubkey, 70_000)], [(dest_address, 100_000)])
    tx_hex = sample_eth_tx(chain_id=1, to=addr, value=10**16)
    typed = sample_permit(chain_id=1, token=addr, owner=eth_address(pubkey), spender=addr, value=5)

The PSBT spends made-up previous transactions (so it is never valid on a real chain) paying
P2WPKH (or P2PKH / P2SH-P2WPKH) outputs of the given keys, carrying both the full previous
transaction and the witness UTXO, and optionally BIP32 derivation records.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from appliance.payloads import _bitcoin
from appliance.payloads.addresses import p2pkh_script, p2sh_p2wpkh_script, p2wpkh_script
from appliance.payloads.ethereum import encode_unsigned
from appliance.payloads.types import taproot_output_key


def p2tr_script(public_key: bytes) -> bytes:
    """BIP86 key-path-only taproot output of ``public_key`` (which we cannot sign for)."""
    from appliance.payloads.psbt import _bip86_output_key

    return b"\x51\x20" + _bip86_output_key(public_key)


def p2tr_bip340_script(xonly_key: bytes, merkle_root: bytes = b"") -> bytes:
    """P2TR output of a ``schnorr-bip340`` key P: ``OP_1 output_key(P, merkle_root)``."""
    return b"\x51\x20" + taproot_output_key(xonly_key, merkle_root)


def _out_script(dest: str | bytes, network: str) -> bytes:
    if isinstance(dest, bytes):
        return dest
    from bitcointx.wallet import CCoinAddress

    with _bitcoin.chain_params(network):
        return bytes(CCoinAddress(dest).to_scriptPubKey())


def sample_psbt(spends: Sequence[tuple[bytes, int] | tuple[bytes, int, str]],
                outputs: Sequence[tuple[str | bytes, int]], *,
                network: str = "regtest", script_type: str = "p2wpkh",
                derivations: Sequence[tuple[bytes, str] | None] | None = None,
                output_derivations: Sequence[tuple[bytes, bytes, str] | None] | None = None,
                non_witness_utxo: bool = True, sighash_type: int | None = None,
                seed: bytes = b"sample", merkle_roots: Sequence[bytes | None] | None = None,
                tap_internal_key: bool = True) -> str:
    """A base64 PSBT spending one output per ``(public_key, amount)`` in ``spends`` to
    ``outputs`` (``(address or scriptPubKey, amount)``). ``script_type`` (or a spend's third
    element): p2wpkh, p2pkh, p2sh-p2wpkh, p2tr (BIP86 of a compressed ECDSA key) or
    p2tr-bip340 (``public_key``: the x-only key P of a ``schnorr-bip340`` key, paid to
    output_key(P, ``merkle_roots[i]`` or b""), with the BIP 371 internal-key field unless
    ``tap_internal_key=False`` and the merkle-root field when a root is given; the full
    previous transaction is then left out). ``derivations[i] = (master
    fingerprint, "m/0/1")`` adds a BIP32 derivation record to input i, and
    ``output_derivations[j] = (public key, master fingerprint, path)`` one to output j (how a
    wallet marks its change)."""
    _bitcoin.ensure_bitcointx()
    from bitcointx.core import (
        CMutableTransaction,
        CMutableTxIn,
        CMutableTxOut,
        COutPoint,
        CTxIn,
        CTxOut,
    )
    from bitcointx.core.key import BIP32Path, CPubKey
    from bitcointx.core.psbt import PartiallySignedTransaction, PSBT_KeyDerivationInfo, PSBT_UnknownTypeData
    from bitcointx.core.script import CScript

    scripts = {"p2wpkh": p2wpkh_script, "p2pkh": p2pkh_script, "p2sh-p2wpkh": p2sh_p2wpkh_script,
               "p2tr": p2tr_script}
    types = [sp[2] if len(sp) > 2 else script_type for sp in spends]
    roots = list(merkle_roots or [None] * len(spends))
    spends = [(sp[0], sp[1]) for sp in spends]
    with _bitcoin.chain_params(network):
        prevs = []
        for n, (pub, amount) in enumerate(spends):
            spk = p2tr_bip340_script(pub, roots[n] or b"") if types[n] == "p2tr-bip340" else scripts[types[n]](pub)
            funding = CMutableTransaction(
                [CMutableTxIn(COutPoint(hashlib.sha256(seed + n.to_bytes(4, "big")).digest(), 0))],
                [CMutableTxOut(1000, CScript(b"\x51")), CMutableTxOut(amount, CScript(spk))],
            ).to_immutable()
            prevs.append(funding)
        tx = CMutableTransaction(
            [CTxIn(COutPoint(p.GetTxid(), 1), nSequence=0xFFFFFFFD) for p in prevs],
            [CTxOut(amount, CScript(_out_script(dest, network))) for dest, amount in outputs],
            nVersion=2,
        ).to_immutable()
        psbt = PartiallySignedTransaction(unsigned_tx=tx)
        for i, (prev, (pub, _)) in enumerate(zip(prevs, spends)):
            inp = psbt.inputs[i]
            if types[i] == "p2sh-p2wpkh":
                inp.redeem_script = CScript(p2wpkh_script(pub))
            if types[i] == "p2tr-bip340":
                if tap_internal_key:
                    inp.unknown_fields.append(PSBT_UnknownTypeData(key_type=0x17, key_data=b"", value=pub))
                if roots[i]:
                    inp.unknown_fields.append(PSBT_UnknownTypeData(key_type=0x18, key_data=b"", value=roots[i]))
                psbt.set_utxo(prev.vout[1], i)
            elif non_witness_utxo or types[i] == "p2pkh":
                psbt.set_utxo(prev, i)
            else:
                psbt.set_utxo(prev.vout[1], i)
            if sighash_type is not None:
                inp.sighash_type = sighash_type
            if derivations and derivations[i] is not None:
                fp, path = derivations[i]
                inp.derivation_map[CPubKey(pub)] = PSBT_KeyDerivationInfo(fp, BIP32Path(path))
        for j, rec in enumerate(output_derivations or ()):
            if rec is not None:
                pub, fp, path = rec
                psbt.outputs[j].derivation_map[CPubKey(pub)] = PSBT_KeyDerivationInfo(fp, BIP32Path(path))
        return psbt.to_base64()


def sample_eth_tx(*, chain_id: int = 1, nonce: int = 0, to: str | None, value: int = 0,
                  data: bytes = b"", gas: int = 21000, max_fee_per_gas: int = 30 * 10**9,
                  max_priority_fee_per_gas: int = 10**9, gas_price: int | None = None,
                  tx_type: int = 2, access_list: Sequence[Any] = ()) -> str:
    """Hex of an unsigned transaction: type 2 (EIP-1559) by default, ``tx_type=0`` for an
    EIP-155 legacy one (``gas_price``), 1 for EIP-2930."""
    to_bytes = bytes.fromhex(to[2:]) if to else b""
    common = {"chainId": chain_id, "nonce": nonce, "gas": gas, "to": to_bytes, "value": value,
              "data": data}
    if tx_type == 2:
        fields = dict(common, maxFeePerGas=max_fee_per_gas,
                      maxPriorityFeePerGas=max_priority_fee_per_gas, accessList=list(access_list))
    elif tx_type == 1:
        fields = dict(common, gasPrice=gas_price or max_fee_per_gas, accessList=list(access_list))
    elif tx_type == 0:
        fields = dict(common, gasPrice=gas_price or max_fee_per_gas)
    else:
        raise ValueError("tx_type is 0, 1 or 2")
    return encode_unsigned(tx_type, fields).hex()


def erc20_transfer_data(to: str, amount: int) -> bytes:
    from eth_abi import encode

    return bytes.fromhex("a9059cbb") + encode(["address", "uint256"], [to, amount])


def erc20_approve_data(spender: str, amount: int) -> bytes:
    from eth_abi import encode

    return bytes.fromhex("095ea7b3") + encode(["address", "uint256"], [spender, amount])


def sample_permit(*, chain_id: int, token: str, owner: str, spender: str, value: int,
                  nonce: int = 0, deadline: int = 2**40, name: str = "Token") -> dict:
    """EIP-2612 Permit typed data (eth_signTypedData_v4 JSON)."""
    return {
        "types": {
            "EIP712Domain": [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                             {"name": "chainId", "type": "uint256"},
                             {"name": "verifyingContract", "type": "address"}],
            "Permit": [{"name": "owner", "type": "address"}, {"name": "spender", "type": "address"},
                       {"name": "value", "type": "uint256"}, {"name": "nonce", "type": "uint256"},
                       {"name": "deadline", "type": "uint256"}],
        },
        "primaryType": "Permit",
        "domain": {"name": name, "version": "1", "chainId": chain_id, "verifyingContract": token},
        "message": {"owner": owner, "spender": spender, "value": value, "nonce": nonce,
                    "deadline": deadline},
    }


def sample_mail(*, chain_id: int = 1, contract: str = "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC") -> dict:
    """The EIP-712 specification's Mail example."""
    return {
        "types": {
            "EIP712Domain": [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                             {"name": "chainId", "type": "uint256"},
                             {"name": "verifyingContract", "type": "address"}],
            "Person": [{"name": "name", "type": "string"}, {"name": "wallet", "type": "address"}],
            "Mail": [{"name": "from", "type": "Person"}, {"name": "to", "type": "Person"},
                     {"name": "contents", "type": "string"}],
        },
        "primaryType": "Mail",
        "domain": {"name": "Ether Mail", "version": "1", "chainId": chain_id,
                   "verifyingContract": contract},
        "message": {
            "from": {"name": "Cow", "wallet": "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"},
            "to": {"name": "Bob", "wallet": "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"},
            "contents": "Hello, Bob!",
        },
    }


__all__ = [
    "p2tr_bip340_script",
    "erc20_approve_data",
    "erc20_transfer_data",
    "sample_eth_tx",
    "sample_mail",
    "sample_permit",
    "sample_psbt",
]
