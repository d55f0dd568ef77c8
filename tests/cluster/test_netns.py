"""Separate hosts: each node in its own network namespace with its own address (``ip netns``,
veth pairs into a bridge in a hub namespace), the client in a namespace of its own. One node's
link is cut in the middle of a signing session (the request fails cleanly, naming the missing
node; the others keep signing) and restored (signing with that node works again).

Only addresses of these test hosts are used (10.213.77.0/24, inside namespaces this test makes
and deletes); nothing is routed off the machine, and the root namespace gets no address. Where
namespaces are not allowed (not root, no ``ip``, a sandbox without CAP_SYS_ADMIN), the test
skips and says why.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.xdist_group("netns"), pytest.mark.hsm]

ROOT = Path(__file__).resolve().parents[2]
SUBNET = "10.213.77"


def _ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = (["ip", "netns", "exec", ns, "ip"] if ns else ["ip"]) + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=check)


def _namespaces_allowed() -> str | None:
    """None if this machine lets us make network namespaces, else why not."""
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_SYS_ADMIN)"
    probe = f"aplprobe{secrets.token_hex(3)}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        return f"ip netns add is not allowed here: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=20)
    return None


@pytest.fixture
def topology():
    why = _namespaces_allowed()
    if why:
        print(f"\nSKIP separate-hosts test: {why}")
        pytest.skip(why)
    tag = secrets.token_hex(3)
    hub, client = f"apl{tag}h", f"apl{tag}c"
    nodes = [f"apl{tag}n{i + 1}" for i in range(3)]
    made: list[str] = []
    try:
        for ns in [hub, client] + nodes:
            subprocess.run(["ip", "netns", "add", ns], check=True, timeout=20, capture_output=True)
            made.append(ns)
            _ip("link", "set", "lo", "up", ns=ns)
        _ip("link", "add", "br0", "type", "bridge", ns=hub)
        _ip("link", "set", "br0", "up", ns=hub)
        hub_ifaces = []
        for k, (ns, host) in enumerate([(client, 1)] + [(n, 11 + i) for i, n in enumerate(nodes)]):
            a, b = f"v{tag}{k}a", f"v{tag}{k}b"
            _ip("link", "add", a, "type", "veth", "peer", "name", b)
            _ip("link", "set", a, "netns", ns)
            _ip("link", "set", b, "netns", hub)
            _ip("link", "set", b, "master", "br0", ns=hub)
            _ip("link", "set", b, "up", ns=hub)
            _ip("addr", "add", f"{SUBNET}.{host}/24", "dev", a, ns=ns)
            _ip("link", "set", a, "up", ns=ns)
            if k:
                hub_ifaces.append(b)
        yield {"hub": hub, "client": client, "nodes": nodes, "hub_ifaces": hub_ifaces,
               "addresses": [f"{SUBNET}.{11 + i}" for i in range(3)]}
    finally:
        for ns in made:
            # anything still running in a namespace goes with it
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=20).stdout
            for pid in pids.split():
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


def test_nodes_in_their_own_namespaces_link_cut_and_restored(topology, tmp_path):
    cfg = tmp_path / "netns.json"
    cfg.write_text(json.dumps(topology))
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(["ip", "netns", "exec", topology["client"], sys.executable, "-m", "tests.netns_scenario",
                           str(cfg)], cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=300)
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    print("\n" + "\n".join(json.dumps(x) for x in lines))
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = lines[-1]
    assert summary.get("summary") is True
    assert summary["status_before_cut"] == "signing"
    fail = summary["cut_failure"]
    assert fail is not None, "the request survived a cut link"
    assert "node-3" in (fail["missing_nodes"] or []) + [fail["message"]]
    assert fail["status"] == 503 and summary["cut_elapsed"] < 2 * 4.0 + 10
    assert summary["named_refused"] and summary["named_refused"]["status"] == 503
    assert "node-3" in summary["named_refused"]["missing_nodes"]
    assert summary["signed_after_restore"]
    assert all(summary["running"])
