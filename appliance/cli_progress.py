"""How the CLI shows a key operation's progress (``progress`` of ``GET /v1/operations/{id}``,
api/README.md): on a terminal, one line redrawn with ``\\r`` (a bar, the phase, the time so
far), each finished phase left above it as a line of its own; elsewhere (a pipe, a log file)
plain lines, one per change. Always on stderr, so stdout (``--json``) stays as it was.

    display = ProgressDisplay(sys.stderr)
    key = await client.create_key(2, on_progress=display)
    display.close()
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Callable, Iterator, TextIO

ROUND_PHASES = ("keygen", "aux", "refresh", "reshare", "presign", "sign")
LABELS = {"waiting_for_approval": "waiting for approval", "aux_keys": "aux keys",
          "parties": "parties' results", "primes": "primes"}
BAR_WIDTH = 20


def describe(progress: dict) -> str:
    """``keygen round 2/3``, ``primes 1/4 (the pool is empty: ...)``, ``commit 0/1``."""
    phase = str(progress.get("phase", "?"))
    done, total = progress.get("done", 0), progress.get("total", 1)
    name = f"{phase} round" if phase in ROUND_PHASES else LABELS.get(phase, phase)
    out = f"{name} {done}/{total}"
    if progress.get("detail"):
        out += f" ({progress['detail']})"
    return out


def _finished(phase: dict) -> str:
    return f"{describe(phase)} done in {phase.get('ms', 0) / 1000:.1f} s"


class ProgressDisplay:
    """An ``on_progress`` callback (:meth:`api.client.ApplianceClient.wait_operation`) that
    writes to ``stream``; ``tty`` (default: whether the stream is a terminal) picks the bar.
    ``clock``: seconds, for the time shown on the bar (injected in tests)."""

    def __init__(self, stream: TextIO, *, tty: bool | None = None, prefix: str = "",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.tty = bool(stream.isatty()) if tty is None else tty
        self.prefix = prefix
        self.clock = clock
        self.t0 = clock()
        self._shown_completed = 0
        self._width = 0  # of the bar line drawn last (cleared before the next)
        self._last = ""

    def __call__(self, progress: dict) -> None:
        completed = list(progress.get("completed") or ())
        for phase in completed[self._shown_completed:]:
            self._line(_finished(phase))
        self._shown_completed = max(self._shown_completed, len(completed))
        now = describe(progress)
        if self.tty:
            self._bar(progress, now)
        elif now != self._last:
            self._line(now)
        self._last = now

    def _line(self, text: str) -> None:
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.stream.write(self.prefix + text + "\n")
        self.stream.flush()

    def _bar(self, progress: dict, text: str) -> None:
        total = max(1, int(progress.get("total", 1)))
        filled = round(BAR_WIDTH * min(int(progress.get("done", 0)), total) / total)
        line = f"{self.prefix}[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {text}  {self.clock() - self.t0:.1f} s"
        self.stream.write("\r" + line + " " * max(0, self._width - len(line)))
        self.stream.flush()
        self._width = len(line)

    def close(self) -> None:
        """End the bar's line (a terminal), so what follows starts on a line of its own."""
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0


@contextlib.contextmanager
def progress_on_stderr(prefix: str = "") -> Iterator[ProgressDisplay]:
    """A :class:`ProgressDisplay` on stderr, its bar's line ended when the wait ends (an error
    message then starts on a line of its own)."""
    display = ProgressDisplay(sys.stderr, prefix=prefix)
    try:
        yield display
    finally:
        display.close()
