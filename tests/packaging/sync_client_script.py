"""Run by the python of a fresh venv holding only the light client distribution (``python -I``:
no repo on sys.path): the node's packages and heavy dependencies are not importable, and the
sync client creates a key, requests a signature, approves it, waits for it, and the signature
verifies with cryptography. Prints one JSON line. Argument: a JSON file with ``url``,
``server_cert`` and ``keys`` (user -> private key PEM file)."""

import hashlib
import importlib.util
import json
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

import appliance_client
from appliance_client import ApplianceAPIError, SyncApplianceClient

cfg = json.load(open(sys.argv[1]))
absent = {m: importlib.util.find_spec(m) is None for m in ("gmpy2", "pkcs11", "coincurve", "msgspec",
                                                           "appliance", "api", "hsm")}
c = {u: SyncApplianceClient(cfg["url"], u, cfg["keys"][u], server_cert=cfg["server_cert"], timeout=60)
     for u in ("admin", "initiator", "approver")}
key = c["admin"].create_key(threshold=2)
digest = hashlib.sha256(b"signed by the light client").digest()
req = c["initiator"].request_signature(key["key_id"], digest)
c["approver"].approve(req["request_id"])
done = c["initiator"].wait_signature(req["request_id"], timeout=60)
pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), bytes.fromhex(key["public_key"]))
pub.verify(bytes.fromhex(done["signature"]["der"]), digest, ec.ECDSA(Prehashed(hashes.SHA256())))
# one sync client as another's approver (the library's one loop serves both)
digest2 = hashlib.sha256(b"approved by a sync approver").digest()
again = c["initiator"].sign(key["key_id"], digest2, approver=c["approver"], timeout=60)
pub.verify(bytes.fromhex(again["signature"]["der"]), digest2, ec.ECDSA(Prehashed(hashes.SHA256())))
listed = [k["key_id"] for k in c["initiator"].iter_keys(page_size=1)]
try:
    c["initiator"].get_key("key_" + "0" * 24)
    error = None
except ApplianceAPIError as exc:
    error = [exc.status, exc.code, exc.message]
for client in c.values():
    client.close()
print(json.dumps({"client_file": appliance_client.__file__, "absent": absent, "status": done["status"],
                  "key_listed": key["key_id"] in listed, "unknown_key": error}))
