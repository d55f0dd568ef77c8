"""Fault injection is an object passed in (appliance/faults.py), never a setting a production
node reads: a node.toml that asks for a fault is refused, production builds NO_FAULTS."""

from __future__ import annotations

import inspect

import pytest

from appliance import cli
from appliance.config import ConfigError, load_node_config
from appliance.faults import FAULT_KEYS, NO_FAULTS, FaultPlan
from appliance.init_hsm import SoftHSMSetup
from appliance.node import Node


def test_a_plan_knows_its_keys_and_production_has_none():
    plan = FaultPlan.from_mapping({"tamper": ["alter"], "delay_s": 1.5, "delay_protocols": ["presign"]})
    assert plan.tamper == {"alter"} and plan.delay_for("presign") == 1.5 and plan.delay_for("sign") == 0
    assert FaultPlan.from_mapping({"delay_s": 2}).delay_for("sign") == 2.0  # every protocol
    with pytest.raises(ValueError, match="unknown fault plan keys"):
        FaultPlan.from_mapping({"tampr": ["alter"]})
    assert NO_FAULTS == FaultPlan() and not NO_FAULTS.tamper and not NO_FAULTS.crash_points
    assert inspect.signature(Node).parameters["faults"].default is NO_FAULTS


@pytest.mark.parametrize("key", sorted(FAULT_KEYS))
def test_a_node_config_asking_for_a_fault_is_refused(tmp_path, key):
    d = tmp_path / "n1"
    cli.init_node(d, "node-1", hsm=SoftHSMSetup(d / "hsm"), listen="127.0.0.1:1", url="https://127.0.0.1:1",
                  paillier_bits=2048)
    text = (d / "node.toml").read_text()
    (d / "node.toml").write_text(text + f"\n[testing]\n{key} = true\n")
    with pytest.raises(ConfigError, match=r"\[testing\] takes only prime_file"):
        load_node_config(d / "node.toml")


def test_the_test_clock_follows_its_offset_file(tmp_path):
    import json
    import time

    from appliance.testing import OffsetClock

    clock = OffsetClock(tmp_path / "clock.json")
    assert abs(clock.now() - time.time()) < 5  # no file: the wall clock
    (tmp_path / "clock.json").write_text(json.dumps({"offset_s": 3600.0}))
    assert 3595 < clock.now() - time.time() < 3605
