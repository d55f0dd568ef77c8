"""The spent flag of a one-time secret (a presignature, a FROST nonce pair): shared with the
object's copies (``copy.copy``, ``copy.deepcopy``), set once under a lock. Not picklable: the
secret leaves memory only as ``to_bytes()`` under a seal, and from then on the node's durable
store keeps it single-use."""

from __future__ import annotations

import threading


class SingleUse:
    """``what`` names the secret in the pickling refusal (e.g. "a presignature")."""

    __slots__ = ("_lock", "_spent", "_what")

    def __init__(self, what: str) -> None:
        self._lock = threading.Lock()
        self._spent = False
        self._what = what

    @property
    def spent(self) -> bool:
        return self._spent

    def claim(self) -> bool:
        """True the first time, False on every later call."""
        with self._lock:
            if self._spent:
                return False
            self._spent = True
            return True

    def __copy__(self) -> "SingleUse":
        return self

    def __deepcopy__(self, memo: dict) -> "SingleUse":
        return self

    def __reduce__(self):
        raise TypeError(f"{self._what} is single-use and is not pickled; seal its to_bytes()")


__all__ = ["SingleUse"]
