"""A key change on one party, as a state table (in the style of h11's ``_state.py``): every
party *prepares* (sealed result stored, an fsynced record of what it will commit); the
coordinator records its decision, then each party *commits* (the new epoch in use, the old
share kept) and, once every party confirmed, *finalizes* (older shares and presignatures
destroyed). A prepared change the coordinator never committed is *abandoned* (the old epoch
stays). :func:`transition` refuses every step not in :data:`TRANSITIONS`."""

from __future__ import annotations

from appliance.state_table import InvalidTransition, make_transition  # noqa: F401 (InvalidTransition: the table's error)

NONE = "none"
PREPARED = "prepared"
COMMITTED = "committed"
FINALIZED = "finalized"
ABANDONED = "abandoned"

STATES = (NONE, PREPARED, COMMITTED, FINALIZED, ABANDONED)
EVENTS = ("prepare", "commit", "finalize", "abandon")

TRANSITIONS: dict[tuple[str, str], str] = {
    (NONE, "prepare"): PREPARED,
    (PREPARED, "commit"): COMMITTED,
    (PREPARED, "abandon"): ABANDONED,
    (COMMITTED, "commit"): COMMITTED,  # a repeated commit (a lost answer) is confirmed again
    (COMMITTED, "finalize"): FINALIZED,
}


transition = make_transition("a key change", TRANSITIONS)
