"""Real node processes on SoftHSM2 tokens with mechanisms hidden by softhsm2.conf: a node
whose token lacks CKM_AES_GCM starts, seals with AES-CBC-PAD + HMAC-SHA256 and signs with a
peer that seals with AES-GCM; a node whose token has no authenticated sealing mechanism
refuses to start, naming what is missing."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from appliance.sealed import BLOB_VERSION, BLOB_VERSION_CBC_HMAC
from appliance.testing import LocalCluster
from tests.cluster_fixtures import TEST_ONLY_PRIMES, check_signature, digest_of
from tests.hsm_fixtures import NO_GCM, NO_SEALING, ROOT, hide_mechanisms, requires_softhsm
from tests.signing_flow import sign

pytestmark = [pytest.mark.asyncio, pytest.mark.hsm, requires_softhsm]


def _blob_versions(db) -> set[int]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return {row[0][0] for row in con.execute("SELECT sealed FROM key_secrets")}
    finally:
        con.close()


async def test_cbc_hmac_node_signs_and_a_token_without_sealing_refuses_to_start(tmp_path):
    cluster = LocalCluster(nodes=2, threshold=2, paillier_bits=2048, prime_file=TEST_ONLY_PRIMES,
                           base_dir=tmp_path / "c", round_timeout=20.0, job_timeout=120.0)
    try:
        await cluster.setup()
        hide_mechanisms(cluster.data_dirs[0] / "hsm" / "softhsm2.conf", NO_GCM)
        for i in range(2):
            await cluster.start_node(i)
        key = await cluster.client("admin").create_key(2)
        done = await sign(cluster.client("initiator"), cluster.client("approver"), key["key_id"],
                          digest_of("cbc+hmac"))
        check_signature(key["public_key"], digest_of("cbc+hmac"), done["signature"])
        assert _blob_versions(cluster.data_dirs[0] / "node.db") == {BLOB_VERSION_CBC_HMAC}
        assert _blob_versions(cluster.data_dirs[1] / "node.db") == {BLOB_VERSION}

        await cluster.stop_node(1)
        hide_mechanisms(cluster.data_dirs[1] / "hsm" / "softhsm2.conf", NO_SEALING)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        env.pop("SOFTHSM2_CONF", None)
        p = subprocess.run([sys.executable, "-m", "appliance.cli", "serve", "--config",
                            str(cluster.data_dirs[1] / "node.toml")], capture_output=True,
                           text=True, timeout=60, env=env, cwd=ROOT)
        assert p.returncode == 1
        assert p.stderr.splitlines()[-1] == (
            "error: hsm_mechanism_missing: token 'node-2': the token offers neither CKM_AES_GCM nor "
            "CKM_AES_CBC_PAD+CKM_SHA256_HMAC (missing: CKM_AES_GCM, CKM_AES_CBC_PAD, "
            "CKM_SHA256_HMAC); no authenticated sealing mechanism")
    finally:
        await cluster.close()
