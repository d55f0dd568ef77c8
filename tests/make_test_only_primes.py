"""Regenerate tests/data/test-only-primes.json (test-only: never read outside test configuration)."""

import json
import sys
from pathlib import Path

from appliance.tss.group import SeededRNG
from appliance.tss.primes import random_blum_prime, random_safe_prime

COUNTS = {1024: 48, 1536: 24}

if __name__ == "__main__":
    rng = SeededRNG(b"test-only-primes")
    out = {"warning": "TEST ONLY: these primes are public; never use them outside tests",
           "safe": {}, "blum": {}}
    for bits, n in COUNTS.items():
        out["safe"][str(bits)] = [format(random_safe_prime(bits, rng), "x") for _ in range(n)]
        out["blum"][str(bits)] = [format(random_blum_prime(bits, rng), "x") for _ in range(n)]
        print(bits, "done", file=sys.stderr)
    Path(__file__).with_name("data").joinpath("test-only-primes.json").write_text(json.dumps(out, indent=1))
