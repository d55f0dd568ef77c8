"""FROST (issue 16) in memory: every party in this process, messages through their signed byte
encoding and every check (``appliance.tss.frost.simulate``), wall time on this machine.

    python -m bench.frost_bench [--quick]        # or run(quick) -> list[dict]

For each scheme (``bip340`` = schnorr-bip340, the Taproot ciphersuite; ``ed25519``):

- ``frost_{s}_keygen_{t}of{n}_ms``: the whole DKG (2 rounds + echo), median;
- ``frost_{s}_nonce_ms``: one signer's round one made ahead of time (``sign.new_nonces``: two
  nonces and their commitments), the unit a nonce pool refills by (no sealing: that is the
  HSM's cost, measured with the node), median;
- ``frost_{s}_sign_{t}of{n}_p50_ms``: a signature by t signers, both rounds with fresh nonces,
  every share checked, the aggregate verified, p50;
- ``frost_{s}_refresh_{t}of{n}_ms``, ``frost_{s}_reshare_{t}of{n}_ms`` (onto the same committee
  and threshold), median.

Each figure carries ``runs``, ``min`` and ``max``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable

from appliance.tss.frost import simulate
from appliance.tss.frost.sign import new_nonces
from appliance.tss.group import SystemRNG

SCHEMES = {"bip340": "schnorr-bip340", "ed25519": "ed25519"}
SIZES = ((3, 2), (5, 3))


def _timed(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _fig(name: str, times: list[float], detail: str) -> dict:
    return {"name": name, "value": round(statistics.median(times), 3), "unit": "ms", "runs": len(times),
            "min": round(min(times), 3), "max": round(max(times), 3), "detail": detail}


def _committee(short: str, scheme: str, n: int, t: int, reps: int, with_nonce: bool) -> list[dict]:
    size = f"{t}of{n}"
    out = [_fig(f"frost_{short}_keygen_{size}_ms", _timed(lambda: simulate.keygen(n, t, scheme), reps),
                f"in memory, {n} parties")]
    shares = simulate.keygen(n, t, scheme)
    if with_nonce:
        rng = SystemRNG()
        out.append(_fig(f"frost_{short}_nonce_ms", _timed(lambda: new_nonces(shares[0], rng), reps * 10),
                        "one signer's round one (d, e, D, E), unsealed"))
    out.append(_fig(f"frost_{short}_sign_{size}_p50_ms", _timed(lambda: simulate.sign(shares, b"bench"), reps * 2),
                    f"in memory, {t} signers, fresh nonces, shares checked, aggregate verified"))
    out.append(_fig(f"frost_{short}_refresh_{size}_ms", _timed(lambda: simulate.refresh(shares), reps),
                    f"in memory, {n} parties"))
    out.append(_fig(f"frost_{short}_reshare_{size}_ms",
                    _timed(lambda: simulate.reshare(shares[:t], list(range(n)), t), reps),
                    f"in memory, {t} senders onto the same {n} members"))
    return out


def run(quick: bool = False) -> list[dict]:
    reps = 5 if quick else 20
    return [f for short, scheme in SCHEMES.items() for n, t in SIZES
            for f in _committee(short, scheme, n, t, reps, with_nonce=(n, t) == SIZES[0])]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    print(json.dumps(run(ap.parse_args().quick), indent=1))


if __name__ == "__main__":
    main()
