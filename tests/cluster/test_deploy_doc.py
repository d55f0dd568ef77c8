"""docs/deploy.md cannot rot: its commands are the sections of docs/deploy-commands.sh, shown
verbatim in the doc (checked here), and run here on three "hosts" on this machine —
127.0.0.1, 127.0.0.2 and 127.0.0.3, each with its own directory, its own SoftHSM2 token and
its own port — from empty directories to a signature that OpenSSL verifies and an audit
export that `appliance audit verify` passes against the peers' anchors.

What the test does that the doc does not (named in the script's header): ``scp`` copies
locally (``node-N:/var/lib/appliance`` is host N's directory), ``systemctl enable --now
appliance`` starts the unit's ExecStart, and after ``init`` the test-only overrides below
(2048-bit Paillier, the prime pool seeded from the test-only prime file through ``[testing]
prime_file``, as LocalCluster does) are written into each node.toml. The sections marked
``@ manual`` (package installation, the example settings) are shown, not run.
"""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import signal
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import coincurve
import pytest

from appliance.config import write_toml
from appliance.fsmodes import write_private_file
from tests.cluster_fixtures import TEST_ONLY_PRIMES

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "deploy-commands.sh"
DOC = ROOT / "docs" / "deploy.md"
HEADER = re.compile(r"^# ---- section (?P<name>[a-z0-9-]+) @ (?P<where>node|workstation|manual|file)$")
MARKER = re.compile(r"^<!-- deploy-commands\.sh: (?P<name>[a-z0-9-]+) -->$")
ADDRESSES = ("127.0.0.1", "127.0.0.2", "127.0.0.3")


def sections() -> list[tuple[str, str, str]]:
    """(name, where, text) of every section of the script, in order."""
    out: list[tuple[str, str, list[str]]] = []
    for line in SCRIPT.read_text().splitlines():
        m = HEADER.match(line)
        if m:
            out.append((m["name"], m["where"], []))
        elif out:
            out[-1][2].append(line)
    return [(n, w, "\n".join(lines).strip("\n")) for n, w, lines in out]


def doc_blocks() -> dict[str, list[str]]:
    """Section name -> the fenced code blocks that follow its marker in docs/deploy.md."""
    lines = DOC.read_text().splitlines()
    out: dict[str, list[str]] = {}
    for i, line in enumerate(lines):
        m = MARKER.match(line)
        if m is None:
            continue
        assert lines[i + 1].startswith("```"), f"{m['name']}: no code block right after its marker"
        end = lines.index("```", i + 2)
        out.setdefault(m["name"], []).append("\n".join(lines[i + 2:end]))
    return out


def test_the_doc_shows_every_section_of_the_script_verbatim():
    blocks = doc_blocks()
    names = [n for n, _, _ in sections()]
    assert len(names) == len(set(names)), "section names repeat"
    assert sorted(blocks) == sorted(names), "the doc and the script have other sections"
    for name, _, text in sections():
        assert blocks[name] == [text], f"docs/deploy.md shows section {name} otherwise than the script"


# ---------------------------------------------------------------------------------------
# running it

SHIMS = r'''
set -euo pipefail
_host_path() {  # node-N:/var/lib/appliance/X is host N's STATE/X; anything else is local
  case "$1" in
    node-[0-9]:/var/lib/appliance/*) echo "$HOSTS/${1%%:*}/state/${1#*:/var/lib/appliance/}" ;;
    *:*) echo "scp stand-in: unknown remote $1" >&2; return 2 ;;
    *) echo "$1" ;;
  esac
}
scp() { cp "$(_host_path "$1")" "$(_host_path "$2")"; }
systemctl() {
  [ "$*" = "enable --now appliance" ] || { echo "systemctl stand-in: $*" >&2; return 2; }
  local cmd env
  cmd=$(sed -n 's/^ExecStart=//p' "$UNIT")
  env=$(sed -n 's/^Environment=//p' "$UNIT")
  cmd=${cmd//\/usr\/local\/bin\/appliance/appliance}
  cmd=${cmd//\/var\/lib\/appliance/$STATE}
  env=${env//\/opt\/hsm/$HSM_DIR}
  env $env $cmd < /dev/null > "$STATE/../serve.log" 2>&1 &
  echo $! >> "$PIDS"
}
'''


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def override_node(state: Path, index: int) -> None:
    """The test-only settings LocalCluster uses: 2048-bit Paillier, and the prime pool seeded
    from a disjoint slice of the test-only prime file."""
    data = json.loads(TEST_ONLY_PRIMES.read_text())
    part = {"warning": data["warning"],
            **{kind: {bits: v[index::3] for bits, v in data[kind].items()} for kind in ("safe", "blum")}}
    write_private_file(state / "test-only-primes.json", json.dumps(part))
    cfg = tomllib.loads((state / "node.toml").read_text())
    cfg["node"]["paillier_bits"] = 2048
    cfg["testing"] = {"prime_file": "test-only-primes.json"}
    write_toml(state / "node.toml", cfg)


def program(base: Path, ports: list[int]) -> str:
    """One bash program: the shims, then every section in order (node sections once per host,
    in a subshell with that host's settings; workstation sections in the main shell)."""
    out = [SHIMS]
    for name, where, text in sections():
        if where == "file":
            (base / name).write_text(text + "\n")
        if where == "node":
            for i in range(3):
                host = base / "hosts" / f"node-{i + 1}"
                hsm = host / "hsm"
                out.append(f"( cd {shlex.quote(str(host))}\n  NODE_ID=node-{i + 1} "
                           f"STATE={shlex.quote(str(host / 'state'))} HSM_DIR={shlex.quote(str(hsm))} "
                           f"ADDR={ADDRESSES[i]}:{ports[i]}\n"
                           f"  export SOFTHSM2_CONF=$HSM_DIR/softhsm2.conf\n{text}\n)")
                if name == "init":  # the test's own settings, before the node first starts
                    out.append(f'"$PYTHON" -c "from tests.cluster.test_deploy_doc import override_node; '
                               f'from pathlib import Path; override_node(Path(\'{host / "state"}\'), {i})"')
        elif where == "workstation":
            out.append(f"cd {shlex.quote(str(base / 'workstation'))}\n{text}")
    out.append('printf \'%s\\n\' "$PUB" "$DIGEST" "$DER" > result.txt')
    return "\n".join(out) + "\n"


def _stop(pids: Path) -> None:
    """SIGTERM to the nodes the systemctl stand-in started; wait for each to exit (a pidfd
    becomes readable when its process ends), SIGKILL after 15 s."""
    for pid in (int(p) for p in (pids.read_text().split() if pids.exists() else [])):
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            os.kill(pid, signal.SIGTERM)
            if not select.select([fd], [], [], 15.0)[0]:
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        finally:
            os.close(fd)


@pytest.mark.hsm
def test_the_documented_commands_take_three_hosts_to_a_verified_signature(tmp_path):
    ports = [_free_port(a) for a in ADDRESSES]
    for i in range(3):
        (tmp_path / "hosts" / f"node-{i + 1}").mkdir(parents=True)
    (tmp_path / "workstation").mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHON=sys.executable, HOSTS=str(tmp_path / "hosts"),
               UNIT=str(tmp_path / "unit"), PIDS=str(tmp_path / "pids"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               NODE1=f"{ADDRESSES[0]}:{ports[0]}", NODE2=f"{ADDRESSES[1]}:{ports[1]}",
               NODE3=f"{ADDRESSES[2]}:{ports[2]}")
    env.pop("SOFTHSM2_CONF", None)
    env.pop("APPLIANCE_URL", None)
    (tmp_path / "run.sh").write_text(program(tmp_path, ports))
    try:
        p = subprocess.run(["bash", str(tmp_path / "run.sh")], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=300)
    finally:
        _stop(tmp_path / "pids")
    logs = "".join((tmp_path / "hosts" / f"node-{i + 1}" / "serve.log").read_text()[-1500:]
                   for i in range(3) if (tmp_path / "hosts" / f"node-{i + 1}" / "serve.log").exists())
    assert p.returncode == 0, f"stdout:\n{p.stdout[-4000:]}\nstderr:\n{p.stderr[-4000:]}\nlogs:\n{logs}"
    # each host made its own token with its own SoftHSM2 configuration, and init used it
    for i in range(3):
        host = tmp_path / "hosts" / f"node-{i + 1}"
        hsm = tomllib.loads((host / "state" / "node.toml").read_text())["hsm"]
        assert hsm["token_label"] == f"node-{i + 1}" and hsm["pin_file"] == str(host / "hsm" / "hsm.pin")
        assert hsm["module"] == "/usr/lib/softhsm/libsofthsm2.so" and "softhsm_conf" not in hsm
        assert any((host / "hsm" / "tokens").iterdir())
    # OpenSSL's command line verified the signature, and `appliance audit verify` passed
    assert "Signature Verified Successfully" in p.stdout
    assert re.search(r"^OK", p.stdout, re.M), p.stdout[-3000:]
    pub, digest, der = (tmp_path / "workstation" / "result.txt").read_text().split()
    assert coincurve.PublicKey(bytes.fromhex(pub)).verify(bytes.fromhex(der), bytes.fromhex(digest), hasher=None)
    assert "appliance_sign_requests_completed_total" in p.stdout
