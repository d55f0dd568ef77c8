"""HSM configuration: module path, token label, where the PIN comes from.

The PIN is read from a file or from an environment variable, never from the
configuration text itself (a ``pin`` key is refused), and it is held in a :class:`Pin`
whose ``repr``/``str`` are redacted so that it cannot end up in a log line or an error
message by accident.

A PIN file must not be readable or writable by other users (no "other" permission bits)
and must not lie inside the node's data directory (``state_dir``: where node.toml, the
database and their backups are), so that a copy of the node's state is not a copy of its
PIN. The one exception is the test and demo layout of ``appliance init --softhsm DIR``: a
SoftHSM2 token whose PIN file sits beside its own softhsm2.conf (the software token's
object files are in that directory anyway). The file may belong to the node's own user
(systemd ``LoadCredential=`` and Kubernetes secret volumes hand it over that way).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from hsm.errors import HSMConfigError

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
IDENTITY_CURVES = ("secp256k1", "secp256r1")


class Pin:
    """A PIN in memory. ``str()``/``repr()`` never show it; use :meth:`reveal`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise HSMConfigError("the PIN is empty")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Pin(<redacted>)"

    __str__ = __repr__

    def __reduce__(self):  # never pickled (e.g. into a subprocess or a cache)
        raise TypeError("a Pin cannot be pickled")


@dataclass(frozen=True)
class HSMConfig:
    """Where the node's token is and how to log in.

    ``softhsm_conf``: path of a softhsm2.conf; when set, SOFTHSM2_CONF is pointed at it
    before the module is initialized. SoftHSM reads that variable in C_Initialize, so one
    process uses one SoftHSM configuration at a time (see :mod:`hsm.worker`).
    ``identity_curve``: ``secp256k1`` (default) or ``secp256r1`` (P-256).
    """

    token_label: str
    pin_file: Path | None = None
    pin_env: str | None = None
    module: str = DEFAULT_MODULE
    softhsm_conf: Path | None = None
    identity_curve: str = "secp256k1"
    # A PIN given directly (tests, the demo's helper). Not shown in repr.
    pin: Pin | None = field(default=None, repr=False, compare=False)
    # The node's data directory: a PIN file inside it is refused (see the module docstring).
    state_dir: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.token_label or len(self.token_label.encode()) > 32:
            raise HSMConfigError("the token label must be 1 to 32 bytes")
        if self.identity_curve not in IDENTITY_CURVES:
            raise HSMConfigError(
                f"identity_curve must be one of {', '.join(IDENTITY_CURVES)}"
            )
        if self.pin is None and self.pin_file is None and self.pin_env is None:
            raise HSMConfigError(
                f"no PIN source configured for token {self.token_label!r}: "
                "set pin_file or pin_env"
            )

    def read_pin(self) -> Pin:
        """The PIN, from (in this order) ``pin``, ``pin_file``, ``pin_env``."""
        if self.pin is not None:
            return self.pin
        if self.pin_file is not None:
            self.check_pin_file()
            try:
                text = Path(self.pin_file).read_text(encoding="utf-8")
            except OSError as exc:
                raise HSMConfigError(
                    f"cannot read the PIN file {str(self.pin_file)!r}: {exc.strerror}"
                ) from None
            value = text.rstrip("\r\n")
            if not value:
                raise HSMConfigError(f"the PIN file {str(self.pin_file)!r} is empty")
            return Pin(value)
        assert self.pin_env is not None
        value = os.environ.get(self.pin_env)
        if not value:
            raise HSMConfigError(
                f"the environment variable {self.pin_env!r} holding the PIN is not set"
            )
        return Pin(value)

    def check_pin_file(self) -> None:
        """Refuse a PIN file inside ``state_dir`` or open to other users."""
        assert self.pin_file is not None
        path = Path(os.path.abspath(self.pin_file))
        if self.state_dir is not None:
            state = Path(os.path.abspath(self.state_dir))
            softhsm_own = (self.softhsm_conf is not None
                           and path.parent == Path(os.path.abspath(self.softhsm_conf)).parent)
            if path.is_relative_to(state) and not softhsm_own:
                raise HSMConfigError(
                    f"the PIN file {str(path)!r} is inside the node's data directory "
                    f"{str(state)!r}: keep it out of the node's state (pin_env, or a file "
                    "elsewhere)"
                )
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            raise HSMConfigError(
                f"cannot read the PIN file {str(self.pin_file)!r}: {exc.strerror}"
            ) from None
        if mode & 0o007:
            raise HSMConfigError(
                f"the PIN file {str(self.pin_file)!r} is open to other users (mode "
                f"{mode & 0o777:04o}): allow its owner (and group) only, e.g. 0600 or 0400"
            )

    @classmethod
    def from_mapping(cls, m: dict, *, state_dir: Path | None = None) -> "HSMConfig":
        """From a parsed configuration section (e.g. ``[hsm]`` of node.toml); ``state_dir``:
        the node's data directory (no PIN file inside it)."""
        known = {"token_label", "pin_file", "pin_env", "module", "softhsm_conf", "identity_curve"}
        if "pin" in m:
            raise HSMConfigError(
                "[hsm] pin: the PIN is never read from the configuration; set pin_env (an "
                "environment variable) or pin_file (a file outside the node's data directory)"
            )
        unknown = set(m) - known
        if unknown:
            raise HSMConfigError(f"unknown HSM settings: {', '.join(sorted(unknown))}")
        if not isinstance(m.get("token_label"), str) or not m["token_label"]:
            raise HSMConfigError("[hsm] token_label: required (the label of the node's token)")
        kw = dict(m)
        for k in ("pin_file", "softhsm_conf"):
            if kw.get(k) is not None:
                kw[k] = Path(kw[k])
        return cls(**kw, state_dir=state_dir)
