"""The HSM part of ``appliance init``: which token the node uses and its keys on it.

Two ways, chosen explicitly (neither is a usage error)::

    --pkcs11-module PATH --token-label L (--pin-env VAR | --pin-file F)
        an EXISTING token on any PKCS#11 module: log in, create the node's keys on it (or
        find them, when init runs again against the same token), and write [hsm] with the
        module, the label and where the PIN comes from (never the PIN itself). The module's
        own set-up (its configuration file, environment variables such as SOFTHSM2_CONF or
        OPENCRYPTOKI's, a running daemon) is the operator's and must be the same for
        ``appliance serve``.
    --softhsm DIR [--token-label L] [--pin-env VAR | --pin-file F]
        tests, the demo and the compose file: a new SoftHSM2 token in DIR labelled L (default:
        the node id) whose PIN comes from VAR or F (named in [hsm] like any PIN source) or,
        without either, is random and kept in DIR/<label>.pin (0600) beside its softhsm2.conf.

:func:`prepare` opens the token once, so the node's identity and transport keys exist when
node-info.json is written, and reports the sealing mechanism it chose (:mod:`hsm.sealing`).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from hsm import HSM
from hsm.config import HSMConfig
from hsm.softhsm import init_token


class UsageError(Exception):
    """The init flags do not say which token to use (exit code 2)."""


@dataclass(frozen=True)
class SoftHSMSetup:
    """Make a new SoftHSM2 token in ``directory`` (tests, the demo); the PIN from
    ``pin_env`` or ``pin_file``, else random in a file beside the token."""

    directory: Path
    token_label: str | None = None
    pin_env: str | None = None
    pin_file: Path | None = None


@dataclass(frozen=True)
class ModuleSetup:
    """Use an existing token ``token_label`` of PKCS#11 module ``module``."""

    module: str
    token_label: str
    pin_env: str | None = None
    pin_file: Path | None = None


HsmSetup = SoftHSMSetup | ModuleSetup


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("HSM (one of --pkcs11-module ... or --softhsm DIR)")
    g.add_argument("--pkcs11-module", metavar="PATH", help="the PKCS#11 module (shared library)")
    g.add_argument("--token-label", metavar="L", help="label of the existing token to use")
    g.add_argument("--pin-env", metavar="VAR", help="environment variable holding the user PIN")
    g.add_argument("--pin-file", metavar="F", type=Path,
                   help="file holding the user PIN (outside --dir, not readable by others)")
    g.add_argument("--softhsm", metavar="DIR", type=Path,
                   help="tests and demo only: create a SoftHSM2 token in DIR")


def setup_from_args(args: argparse.Namespace) -> HsmSetup:
    pin_file = Path(os.path.abspath(args.pin_file)) if args.pin_file else None
    if args.pin_env is not None and pin_file is not None:
        raise UsageError("give at most one of --pin-env and --pin-file")
    if args.softhsm is not None:
        if args.pkcs11_module is not None:
            raise UsageError("--softhsm makes a new SoftHSM2 token; --pkcs11-module uses an "
                             "existing token: give one of them")
        return SoftHSMSetup(args.softhsm, args.token_label, args.pin_env, pin_file)
    if args.pkcs11_module is None:
        raise UsageError("say which HSM the node uses: --pkcs11-module PATH --token-label L "
                         "(--pin-env VAR | --pin-file F), or --softhsm DIR for a test token")
    if args.token_label is None:
        raise UsageError("--pkcs11-module needs --token-label")
    if args.pin_env is None and pin_file is None:
        raise UsageError("--pkcs11-module needs --pin-env or --pin-file")
    return ModuleSetup(args.pkcs11_module, args.token_label, args.pin_env, pin_file)


@dataclass(frozen=True)
class Prepared:
    section: dict  # node.toml [hsm]
    identity: bytes
    transport: bytes
    sealing: str


def prepare(setup: HsmSetup, directory: Path, node_id: str) -> Prepared:
    """Make or find the token, open it (creating or finding the node's keys) and return the
    [hsm] section (paths inside ``directory`` relative to it) and the public keys."""
    label = setup.token_label or node_id
    section: dict = {"token_label": label}
    if setup.pin_env is not None:
        section["pin_env"] = setup.pin_env
    elif setup.pin_file is not None:
        section["pin_file"] = str(setup.pin_file)
    if isinstance(setup, SoftHSMSetup):
        given = None
        if len(section) > 1:  # the operator's PIN (checked like the node will check it)
            given = HSMConfig.from_mapping(section, state_dir=directory).read_pin().reveal()
        tok = init_token(Path(setup.directory).resolve(), label, pin=given)
        rel = lambda p: os.path.relpath(p, directory)  # noqa: E731
        if tok.pin_file is not None:
            section["pin_file"] = rel(tok.pin_file)
        section.update(softhsm_conf=rel(tok.conf), module=tok.module)
    else:
        section["module"] = setup.module
    paths = {k: str(Path(directory, section[k])) for k in ("pin_file", "softhsm_conf") if k in section}
    cfg = HSMConfig.from_mapping({**section, **paths}, state_dir=directory)
    hsm = HSM.open(cfg, node_id=node_id)
    try:
        return Prepared(section, hsm.identity_public_key, hsm.transport_public_key,
                        hsm.sealing_mechanism)
    finally:
        hsm.close()
