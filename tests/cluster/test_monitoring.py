"""Monitoring: the alert rules load and pass their unit tests in promtool (``check rules``,
``test rules``); the Grafana dashboard parses and every metric its queries (and the rules)
use is in a live node's ``/metrics``; on a real 2-of-3 cluster each sign request is counted
once, at its terminal state (one signed, one rejected, one cancelled: the completed counters
sum to the three finished requests), HTTP metrics carry route templates and no ids, and the
peer, HSM, audit and certificate gauges say what is true."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster.test_metrics import promtool_path
from tests.cluster_fixtures import cluster_fixture, cluster_marks, digest_of

ROOT = Path(__file__).resolve().parents[2]
MON = ROOT / "monitoring"
ALERTS = ("ApplianceQuorumUnreachable", "AppliancePresignaturePoolLow", "ApplianceAuditUnavailable",
          "ApplianceNodeQuarantined", "ApplianceHSMNotReady", "ApplianceCertificateExpiringSoon")
METRIC = re.compile(r"\b((?:appliance|process)_[a-z0-9_]+)")


def _promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool_path(), *args], cwd=MON, capture_output=True, text=True, timeout=120,
                          check=False)


def test_promtool_check_rules():
    r = _promtool("check", "rules", "alerts.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 6 rules found" in r.stdout


def test_promtool_test_rules():
    r = _promtool("test", "rules", "alerts.test.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def _rules() -> list[dict]:
    return [r for g in yaml.safe_load((MON / "alerts.yml").read_text())["groups"] for r in g["rules"]]


def test_alerts_have_for_severity_and_runbook():
    rules = _rules()
    assert [r["alert"] for r in rules] == list(ALERTS)
    for r in rules:
        assert re.fullmatch(r"\d+[smh]", r["for"]), r["alert"]
        assert r["labels"]["severity"] in ("warning", "critical")
        assert {"summary", "description", "runbook"} <= set(r["annotations"]), r["alert"]
    tests = yaml.safe_load((MON / "alerts.test.yml").read_text())["tests"]
    tested = {t["alertname"] for case in tests for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert tested == set(ALERTS)  # each one seen firing in promtool's unit tests


def _dashboard_exprs() -> list[str]:
    dash = json.loads((MON / "grafana-dashboard.json").read_text())
    assert dash["uid"] and dash["title"] and dash["templating"]["list"]
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert len(panels) >= 20
    exprs = []
    for p in panels:
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert METRIC.search(t["expr"]), (p["title"], t["expr"])
            exprs.append(t["expr"])
    return exprs


def test_dashboard_parses():
    _dashboard_exprs()


# -- a live cluster ----------------------------------------------------------------------

pytestmark_cluster = cluster_marks("monitoring")
cluster = cluster_fixture()


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def _value(samples, name: str, **labels) -> float:
    return samples[(name, frozenset(labels.items()))]


def _mark(f):
    for m in pytestmark_cluster:
        f = m(f)
    return f


@_mark
async def test_sign_requests_counted_once_each(cluster):
    admin = cluster.client("admin")
    initiator, approver = cluster.client("initiator"), cluster.client("approver")
    key = await admin.create_key(threshold=2)
    before = _samples(await cluster.metrics(0))
    signed = await initiator.request_signature(key["key_id"], digest_of("monitoring: signed"))
    await approver.approve(signed["request_id"])
    await initiator.wait_signature(signed["request_id"], timeout=120)
    rejected = await initiator.request_signature(key["key_id"], digest_of("monitoring: rejected"))
    await approver.reject(rejected["request_id"], "not this one")
    cancelled = await initiator.request_signature(key["key_id"], digest_of("monitoring: cancelled"))
    await initiator.cancel(cancelled["request_id"])
    text = await cluster.metrics(0)
    after = _samples(text)

    def moved(name, **labels):
        return _value(after, name, **labels) - _value(before, name, **labels)

    outcomes = ("signed", "failed", "rejected", "cancelled", "expired", "denied")
    assert {o: moved("appliance_sign_requests_completed_total", outcome=o) for o in outcomes} == \
        {"signed": 1, "failed": 0, "rejected": 1, "cancelled": 1, "expired": 0, "denied": 0}
    assert sum(moved("appliance_sign_requests_completed_total", outcome=o) for o in outcomes) == 3
    assert moved("appliance_sign_requests_created_total") == 3
    assert _value(after, "appliance_sign_requests_in_state", state="pending") == 0
    assert _value(after, "appliance_sign_requests_in_state", state="signing") == 0
    fams = {f.name for f in text_string_to_metric_families(text)}
    assert "appliance_sign_requests" not in fams  # the former mixed-state counter is gone

    # HTTP: by route template and status, never a concrete id
    assert _value(after, "appliance_http_requests_total", method="POST",
                  route="/v1/sign-requests/{request_id}/approvals", status="200") >= 1
    assert _value(after, "appliance_http_request_duration_seconds_count", method="POST",
                  route="/v1/keys/{key_id}/sign-requests") >= 3
    for rid in (signed["request_id"], rejected["request_id"], cancelled["request_id"]):
        assert rid not in text
    routes = {dict(labels)["route"] for name, labels in after if name == "appliance_http_requests_total"}
    assert routes and not [r for r in routes if key["key_id"] in r or "req_" in r], routes
    # peers, HSM, audit, certificates, process
    for peer in cluster.node_ids[1:]:
        assert _value(after, "appliance_peer_up", peer=peer) == 1
    assert _value(after, "appliance_hsm_ready") == 1 and _value(after, "appliance_audit_ok") == 1
    assert _value(after, "appliance_quorum_required") == 2
    for node_id in cluster.node_ids:
        assert _value(after, "appliance_tls_cert_expiry_timestamp_seconds", node=node_id) > time.time()
    assert _value(after, "process_resident_memory_bytes") > 0

    # every metric the dashboard and the alert rules query is in this scrape
    names = {name for name, _ in after}
    used = {m for e in _dashboard_exprs() + [r["expr"] for r in _rules()] for m in METRIC.findall(e)}
    assert used - names == set()
    r = subprocess.run([promtool_path(), "check", "metrics"], input=text, capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr


@_mark
async def test_peer_down_is_seen(cluster):
    """A stopped peer is 0 in appliance_peer_up at the next scrape (the health check asks it)."""
    await cluster.stop_node(2)
    try:
        after = _samples(await cluster.metrics(0))
        assert _value(after, "appliance_peer_up", peer=cluster.node_ids[2]) == 0
        assert _value(after, "appliance_peer_up", peer=cluster.node_ids[1]) == 1
    finally:
        await cluster.start_node(2)
