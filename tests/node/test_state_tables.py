"""Every step of a state table is allowed, every other step is refused (in process, fast)."""

from __future__ import annotations

import itertools

import pytest

from appliance.keys import lifecycle as key_lifecycle
from appliance.keys import states as key_states
from appliance.signing import states as sign_states

TABLES = [
    pytest.param(sign_states, id="sign_request"),
    pytest.param(key_states, id="key_change"),
    pytest.param(key_lifecycle, id="key_lifecycle"),
]


@pytest.mark.parametrize("table", TABLES)
def test_every_step_in_the_table_is_taken(table):
    for (state, event), new in table.TRANSITIONS.items():
        assert table.transition(state, event) == new


@pytest.mark.parametrize("table", TABLES)
def test_every_step_not_in_the_table_is_refused(table):
    refused = 0
    for state, event in itertools.product(table.STATES, table.EVENTS):
        if (state, event) in table.TRANSITIONS:
            continue
        with pytest.raises(table.InvalidTransition) as ei:
            table.transition(state, event)
        assert (ei.value.code, ei.value.state, ei.value.event) == ("invalid_transition", state, event)
        refused += 1
    assert refused == len(table.STATES) * len(table.EVENTS) - len(table.TRANSITIONS)


def test_a_sign_request_leaves_a_final_state_never():
    for state in sign_states.TERMINAL:
        assert not [e for (s, e) in sign_states.TRANSITIONS if s == state]


def test_a_key_change_is_finalized_only_after_commit():
    with pytest.raises(key_states.InvalidTransition):
        key_states.transition(key_states.PREPARED, "finalize")
    with pytest.raises(key_states.InvalidTransition):
        key_states.transition(key_states.COMMITTED, "abandon")


def test_a_lifecycle_step_a_client_asks_for_names_the_key_status():
    with pytest.raises(key_lifecycle.ServiceError) as ei:
        key_lifecycle.check_allowed("active", "enable")
    assert (ei.value.code, ei.value.message) == ("key_not_disabled", "the key is not disabled")
    with pytest.raises(key_lifecycle.ServiceError) as ei:
        key_lifecycle.check_allowed("disabled", "disable")
    assert (ei.value.code, ei.value.message) == ("key_disabled", "the key is disabled already")
    for status in ("deleting", "deleted"):
        with pytest.raises(key_lifecycle.ServiceError) as ei:
            key_lifecycle.check_allowed(status, "delete")
        assert (ei.value.code, ei.value.message) == ("key_deleted", f"the key is {status}")
