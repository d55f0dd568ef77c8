"""Metrics: exposition checked by ``promtool check metrics`` (Debian package ``prometheus``,
installed here when absent; prometheus_client's own parser if it cannot be), naming, label
cardinality, per-node registries, counters moving as expected."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from appliance.metrics import Metrics

INSTALL_TIMEOUT_S = 900


def promtool_path() -> str:
    """``promtool`` (Debian package ``prometheus``, which ``make system-deps`` installs): missing
    is a failure, not a skip."""
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: `make system-deps` installs it (Debian package prometheus)")
    return found


@pytest.fixture(scope="session")
def promtool():
    return promtool_path()


def exercised() -> Metrics:
    m = Metrics(peers=["node-1", "node-2", "node-3"])
    m.sign_request_created()
    m.sign_request_completed("signed")
    m.set_sign_requests_in_state({"pending": 2, "signing": 1})
    m.http_request("GET", "/v1/sign-requests/{request_id}", 200, 0.003)
    m.http_request("POST", None, 404, 0.001)
    m.set_peer_up("node-2", True)
    m.set_peer_up("node-3", False)
    m.set_cert_expiry("node-1", 1.9e9)
    m.hsm_ready.set(1)
    m.audit_ok.set(1)
    m.presignature_target.set(4)
    m.policy_denied("self_approval")
    m.peer_error("node-2")
    m.message_dropped("replayed")
    m.job("presign", "done", 1.2)
    m.observe_round("presign", 2, 0.04)
    m.observe_session("sign", "done", 0.02)
    m.observe_hsm("unseal", 0.0004)
    m.observe_hsm("sign", 0.001, ok=False)
    m.set_presignatures("key_1", 4)
    m.set_frost_nonce_counts({"key_2": 6})
    m.set_prime_pool("safe", 3072, 2)
    m.set_prime_pool("blum", 2048, 5)
    m.audit_written()
    m.audit_failed()
    m.sqlite_committed(0.0004, "presignatures._take")
    return m


def value(m: Metrics, name: str, **labels) -> float:
    v = m.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


def test_promtool_check_metrics(promtool):
    text = exercised().render()
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                       timeout=60, check=False)
    assert r.returncode == 0, (r.stdout + r.stderr).decode()
    assert r.stdout.strip() == b"" and r.stderr.strip() == b"", (r.stdout + r.stderr).decode()


def test_exposition_parses_and_follows_naming():
    text = exercised().render().decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    expected = {
        "appliance_build_info": "gauge",
        "appliance_sign_requests_created": "counter",
        "appliance_sign_requests_completed": "counter",
        "appliance_sign_requests_in_state": "gauge",
        "appliance_http_requests": "counter",
        "appliance_http_request_duration_seconds": "histogram",
        "appliance_peer_up": "gauge",
        "appliance_hsm_ready": "gauge",
        "appliance_audit_ok": "gauge",
        "appliance_tls_cert_expiry_timestamp_seconds": "gauge",
        "appliance_peer_connections_opened": "counter",
        "appliance_sign_stage_duration_seconds": "histogram",
        "appliance_sqlite_commits": "counter",
        "appliance_aux_pool_events": "counter",  # (main's aux-info pool, not listed there yet)
        "appliance_aux_pool_key_room": "gauge",
        "appliance_aux_pool_low_water": "gauge",
        "appliance_presignature_pool_target": "gauge",
        "appliance_quorum_required": "gauge",
        "appliance_policy_denials": "counter",
        "appliance_protocol_round_duration_seconds": "histogram",
        "appliance_protocol_session_duration_seconds": "histogram",
        "appliance_jobs": "counter",
        "appliance_job_duration_seconds": "histogram",
        "appliance_hsm_operation_duration_seconds": "histogram",
        "appliance_hsm_errors": "counter",
        "appliance_presignatures_available": "gauge",
        "appliance_frost_nonces_available": "gauge",
        "appliance_prime_pool_size": "gauge",
        "appliance_peer_errors": "counter",
        "appliance_peer_messages_dropped": "counter",
        "appliance_audit_entries": "counter",
        "appliance_audit_write_failures": "counter",
    }
    process = {n for n in fams if n.startswith("process_")}
    assert {"process_cpu_seconds", "process_resident_memory_bytes", "process_open_fds",
            "process_start_time_seconds"} <= process
    assert {n: f.type for n, f in fams.items() if n not in process} == expected
    for f in fams.values():
        assert f.documentation, f.name
        for s in f.samples:
            assert s.name.startswith(("appliance_", "process_"))
            if f.type == "counter":
                assert s.name.endswith("_total"), s.name
            assert "request_id" not in s.labels and "user" not in s.labels
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if not line.startswith("#")}
    assert not [n for n in names if n.endswith("_created")]  # no counter creation timestamps
    assert "appliance_build_info{" in text and 'version="' in text


def test_counters_move_as_expected():
    m = Metrics(peers=["node-1", "node-2"])
    assert value(m, "appliance_sign_requests_completed_total", outcome="signed") == 0
    m.sign_request_created()
    m.sign_request_completed("signed")
    m.sign_request_completed("signed")
    m.sign_request_completed("denied")
    assert value(m, "appliance_sign_requests_created_total") == 1
    assert value(m, "appliance_sign_requests_completed_total", outcome="signed") == 2
    assert value(m, "appliance_sign_requests_completed_total", outcome="denied") == 1
    m.policy_denied("rate_limited")
    assert value(m, "appliance_policy_denials_total", reason="rate_limited") == 1
    m.audit_written()
    assert value(m, "appliance_audit_entries_total") == 1
    m.job("sign", "failed", 0.5, parties=2)
    assert value(m, "appliance_jobs_total", kind="sign", outcome="failed") == 1
    assert value(m, "appliance_job_duration_seconds_count", kind="sign", parties="2") == 1


def test_labels_stay_low_cardinality():
    m = Metrics(peers=["node-1", "node-2"])
    sizes = []
    for i in range(200):
        m.policy_denied(f"req_{i}")
        m.sign_request_completed(f"outcome_{i}")
        m.peer_error(f"https://10.0.0.{i}")
        m.set_peer_up(f"10.0.0.{i}", True)
        m.set_cert_expiry(f"https://10.0.0.{i}", 1.0)
        m.http_request(f"M{i}", None, 404, 0.01)
        m.http_request("GET", None, 1000 + i, 0.01)
        m.observe_round("presign", i + 11, 0.1)
        m.observe_hsm(f"op{i}", 0.1)
        if i in (0, 199):
            sizes.append(len(m.render().splitlines()))
    text = m.render().decode()
    assert sizes[0] == sizes[1]  # 200 distinct inputs, no new series
    assert value(m, "appliance_policy_denials_total", reason="other") == 200
    assert value(m, "appliance_sign_requests_completed_total", outcome="other") == 200
    assert value(m, "appliance_http_requests_total", method="other", route="unmatched", status="404") == 200
    assert value(m, "appliance_http_requests_total", method="GET", route="unmatched", status="other") == 200
    assert value(m, "appliance_peer_errors_total", peer="other") == 200
    assert "req_" not in text and "10.0.0" not in text


def test_per_node_registries_are_separate():
    a, b = Metrics(), Metrics()
    a.sign_request_completed("signed")
    assert value(a, "appliance_sign_requests_completed_total", outcome="signed") == 1
    assert value(b, "appliance_sign_requests_completed_total", outcome="signed") == 0
    assert REGISTRY.get_sample_value("appliance_sign_requests_completed_total", {"outcome": "signed"}) is None


def test_timers_and_gauges():
    m = Metrics()
    with m.time_session("sign") as s:
        pass
    assert s["outcome"] == "done"
    with pytest.raises(RuntimeError), m.time_session("presign"):
        raise RuntimeError("abort")
    with m.time_session("keygen") as s:
        s["outcome"] = "aborted"
    assert value(m, "appliance_protocol_session_duration_seconds_count", protocol="sign",
                 outcome="done") == 1
    assert value(m, "appliance_protocol_session_duration_seconds_count", protocol="presign",
                 outcome="failed") == 1
    assert value(m, "appliance_protocol_session_duration_seconds_count", protocol="keygen",
                 outcome="aborted") == 1
    with m.time_round("presign", 3):
        pass
    assert value(m, "appliance_protocol_round_duration_seconds_count", protocol="presign",
                 round="3") == 1
    with pytest.raises(OSError), m.time_hsm("seal"):
        raise OSError("token gone")
    assert value(m, "appliance_hsm_errors_total", operation="seal") == 1
    assert value(m, "appliance_hsm_operation_duration_seconds_count", operation="seal") == 1
    m.set_presignature_counts({"key_a": 3, "key_b": 1})
    m.set_presignature_counts({"key_b": 2})
    assert value(m, "appliance_presignatures_available", key="key_b") == 2
    assert m.registry.get_sample_value("appliance_presignatures_available",
                                       {"key": "key_a"}) is None
    m.set_frost_nonce_counts({"key_c": 8, "key_d": 4})
    m.set_frost_nonce_counts({"key_d": 3})  # key_c gone (deleted, or no longer active)
    assert value(m, "appliance_frost_nonces_available", key="key_d") == 3
    assert m.registry.get_sample_value("appliance_frost_nonces_available", {"key": "key_c"}) is None


def test_audit_hook(tmp_path):
    from appliance.audit import AuditLog

    m = Metrics()
    log = AuditLog(tmp_path / "a.db", "node-1", on_append=m.audit_written)
    log.append("initiator", "sign_request")
    log.append("approver", "approval")
    assert value(m, "appliance_audit_entries_total") == 2
