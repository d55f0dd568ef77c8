"""``appliance demo``: a local cluster (real node processes, a SoftHSM2 token each, HTTPS on
loopback), prime pools filled, a key made, a digest signed after approval and verified by
libsecp256k1 and OpenSSL; the progress on stderr, a JSON summary last on stdout with ``--json``
(the DESIGN.md contract)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from appliance.cli_progress import progress_on_stderr


async def run_demo(args) -> int:
    import time

    from appliance.testing import LocalCluster
    from appliance.tss.ecdsa import Signature, verify_with_libsecp256k1, verify_with_openssl

    out = sys.stdout
    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print  # noqa: E731
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    keep = Path(args.keep).resolve() if args.keep else None
    say(f"appliance demo: {args.threshold}-of-{args.nodes}, Paillier {args.paillier_bits} bits")
    async with LocalCluster(nodes=args.nodes, threshold=args.threshold, paillier_bits=args.paillier_bits,
                            base_dir=keep, keep=keep is not None, presign_pool=0) as cluster:
        timings["start_nodes"] = (time.perf_counter() - t0) * 1000
        for i, url in enumerate(cluster.urls):
            say(f"  node {cluster.node_ids[i]}: {url}  (SoftHSM2 token in {cluster.data_dirs[i] / 'hsm'})")
        admin = cluster.client("admin")
        initiator = cluster.client("initiator")
        approver = cluster.client("approver")
        try:
            t = time.perf_counter()
            # progress on stderr: a bar on a terminal, plain lines otherwise (stdout keeps --json)
            print("  filling each node's prime pool (safe primes for Paillier and ring-Pedersen)",
                  file=sys.stderr)
            with progress_on_stderr("    ") as show:
                await cluster.wait_primes(on_progress=show)
            timings["prime_pool"] = (time.perf_counter() - t) * 1000
            t = time.perf_counter()
            print("  key generation (DKG, then aux-info)", file=sys.stderr)
            with progress_on_stderr("    ") as show:
                key = await admin.create_key(args.threshold, on_progress=show)
            timings["keygen"] = (time.perf_counter() - t) * 1000
            say(f"  DKG done: key {key['key_id']}, public key {key['public_key']}")
            message = b"threshold-appliance demo"
            digest = hashlib.sha256(message).digest()
            t = time.perf_counter()
            req = await initiator.request_signature(key["key_id"], digest)
            # the default policy: the initiator's request waits for one approver
            await approver.approve(req["request_id"])
            say(f"  request {req['request_id']} by initiator, approved by approver")
            done = await initiator.wait_signature(req["request_id"], timeout=300)
            timings["sign"] = (time.perf_counter() - t) * 1000
            sigd = done["signature"]
            say(f"  signed by {', '.join(done['signers'])}: r={sigd['r']} s={sigd['s']}")
            pk = bytes.fromhex(key["public_key"])
            sig = Signature.from_der(bytes.fromhex(sigd["der"]))
            ok_secp = verify_with_libsecp256k1(pk, digest, sig)
            ok_ossl = verify_with_openssl(pk, digest, sig)
            say(f"  verified independently: libsecp256k1 (coincurve) {'OK' if ok_secp else 'FAILED'}, "
                f"OpenSSL (cryptography) {'OK' if ok_ossl else 'FAILED'}")
        finally:
            await admin.close()
            await initiator.close()
        t = time.perf_counter()
    timings["stop_nodes"] = (time.perf_counter() - t) * 1000
    timings["total"] = (time.perf_counter() - t0) * 1000
    ok = ok_secp and ok_ossl and sig.is_low_s
    say(f"  total {timings['total'] / 1000:.1f} s; nodes stopped" + (f"; state kept in {keep}" if keep else ""))
    if args.json:
        summary = {
            "public_key": key["public_key"], "key_id": key["key_id"], "digest": digest.hex(),
            "message": message.decode(),
            "signature": {k: sigd[k] for k in ("der", "r", "s", "recovery_id")},
            "signers": done["signers"], "nodes": args.nodes, "threshold": args.threshold,
            "paillier_bits": args.paillier_bits,
            "verified": {"libsecp256k1": ok_secp, "openssl": ok_ossl},
            "timings_ms": {k: round(v, 1) for k, v in timings.items()},
        }
        out.write(json.dumps(summary) + "\n")
        out.flush()
    return 0 if ok else 1
