"""Small interfaces the node's services depend on, with their production implementations.

Tests pass fakes (a clock they move, an event sink they wait on) instead of sleeping.
"""

from __future__ import annotations

import time
from typing import Any, Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock seconds since the epoch (what policy validity windows are in)."""


class SystemClock:
    def now(self) -> float:
        return time.time()


class EventSink(Protocol):
    def emit(self, event: str, **fields: Any) -> None:
        """Something a test may wait on happened (``round``: a protocol round's messages are
        about to leave this node: ``job``, ``protocol``, ``round``)."""


class NoEvents:
    def emit(self, event: str, **fields: Any) -> None:
        return None


SYSTEM_CLOCK = SystemClock()
NO_EVENTS = NoEvents()
