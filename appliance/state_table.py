"""What every explicit state table shares (h11's ``_state.py`` is the model): one lookup of
``(state, event)``, and one error for any step the table does not have."""

from __future__ import annotations

from typing import Callable

from appliance.errors import ServiceError


class InvalidTransition(ServiceError):
    def __init__(self, what: str, state: str, event: str) -> None:
        super().__init__("invalid_transition", f"{what} that is {state} cannot {event}")
        self.state = state
        self.event = event


def make_transition(what: str, table: dict[tuple[str, str], str]) -> Callable[[str, str], str]:
    """``transition(state, event)`` over ``table``: the state after ``event``, or
    InvalidTransition naming ``what`` ("a sign request") if the table has no such step."""

    def transition(state: str, event: str) -> str:
        try:
            return table[(state, event)]
        except KeyError:
            raise InvalidTransition(what, state, event) from None

    return transition
