"""How the ``appliance`` command reports a failure: one line on stderr,
``error: <code>: <message>``, and an exit code (the DESIGN.md contract, appliance/exit_codes.py);
with ``--json`` the same error as ``{"error": {"code", "message"}}`` on stdout too. Never a
traceback (``--debug`` or ``-v`` adds it after the line).

    0 ok                    1 anything else (HSM, backup, a failed operation, unexpected)
    2 usage: bad arguments, configuration or policy files, missing or unreadable input
      files, bad hex or JSON in an input
    3 refused by the policy or authentication (401/403), or the node's TLS certificate
      rejected (server_certificate_rejected: not the pinned one, or not from the CA)
    2 also: the node answered 400/413/422 (the request's arguments are malformed)
    4 not found (404)       5 timeout (also a 408/504)       6 unreachable (node_unreachable)
    7 verification failed
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any

from api.client import ApplianceAPIError
from appliance.errors import ApplianceError
from appliance.exit_codes import (EXIT_NOT_FOUND, EXIT_REFUSED, EXIT_TIMEOUT, EXIT_UNREACHABLE, EXIT_USAGE,
                                  EXIT_VERIFICATION_FAILED)
from appliance.init_hsm import UsageError as InitUsageError
from hsm.errors import HSMError

EXIT_FAILED = 1


class UsageError(ApplianceError):
    """The command line does not say what to do (exit 2)."""

    code = "usage"


class VerificationFailed(ApplianceError):
    """A signature (or document) did not verify (exit 7)."""

    code = "verification_failed"


class CommandTimeout(TimeoutError):
    """What a command waited for did not come in time (exit 5), with a code naming it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def exit_code_of(exc: ApplianceAPIError) -> int:
    """The exit code of an error the node (or the client library) reported."""
    if exc.code == "node_unreachable":
        return EXIT_UNREACHABLE
    if exc.code == "server_certificate_rejected" or exc.status in (401, 403):
        return EXIT_REFUSED
    if exc.status == 404:
        return EXIT_NOT_FOUND
    if exc.status in (408, 504):
        return EXIT_TIMEOUT
    if exc.status in (400, 413, 422):  # the node found the arguments malformed
        return EXIT_USAGE
    return EXIT_FAILED


def _file_error(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename is not None else ""
    return where + (exc.strerror or str(exc))


def classify(exc: BaseException) -> tuple[str, str, int]:
    """``(code, message, exit code)`` of what a command raised."""
    if isinstance(exc, ApplianceAPIError):
        return exc.code, exc.message or str(exc), exit_code_of(exc)
    if isinstance(exc, VerificationFailed):
        return exc.code, str(exc), EXIT_VERIFICATION_FAILED
    if isinstance(exc, InitUsageError):
        return UsageError.code, str(exc), EXIT_USAGE
    if isinstance(exc, TimeoutError):
        return getattr(exc, "code", None) or "timeout", str(exc) or "timed out", EXIT_TIMEOUT
    if isinstance(exc, FileNotFoundError):
        return "file_not_found", _file_error(exc), EXIT_USAGE
    if isinstance(exc, (PermissionError, IsADirectoryError, NotADirectoryError)):
        return "file_unreadable", _file_error(exc), EXIT_USAGE
    if isinstance(exc, (HSMError, OSError)):
        code = exc.code if isinstance(exc, HSMError) else "os_error"
        return code, str(exc), EXIT_FAILED
    if isinstance(exc, ApplianceError):
        # configuration, policy, bundle, hex/encoding, parameters: what the user gave (2);
        # backup and the rest: 1
        usage = isinstance(exc, (UsageError, ValueError)) or exc.code in ("bad_config", "bad_policy")
        return exc.code, str(exc), EXIT_USAGE if usage else EXIT_FAILED
    if isinstance(exc, UnicodeDecodeError):
        return "bad_input", f"not UTF-8 text: {exc.reason}", EXIT_USAGE
    if isinstance(exc, ValueError):  # bad hex, bad JSON, a certificate the node cannot use...
        return getattr(exc, "code", None) or "bad_input", str(exc), EXIT_USAGE
    return "internal_error", f"{type(exc).__name__}: {exc}", EXIT_FAILED


def one_line(text: str) -> str:
    return " ".join(text.split()) if "\n" in text or "\r" in text else text


def report(exc: BaseException, args: Any = None) -> int:
    """Print ``exc`` as one line on stderr (and as JSON on stdout with ``--json``); the exit code."""
    code, message, status = classify(exc)
    message = one_line(message)
    print(f"error: {code}: {message}", file=sys.stderr)
    if getattr(args, "debug", False) or getattr(args, "verbose", False):
        traceback.print_exception(exc, file=sys.stderr)
    if getattr(args, "json", False):
        print(json.dumps({"error": {"code": code, "message": message}}, sort_keys=True))
    return status
