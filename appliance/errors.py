"""Exception classes a caller can catch. Messages never carry secret values."""

from __future__ import annotations

# the base classes are the client library's (one hierarchy: an error raised while building a
# statement or parsing JSON is the same class on both sides)
from appliance_client.errors import ApplianceError as ApplianceError
from appliance_client.errors import EncodingError as EncodingError
from appliance_client.errors import TooDeep as TooDeep


class ProofError(ApplianceError):
    """A zero-knowledge proof failed to verify.

    ``check`` is the number of the verifier's check that failed, as numbered in the proof
    module's docstring (``appliance/tss/zk/``); the message starts with "check <n>: ".
    ``culprit`` is the index of the party whose proof failed, when the caller knows it.
    """

    code = "bad_proof"

    def __init__(self, message: str, *, check: int, culprit: int | None = None) -> None:
        if type(check) is not int or check < 1:
            raise TypeError("ProofError needs the number of the failed check (an int >= 1)")
        super().__init__(f"check {check}: {message}")
        self.check = check
        self.reason = message
        self.culprit = culprit

    def blame(self, culprit: int) -> "ProofError":
        """The same failure, attributed to ``culprit``."""
        return type(self)(self.reason, check=self.check, culprit=culprit)


class ParameterError(ApplianceError, ValueError):
    """A parameter (modulus size, threshold, range) is unacceptable."""

    code = "bad_parameter"


class ServiceError(ApplianceError):
    """A refused or failed request: a stable machine-readable ``code``, a ``message``, and the
    nodes to blame (``culprits``, an identifiable abort) or that did not answer
    (``missing_nodes``). No HTTP status: the API maps codes to statuses (api/errors.py)."""

    code = "error"
    #: refused by the policy or an authorization check (whatever the code names)
    denied = False

    def __init__(self, code: str, message: str, *, culprits: list[str] | None = None,
                 missing_nodes: list[str] | None = None) -> None:
        super().__init__(message)
        self.code, self.message = code, message
        self.culprits = culprits
        self.missing_nodes = missing_nodes

    def to_error(self) -> dict:
        """The error as kept in a record or sent to a peer: ``code``, ``message``,
        ``culprits``?, ``missing_nodes``?, ``denied``? (true for a refusal)."""
        err: dict = {"code": self.code, "message": self.message}
        if self.culprits is not None:
            err["culprits"] = self.culprits
        if self.missing_nodes is not None:
            err["missing_nodes"] = self.missing_nodes
        if self.denied:
            err["denied"] = True
        return err

    @staticmethod
    def from_error(err: dict, *, code: str = "error") -> "ServiceError":
        """The error a record or a peer's answer describes (:meth:`to_error`'s form; a record
        of an earlier release says ``"status": 403`` for a refusal)."""
        kw = {"culprits": err.get("culprits"), "missing_nodes": err.get("missing_nodes")}
        code, message = str(err.get("code") or code), str(err.get("message", ""))
        if err.get("denied") is True or err.get("status") == 403:
            return PolicyDenied(code, message, **kw)
        return ServiceError(code, message, **kw)


class PolicyDenied(ServiceError):
    """The policy, or an authorization check, refuses: ``code`` names the check (a reason of
    :data:`appliance.policy.REASONS`, or e.g. ``bad_coordinator_signature``)."""

    denied = True

    def __init__(self, code: str, message: str = "", *, subject: str | None = None,
                 culprits: list[str] | None = None, missing_nodes: list[str] | None = None) -> None:
        super().__init__(code, message or code, culprits=culprits, missing_nodes=missing_nodes)
        self.subject = subject
