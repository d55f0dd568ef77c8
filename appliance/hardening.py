"""Process hardening for anything that holds secrets (a node, a signing worker)."""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
import sys

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


def disable_core_dumps() -> None:
    """No core file, and no ptrace attach / /proc/<pid>/mem by other same-user processes.

    Sets RLIMIT_CORE to 0 (soft and hard, so it cannot be raised again) and, on Linux,
    prctl(PR_SET_DUMPABLE, 0). Call once at start-up, before any secret is loaded.
    Raises OSError if prctl fails on Linux.
    """
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, "prctl(PR_SET_DUMPABLE, 0) failed")


def core_dumps_disabled() -> bool:
    """True if this process can produce no core dump (for checks and tests)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    if soft != 0 or hard != 0:
        return False
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0
    return True
