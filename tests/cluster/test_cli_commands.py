"""The `appliance` command against one real 2-of-3 cluster (issue 15, item 3): each command of
the client routes once, and every kind of failure as one exact line on stderr with its exit
code (usage 2, refused 3, not found 4, unreachable 6, the node's certificate rejected 3,
verification failed 7, a non-client command's failure), `--json` printing the error body.

The command runs in this process (appliance.cli.main in a thread, its output captured), and
once as a subprocess to show the whole program prints no traceback."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from appliance import payloads as P
from appliance.cli import main
from appliance.payloads import samples
from tests.cluster_fixtures import cluster_fixture, cluster_marks, digest_of, two_input_psbt

pytestmark = cluster_marks("cli-commands")

ROOT = Path(__file__).resolve().parents[2]
DEST = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"  # BIP173 regtest example
ETH_TO = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
SPENDER = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
TOKEN = "0xdAC17F958D2ee523a2206206994597C13D831ec7"
ETHER = 10**18

cluster = cluster_fixture(policy={"signing": {"transactions": {
    "network": "regtest", "allowed_destinations": [DEST, ETH_TO, SPENDER], "allowed_chain_ids": [1],
    "max_fee": {"BTC": "5000", "ETH": str(10**16)},
    "limits": {"BTC": {"per_transaction": "150000"}, "ETH": {"per_transaction": str(ETHER)}}}}})
STATE: dict = {}


@pytest.fixture(autouse=True)
def _no_client_env(monkeypatch):
    for name in ("APPLIANCE_URL", "APPLIANCE_USER", "APPLIANCE_KEY", "APPLIANCE_SERVER_CERT", "APPLIANCE_CA_FILE"):
        monkeypatch.delenv(name, raising=False)


async def cli(capsys, *argv) -> tuple[int, str, str]:
    """``appliance ARGV`` in this process: (exit code, stdout, stderr). The command's umask
    (077) is put back after it."""
    umask = os.umask(0o077)
    os.umask(umask)
    capsys.readouterr()
    try:
        code = await asyncio.to_thread(main, [str(a) for a in argv])
    finally:
        os.umask(umask)
    out = capsys.readouterr()
    return code, out.out, out.err


def conn(cluster, user: str, node: int = 0, cert_of: int | None = None) -> list[str]:
    cert = cluster.data_dirs[node if cert_of is None else cert_of] / "tls" / "node.crt"
    return ["--url", cluster.urls[node], "--user", user, "--key", str(cluster.base_dir / "users" / f"{user}.pem"),
            "--server-cert", str(cert)]


async def _key(cluster) -> dict:
    if "key" not in STATE:
        key = await cluster.client("admin").create_key(threshold=2)
        root = await cluster.client("auditor").derive(key["key_id"], "m")
        key["kc"] = P.KeyContext(bytes.fromhex(key["public_key"]), bytes.fromhex(root["chain_code"]))
        STATE["key"] = key
    return STATE["key"]




async def test_errors_are_one_line_with_their_exit_codes(cluster, capsys, tmp_path):
    key = await _key(cluster)
    kid = key["key_id"]
    # usage (2): argparse's own, and a command line that does not say enough
    with pytest.raises(SystemExit) as e:
        await cli(capsys, "requests", "list", "--status", "bogus")
    assert e.value.code == 2
    assert await cli(capsys, "sign", "--key-id", kid, "--digest", "00" * 32) == (
        2, "", "error: usage: --url (or APPLIANCE_URL) is required\n")
    assert await cli(capsys, "sign", *conn(cluster, "initiator"), "--key-id", kid, "--digest", "zz") == (
        2, "", "error: bad_input: non-hexadecimal number found in fromhex() arg at position 0\n")
    # refused (3): the initiator approving their own request; --json: the error body on stdout
    code, out, err = await cli(capsys, "sign", *conn(cluster, "initiator"), "--key-id", kid,
                               "--digest", digest_of("cli: refused").hex(), "--no-wait", "--field", "request_id")
    assert code == 0, err
    rid = out.strip()
    code, out, err = await cli(capsys, "approve", *conn(cluster, "initiator"), rid, "--json")
    message = "the initiator cannot approve or reject their own request"
    assert (code, err) == (3, f"error: self_approval: {message}\n")
    assert out == json.dumps({"error": {"code": "self_approval", "message": message}}, sort_keys=True) + "\n"
    # not found (4)
    missing = "sr_" + "0" * (len(rid) - 3) if rid.startswith("sr_") else rid[:-4] + "0000"
    code, out, err = await cli(capsys, "requests", "show", *conn(cluster, "auditor"), missing)
    assert (code, out, err) == (4, "", "error: not_found: unknown sign request\n")
    # unreachable (6): a closed port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    closed = ["--url", f"https://127.0.0.1:{port}", *conn(cluster, "auditor")[2:]]
    assert await cli(capsys, "key", "list", *closed) == (
        6, "", f"error: node_unreachable: https://127.0.0.1:{port}: ClientConnectorError\n")
    # the node's certificate is not the pinned one (node-2's pinned, node-1 asked): 3
    code, out, err = await cli(capsys, "key", "list", *conn(cluster, "auditor", cert_of=1))
    assert (code, out, err) == (3, "", f"error: server_certificate_rejected: {cluster.urls[0]}: the node's TLS "
                                "certificate was rejected (self-signed certificate): not the pinned certificate, "
                                "or not from the trusted CA\n")
    # verification failed (7)
    pk = key["public_key"]
    code, out, err = await cli(capsys, "verify", "--public-key", pk, "--digest", "11" * 32,
                               "--signature", "3006020101020101")
    assert (code, json.loads(out)["valid"]) == (7, False)
    assert err == f"error: verification_failed: the signature does not verify for {pk} over digest {'11' * 32}\n"
    # non-client commands: a missing input file (2), bad hex in a key to import (2)
    absent = tmp_path / "absent.pub.pem"
    assert await cli(capsys, "backup", "export", "--config", cluster.data_dirs[0] / "node.toml",
                     "--recovery-pub", absent, "--out", tmp_path / "b.backup", "--json") == (
        2, '{"error": {"code": "file_not_found", "message": "' + str(absent) + ': No such file or directory"}}\n',
        f"error: file_not_found: {absent}: No such file or directory\n")
    (tmp_path / "key.hex").write_text("not hex\n")
    env = {k: v for k, v in os.environ.items() if k != "SOFTHSM2_CONF"} | {"PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "appliance.cli", "key", "import", "--private-key",
                        str(tmp_path / "key.hex"), "--cluster", str(cluster.data_dirs[0] / "cluster.toml"),
                        "--threshold", "2", "--out", str(tmp_path / "bundle.json")],
                       capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert (p.returncode, p.stdout) == (2, "") and len(p.stderr.splitlines()) == 1, p.stderr
    assert p.stderr.startswith("error: bad_import_bundle: ") and "Traceback" not in p.stderr, p.stderr


async def test_every_client_route_has_a_command(cluster, capsys, tmp_path):
    key = await _key(cluster)
    kid = key["key_id"]
    ini, app, aud, adm = (conn(cluster, u) for u in ("initiator", "approver", "auditor", "admin"))
    # the open routes need no user
    code, out, _ = await cli(capsys, "health", "--url", cluster.urls[0], "--server-cert",
                             cluster.data_dirs[0] / "tls" / "node.crt", "--json")
    assert code == 0 and json.loads(out)["status"] == "ok" and "\n" not in out.strip()
    code, out, _ = await cli(capsys, "ready", *aud, "--field", "ready")
    assert (code, out) == (0, "true\n")
    # derive, address
    code, out, _ = await cli(capsys, "key", "derive", *aud, kid, "m/0/1", "--json")
    assert code == 0 and json.loads(out) == await cluster.client("auditor").derive(kid, "m/0/1")
    code, out, _ = await cli(capsys, "key", "address", *aud, kid, "--kind", "eth", "--field", "address")
    eth = out.strip()
    assert code == 0 and eth == (await cluster.client("auditor").address(kid, "eth"))["address"]
    # sign a PSBT, an Ethereum transaction and EIP-712 typed data (requests only)
    files = {"psbt": tmp_path / "t.psbt", "eth-tx": tmp_path / "t.hex", "eip712": tmp_path / "t.json"}
    files["psbt"].write_text(two_input_psbt(key["kc"], DEST) + "\n")
    files["eth-tx"].write_text("0x" + samples.sample_eth_tx(chain_id=1, to=ETH_TO, value=ETHER // 4,
                                                            gas=21_000) + "\n")
    files["eip712"].write_text(json.dumps(samples.sample_permit(chain_id=1, token=TOKEN, owner=eth,
                                                                spender=SPENDER, value=5)))
    ids = {}
    for flag, path in files.items():
        code, out, err = await cli(capsys, "sign", *ini, "--key-id", kid, f"--{flag}", path, "--no-wait", "--json",
                                   *(["--network", "regtest"] if flag == "psbt" else []))
        assert code == 0, err
        req = json.loads(out)
        assert (req["status"], req["payload_type"]) == ("pending", flag.replace("-", "_")), req
        ids[flag] = req["request_id"]
    # requests list (filters, a table), show, cancel; reject
    code, out, _ = await cli(capsys, "requests", "list", *aud, "--status", "pending", "--key-id", kid, "--all",
                             "--json")
    listed = [r["request_id"] for r in json.loads(out)["sign_requests"]]
    assert code == 0 and listed[:3] == [ids["eip712"], ids["eth-tx"], ids["psbt"]], listed
    code, out, _ = await cli(capsys, "requests", "list", *aud, "--limit", "2")
    rows = out.splitlines()
    assert code == 0 and rows[0].split() == ["request_id", "status", "key_id", "initiator", "created",
                                            "payload_type"]
    assert rows[1].split()[:2] == [ids["eip712"], "pending"] and rows[-1].startswith("more: --cursor ")
    code, out, _ = await cli(capsys, "requests", "show", *app, ids["eth-tx"], "--field", "decoded.facts.chain_id")
    assert (code, out) == (0, "1\n")
    code, out, _ = await cli(capsys, "requests", "cancel", *ini, ids["psbt"], "--field", "status")
    assert (code, out) == (0, "cancelled\n")
    code, out, _ = await cli(capsys, "reject", *app, ids["eip712"], "--reason", "not today", "--field", "status")
    assert (code, out) == (0, "rejected\n")
    code, out, _ = await cli(capsys, "requests", "show", *ini, ids["eip712"], "--field", "error.message")
    assert (code, out) == (0, "approver rejected the request: not today\n")  # the signed reason
    code, out, _ = await cli(capsys, "approve", *app, ids["eth-tx"], "--field", "status")
    assert code == 0
    code, out, err = await cli(capsys, "signature", *ini, ids["eth-tx"], "--field", "result.tx_hash")
    assert code == 0 and len(bytes.fromhex(out.strip().removeprefix("0x"))) == 32, err
    # quarantine: none; clearing a node that is not quarantined
    assert await cli(capsys, "quarantine", "list", *aud) == (0, "(none)\n", "")
    assert await cli(capsys, "quarantine", "clear", *adm, "node-2", "--json") == (
        4, '{"error": {"code": "not_found", "message": "unknown quarantined node"}}\n',
        "error: not_found: unknown quarantined node\n")
    # key refresh (waits): a new epoch, the same public key
    code, out, err = await cli(capsys, "key", "refresh", *adm, kid, "--json")
    op = json.loads(out)
    assert code == 0 and op["status"] == "done", err
    # policy show, update (the admin signs; the version above the current one)
    code, out, _ = await cli(capsys, "policy", "show", *aud, "--json")
    shown = json.loads(out)
    new = dict(shown["policy"])
    new["policy"] = dict(new["policy"], version=shown["version"] + 1)
    (tmp_path / "policy.json").write_text(json.dumps(new))
    code, out, err = await cli(capsys, "policy", "update", *adm, tmp_path / "policy.json",
                               "--sign", f"admin:{cluster.base_dir / 'users' / 'admin.pem'}", "--json")
    assert code == 0 and json.loads(out)["applied"] is True, err
    code, out, _ = await cli(capsys, "policy", "show", *aud, "--field", "version")
    assert (code, out) == (0, f"{shown['version'] + 1}\n")
    # key reshare: the node checks the new holders and threshold before any protocol runs
    assert await cli(capsys, "key", "reshare", *adm, kid, "--threshold", "4", "--nodes", "node-1,node-2,node-3") == (
        2, "", "error: bad_threshold: threshold must be between 1 and 3\n")
