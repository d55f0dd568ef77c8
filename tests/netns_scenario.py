"""The separate-hosts scenario, run by tests/cluster/test_netns.py *inside* the client's network
namespace (``ip netns exec <client> python -m tests.netns_scenario CONFIG``), so that every
connection it makes goes to the test hosts' own addresses and never leaves this machine.

Three node processes, each in its own namespace with its own address, joined by a bridge in
a hub namespace; the scenario cuts one node's link in the middle of a signing session, checks
that the request fails cleanly naming that node while the others keep signing, restores the
link and signs with that node again. Each step prints one JSON line; the last is the summary.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

from api.client import ApplianceAPIError
from appliance.testing import LocalCluster
from tests.cluster_fixtures import TEST_ONLY_PRIMES, check_signature, digest_of
from tests.signing_flow import approve_if_needed, sign

ROUND_TIMEOUT = 4.0


def say(**kw) -> None:
    print(json.dumps(kw), flush=True)


def link(cfg: dict, i: int, up: bool) -> None:
    subprocess.run(["ip", "netns", "exec", cfg["hub"], "ip", "link", "set", cfg["hub_ifaces"][i],
                    "up" if up else "down"], check=True, timeout=10)


async def main(cfg: dict) -> dict:
    n = len(cfg["nodes"])
    async with LocalCluster(nodes=n, threshold=2, paillier_bits=2048, prime_file=TEST_ONLY_PRIMES,
                            round_timeout=ROUND_TIMEOUT, job_timeout=60.0, hosts=cfg["addresses"],
                            launchers=[["ip", "netns", "exec", ns] for ns in cfg["nodes"]],
                            faults={2: {"delay_s": 1.5, "delay_protocols": ["presign"]}}) as c:
        say(step="cluster", urls=c.urls)
        admin = c.client("admin", node=0)
        key = await admin.create_key(threshold=2)
        say(step="dkg", public_key=key["public_key"])
        ini, app = c.client("initiator", node=0), c.client("approver", node=0)
        done = await sign(ini, app, key["key_id"], digest_of("netns before"), signers=["node-1", "node-3"])
        check_signature(key["public_key"], digest_of("netns before"), done["signature"])
        say(step="signed across namespaces", signers=done["signers"])

        # cut node-3's link while it is inside presign (its presign messages go out 1.5 s late)
        req = await ini.request_signature(key["key_id"], digest_of("netns cut"), signers=["node-1", "node-3"])
        await approve_if_needed(app, req)
        await asyncio.sleep(1.0)
        status = (await ini.get_sign_request(req["request_id"]))["status"]
        link(cfg, 2, False)
        t0 = time.monotonic()
        try:
            await ini.wait_signature(req["request_id"], timeout=3 * ROUND_TIMEOUT + 20)
            failure = None
        except ApplianceAPIError as exc:
            failure = {"status": exc.status, "code": exc.code, "message": exc.message,
                       "missing_nodes": exc.missing_nodes, "culprits": exc.culprits}
        elapsed = time.monotonic() - t0
        say(step="cut mid-session", status_before_cut=status, failure=failure, elapsed=round(elapsed, 2))

        # the others sign during the partition; node-3 named as a signer is refused
        during = await sign(ini, app, key["key_id"], digest_of("netns during"), signers=["node-1", "node-2"])
        check_signature(key["public_key"], digest_of("netns during"), during["signature"])
        try:
            await ini.request_signature(key["key_id"], digest_of("netns named"), signers=["node-1", "node-3"])
            named = None
        except ApplianceAPIError as exc:
            named = {"status": exc.status, "code": exc.code, "missing_nodes": exc.missing_nodes}
        say(step="during partition", other_quorum_signed=True, named_refused=named)

        # restore the link: node-3 signs again (bounded wait for it to answer)
        link(cfg, 2, True)
        await c.wait_ready(2, timeout=30)
        after = None
        for attempt in range(5):
            try:
                after = await sign(ini, app, key["key_id"], digest_of(f"netns after {attempt}"),
                                   signers=["node-1", "node-3"])
                check_signature(key["public_key"], digest_of(f"netns after {attempt}"), after["signature"])
                break
            except ApplianceAPIError as exc:
                say(step="retry after restore", attempt=attempt, error=str(exc))
                await asyncio.sleep(1.0)
        say(step="restored", signed=after is not None)
        return {"summary": True, "cut_failure": failure, "cut_elapsed": elapsed, "status_before_cut": status,
                "named_refused": named, "signed_after_restore": after is not None,
                "running": [c.running(i) for i in range(n)]}


if __name__ == "__main__":
    cfg = json.loads(Path(sys.argv[1]).read_text())
    out = asyncio.run(main(cfg))
    say(**out)
