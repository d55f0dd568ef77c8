"""Disaster-recovery backup of one node's secret state, encrypted to that node's own recovery key.

Each node has its own recovery key pair, made off the node and held offline by a different
custodian per node, so no single custodian can rebuild a key (each backup holds one share)::

    appliance recovery-key create --out node-1.recovery.pem      # offline; + node-1.recovery.pub.pem
    appliance backup export  --config node.toml --recovery-pub node-1.recovery.pub.pem --out node-1.backup
    appliance backup restore --config node.toml --recovery-key node-1.recovery.pem --in node-1.backup

``export`` unseals the node's current shares with its HSM (in memory only) and encrypts them
to the recovery public key. ``restore`` (node stopped) decrypts with the recovery private key
and seals each share under the keys of the node's token — typically a fresh token made by
``appliance init`` after the old one was lost (update ``cluster.toml`` on every node with the
new ``node-info.json``: the new token has new identity and transport keys).

File format (binary)::

    MAGIC | u32 header length | header (JSON) | ephemeral X25519 public key (32) | nonce (12)
    | AES-256-GCM ciphertext and tag

The AES key is HKDF-SHA256 over the X25519 shared secret (salt: ephemeral || recipient public
key, info ``appliance/backup/v1``). The associated data is everything before the ciphertext, so
the header — node id, cluster id, key ids, epochs, public keys, the recipient's fingerprint — is
authenticated with the shares: one changed byte anywhere and the file is refused. The header is
public; the ciphertext reveals nothing without the recovery private key.

Presignatures are never backed up (each is used once; a restored one could be used twice), nor
are prime pools. A restored share is of the epoch it was exported at: after a refresh or a
reshare that share no longer takes part (the other nodes refuse its epoch) — back up again after
each key change, or bring the node back by a reshare to it.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import time
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from appliance.config import load_node_config
from appliance.errors import ApplianceError
from appliance.storage import NodeStore
from appliance.sealed import SealContext
from appliance.tss.keyshare import KeyShare
from hsm import HSM

MAGIC = b"APPLIANCE-BACKUP\n"
FORMAT = "appliance-backup"
VERSION = 1
INFO = b"appliance/backup/v1"
MAX_HEADER = 1 << 20


class BackupError(ApplianceError):
    code = "bad_backup"


# -- recovery keys ----------------------------------------------------------------------


def create_recovery_key(out: Path, *, passphrase: bytes | None = None) -> Path:
    """Write a new X25519 recovery private key (PEM, PKCS#8, mode 0600; encrypted with
    ``passphrase`` if given) at ``out`` and its public key next to it (``*.pub.pem``)."""
    out = Path(out)
    if out.exists():
        raise BackupError(f"{out} exists; refusing to overwrite a recovery key")
    key = X25519PrivateKey.generate()
    enc = (serialization.BestAvailableEncryption(passphrase) if passphrase
           else serialization.NoEncryption())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub = out.with_name(out.name.removesuffix(".pem") + ".pub.pem")
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return pub


def load_recovery_public(pem: bytes) -> X25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise BackupError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, X25519PublicKey):
        raise BackupError("the recovery public key must be X25519")
    return key


def load_recovery_private(pem: bytes, passphrase: bytes | None = None) -> X25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=passphrase)
    except (ValueError, TypeError) as exc:
        raise BackupError(f"cannot read the recovery private key: {exc}") from None
    if not isinstance(key, X25519PrivateKey):
        raise BackupError("the recovery private key must be X25519")
    return key


def _raw(pub: X25519PublicKey) -> bytes:
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def recipient_fingerprint(pub: X25519PublicKey) -> str:
    return hashlib.sha256(b"appliance/recovery-key/" + _raw(pub)).hexdigest()


def _aes_key(shared: bytes, eph: bytes, recipient: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=eph + recipient, info=INFO).derive(shared)


# -- sealing a backup -------------------------------------------------------------------


def seal(header: dict, plaintext: bytes, recipient: X25519PublicKey) -> bytes:
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    eph_key = X25519PrivateKey.generate()
    eph = _raw(eph_key.public_key())
    key = _aes_key(eph_key.exchange(recipient), eph, _raw(recipient))
    nonce = os.urandom(12)
    aad = MAGIC + struct.pack(">I", len(head)) + head + eph + nonce
    return aad + AESGCM(key).encrypt(nonce, plaintext, aad)


def read_header(data: bytes) -> dict:
    """The public header of a backup file (not authenticated until :func:`open_backup`)."""
    return _split(data)[0]


def _split(data: bytes) -> tuple[dict, bytes, bytes, bytes, bytes]:
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
        raise BackupError("not an appliance backup file")
    (n,) = struct.unpack(">I", data[len(MAGIC):len(MAGIC) + 4])
    off = len(MAGIC) + 4
    if n > MAX_HEADER or len(data) < off + n + 32 + 12 + 16:
        raise BackupError("the backup file is truncated or corrupt")
    try:
        header = json.loads(data[off:off + n])
    except ValueError:
        raise BackupError("the backup header is corrupt") from None
    if not isinstance(header, dict):
        raise BackupError("the backup header is corrupt")
    eph = data[off + n:off + n + 32]
    nonce = data[off + n + 32:off + n + 44]
    return header, eph, nonce, data[:off + n + 44], data[off + n + 44:]


def open_backup(data: bytes, key: X25519PrivateKey) -> tuple[dict, bytes]:
    """(header, plaintext), or BackupError if the file was changed or is for another key."""
    header, eph, nonce, aad, ct = _split(data)
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise BackupError(f"not an {FORMAT} v{VERSION} file")
    if header.get("recipient") != recipient_fingerprint(key.public_key()):
        raise BackupError("this backup is encrypted to another recovery key (or its header was changed)")
    try:
        shared = key.exchange(X25519PublicKey.from_public_bytes(eph))
        plaintext = AESGCM(_aes_key(shared, eph, _raw(key.public_key()))).decrypt(nonce, ct, aad)
    except (InvalidTag, ValueError):
        raise BackupError("the backup does not authenticate: it was changed (or is corrupt); refused") from None
    return header, plaintext


# -- export and restore -----------------------------------------------------------------


def export_backup(config_path: str | Path, recovery_pub_pem: bytes, out: str | Path) -> dict:
    """Encrypt this node's current shares to its recovery public key; returns the header."""
    cfg = load_node_config(config_path)
    recipient = load_recovery_public(recovery_pub_pem)
    if not Path(cfg.db).exists():
        raise BackupError(f"{cfg.db} does not exist: nothing to back up")
    store = NodeStore(cfg.db)
    hsm = HSM.open(cfg.hsm_config(), node_id=cfg.node_id, create_keys=False)
    keys: list[dict[str, Any]] = []
    try:
        for row in store.list_keys("active"):
            blob = store.share_blob(row["key_id"], row["epoch"])
            data = hsm.unseal(SealContext("share", key_id=row["key_id"], epoch=row["epoch"]), blob)
            share = KeyShare.from_bytes(data)  # checks it against its public share
            if share.index != cfg.me.index or share.public_key != row["public_key"] or share.epoch != row["epoch"]:
                raise BackupError(f"key {row['key_id']}: the sealed share does not match its record")
            keys.append({"key_id": row["key_id"], "epoch": row["epoch"], "share": data.hex()})
            del data
    finally:
        hsm.close()
        store.close()
    header = {
        "format": FORMAT, "version": VERSION, "node_id": cfg.node_id, "node_index": cfg.me.index,
        "cluster_id": cfg.cluster.id, "created": int(time.time()),
        "recipient": recipient_fingerprint(recipient),
        "keys": [{"key_id": k["key_id"], "epoch": k["epoch"]} for k in keys],
    }
    blob = seal(header, json.dumps({"keys": keys}, separators=(",", ":")).encode(), recipient)
    keys.clear()
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(out)
    return header


def _node_running(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host if host not in ("", "0.0.0.0") else "127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def restore_backup(config_path: str | Path, recovery_key_pem: bytes, in_path: str | Path, *,
                   passphrase: bytes | None = None) -> dict:
    """Decrypt a backup with the recovery private key and seal its shares under this node's
    token (node stopped). Refuses a changed file, another node's backup, and keys this node
    already holds. Returns a summary."""
    cfg = load_node_config(config_path)
    key = load_recovery_private(recovery_key_pem, passphrase)
    header, plaintext = open_backup(Path(in_path).read_bytes(), key)
    if header.get("node_id") != cfg.node_id or header.get("node_index") != cfg.me.index:
        raise BackupError(f"this backup is of node {header.get('node_id')!r}, not {cfg.node_id!r}")
    if header.get("cluster_id") != cfg.cluster.id:
        raise BackupError(f"this backup is of cluster {header.get('cluster_id')!r}, not {cfg.cluster.id!r}")
    if _node_running(cfg.listen_host, cfg.listen_port):
        raise BackupError(f"something answers on {cfg.listen_host}:{cfg.listen_port}: stop the node first")
    body = json.loads(plaintext)
    del plaintext
    shares = []
    for k in body["keys"]:
        share = KeyShare.from_bytes(bytes.fromhex(k.pop("share")))
        if share.index != cfg.me.index or share.epoch != k["epoch"]:
            raise BackupError(f"key {k['key_id']}: the share is not this node's at that epoch")
        shares.append((k["key_id"], share))
    if [{"key_id": kid, "epoch": s.epoch} for kid, s in shares] != header.get("keys"):
        raise BackupError("the backup's contents do not match its header")
    store = NodeStore(cfg.db)
    hsm = HSM.open(cfg.hsm_config(), node_id=cfg.node_id, create_keys=False)
    restored, skipped = [], []
    try:
        for key_id, share in shares:
            row = store.get_key(key_id)
            if row is not None and row["status"] in ("pending", "abandoned"):
                store.abandon_key(key_id)
                row = store.get_key(key_id)
            if row is not None:
                skipped.append({"key_id": key_id, "reason": f"already held here ({row['status']}, epoch {row['epoch']})"})
                continue
            blob = hsm.seal(SealContext("share", key_id=key_id, epoch=share.epoch), share.to_bytes())
            store.put_pending_key(key_id, share.public_key, share.threshold, share.participants, share.epoch,
                                  share.paillier_bits, blob, share.chain_code)
            store.set_key_status(key_id, "active")
            restored.append({"key_id": key_id, "epoch": share.epoch, "public_key": share.public_key.hex()})
    finally:
        hsm.close()
        store.close()
        shares.clear()
    return {"node_id": cfg.node_id, "restored": restored, "skipped": skipped,
            "backup_created": header.get("created")}
