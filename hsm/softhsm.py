"""Create an isolated SoftHSM2 token directory and initialize a token in it.

The one implementation behind ``softhsm-config/init-token.sh``, the tests and the demo::

    tok = init_token(tmp_path / "hsm", "node-1")       # random PIN, kept in a 0600 file
    hsm = HSM.open(tok.hsm_config(), node_id="node-1")

Layout of ``directory``::

    softhsm2.conf        from softhsm-config/softhsm2.conf.template, tokendir below (0600)
    tokens/              SoftHSM's token directory (0700); several tokens may share it
    <label>.pin          the user PIN (0600), unless the caller supplied a PIN

The SO PIN is random and not kept unless given (nobody needs it in tests or the demo;
keep it if you want to re-initialize the PIN later). ``softhsm2-util`` takes the PINs
on its command line (``--pin``/``--so-pin``, it reads them from a terminal otherwise), so
they are visible to other local users in ``/proc/<pid>/cmdline`` for the few
milliseconds it runs; error messages here never repeat them.

Command line (used by init-token.sh)::

    python -m hsm.softhsm init --dir DIR --label LABEL [--pin-env VAR | --pin-file FILE]
                               [--so-pin-env VAR] [--module PATH]

prints one JSON object: ``conf``, ``token_dir``, ``label``, ``pin_file``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hsm.config import DEFAULT_MODULE, HSMConfig, Pin
from hsm.errors import HSMConfigError, HSMError

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "softhsm-config" / "softhsm2.conf.template"
# Used when the package is installed without the repository's softhsm-config/ (a wheel).
# tests/node/test_hsm_softhsm.py checks that it equals the template file.
DEFAULT_TEMPLATE = """\
# SoftHSM v2 configuration for one appliance node.
# Generated from softhsm-config/softhsm2.conf.template by hsm/softhsm.py
# (softhsm-config/init-token.sh calls it); @TOKENDIR@ is replaced by the node's own
# token directory. Point SOFTHSM2_CONF at the generated file.
directories.tokendir = @TOKENDIR@
objectstore.backend = file

# ERROR, WARNING, INFO, DEBUG
log.level = ERROR

slots.removable = false
slots.mechanisms = ALL

# A forked child gets a fresh library state on its C_Initialize.
library.reset_on_fork = true
"""


def conf_template() -> str:
    try:
        return TEMPLATE_PATH.read_text(encoding="utf-8")
    except OSError:
        return DEFAULT_TEMPLATE


@dataclass(frozen=True)
class SoftHSMToken:
    directory: Path
    conf: Path
    token_dir: Path
    label: str
    pin_file: Path | None
    module: str = DEFAULT_MODULE

    def hsm_config(self, *, pin: str | None = None, **overrides) -> HSMConfig:
        """An :class:`HSMConfig` for this token (PIN from its file, or ``pin``)."""
        kw = dict(
            token_label=self.label,
            module=self.module,
            softhsm_conf=self.conf,
            pin_file=self.pin_file if pin is None else None,
            pin=Pin(pin) if pin is not None else None,
        )
        kw.update(overrides)
        return HSMConfig(**kw)


def write_conf(directory: Path) -> tuple[Path, Path]:
    """Create ``directory/tokens`` and ``directory/softhsm2.conf``; (conf, token_dir)."""
    directory = Path(directory).resolve()
    directory.parent.mkdir(parents=True, exist_ok=True)
    token_dir = directory / "tokens"
    for d in (directory, token_dir):  # only the node's user reads its token and PIN
        d.mkdir(exist_ok=True, mode=0o700)
        os.chmod(d, 0o700)
    conf = directory / "softhsm2.conf"
    text = conf_template().replace("@TOKENDIR@", str(token_dir))
    if not conf.exists() or conf.read_text() != text:
        tmp = conf.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, conf)
    os.chmod(conf, 0o600)
    return conf, token_dir


def _util() -> str:
    path = shutil.which("softhsm2-util")
    if path is None:
        raise HSMError("softhsm2-util not found (install the softhsm2 package)")
    return path


def token_labels(conf: Path) -> list[str]:
    """Labels of the initialized tokens under ``conf``."""
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    out = subprocess.run(
        [_util(), "--show-slots"], env=env, capture_output=True, text=True, check=False
    )
    labels = []
    for line in out.stdout.splitlines():
        line = line.strip()
        if line.startswith("Label:"):
            label = line[len("Label:"):].strip()
            if label:
                labels.append(label)
    return labels


def _write_secret(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")


def init_token(
    directory: Path | str,
    label: str,
    *,
    pin: str | None = None,
    so_pin: str | None = None,
    module: str = DEFAULT_MODULE,
) -> SoftHSMToken:
    """Initialize a token labelled ``label`` in ``directory`` (created if needed).

    Without ``pin`` a random PIN is generated and written to ``directory/<label>.pin``
    (0600). Refuses a label already present in that directory.
    """
    if not label or len(label.encode()) > 32 or "/" in label or label.startswith("."):
        raise HSMConfigError("a token label is 1 to 32 bytes, without '/'")
    directory = Path(directory).resolve()
    conf, token_dir = write_conf(directory)
    if label in token_labels(conf):
        raise HSMConfigError(f"a token labelled {label!r} already exists in {str(token_dir)!r}")
    pin_file = None
    if pin is None:
        pin = secrets.token_hex(16)
        pin_file = directory / f"{label}.pin"
        _write_secret(pin_file, pin)
    if so_pin is None:
        so_pin = secrets.token_hex(16)
    for what, value in (("PIN", pin), ("SO PIN", so_pin)):
        if not 4 <= len(value) <= 255:
            raise HSMConfigError(f"the {what} must be 4 to 255 characters")
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    proc = subprocess.run(
        [_util(), "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", so_pin],
        env=env, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        detail = detail.replace(pin, "<pin>").replace(so_pin, "<so-pin>")
        raise HSMError(f"softhsm2-util could not initialize token {label!r}: {detail[:300]}")
    return SoftHSMToken(directory, conf, token_dir, label, pin_file, module)


def _main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hsm.softhsm")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("init", help="create a token directory and initialize a token")
    p.add_argument("--dir", required=True, type=Path)
    p.add_argument("--label", required=True)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--pin-env", help="environment variable holding the user PIN")
    g.add_argument("--pin-file", type=Path, help="file holding the user PIN")
    p.add_argument("--so-pin-env", help="environment variable holding the SO PIN")
    p.add_argument("--module", default=DEFAULT_MODULE)
    c = sub.add_parser("conf", help="only write DIR/softhsm2.conf and DIR/tokens")
    c.add_argument("--dir", required=True, type=Path)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "conf":
            conf, token_dir = write_conf(args.dir)
            print(json.dumps({"conf": str(conf), "token_dir": str(token_dir)}))
            return 0
        pin = None
        if args.pin_env:
            pin = os.environ.get(args.pin_env) or None
            if pin is None:
                raise HSMConfigError(f"environment variable {args.pin_env!r} is not set")
        elif args.pin_file:
            pin = HSMConfig(token_label=args.label, pin_file=args.pin_file).read_pin().reveal()
        so_pin = os.environ.get(args.so_pin_env) if args.so_pin_env else None
        tok = init_token(args.dir, args.label, pin=pin, so_pin=so_pin, module=args.module)
    except HSMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({
        "conf": str(tok.conf),
        "token_dir": str(tok.token_dir),
        "label": tok.label,
        "pin_file": str(tok.pin_file or args.pin_file or ""),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
