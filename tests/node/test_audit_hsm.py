"""Audit checkpoints signed by a real SoftHSM2 identity key (what the node injects)."""

from __future__ import annotations

import pytest

from appliance.audit import AuditLog, verify_export
from tests.hsm_fixtures import requires_softhsm

pytest_plugins = ["tests.hsm_fixtures"]
pytestmark = [pytest.mark.hsm, requires_softhsm]


def test_checkpoints_signed_by_the_hsm_identity_key(tmp_path, hsm):
    log = AuditLog(tmp_path / "audit.db", "node-1", signer=hsm.sign_digest, checkpoint_every=3)
    for i in range(7):
        log.append("initiator", "sign_request", key="key_1", subject=f"req_{i}",
                   decision="pending")
    log.close()
    log = AuditLog(tmp_path / "audit.db", "node-1")
    lines = list(log.export_lines())
    keys = {"node-1": hsm.identity_public_key}
    r = verify_export(lines, keys, require_checkpoint=True)
    assert r.ok and r.checkpoints == 3, r.summary()
    assert not verify_export(lines, {"node-1": bytes.fromhex("02" + "11" * 32)}).ok
