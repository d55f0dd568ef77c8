"""``LocalCluster``: a real appliance cluster on this machine, for tests and your own suites.

    from appliance.testing import LocalCluster

    async with LocalCluster(nodes=3, threshold=2, paillier_bits=2048,
                            prime_file="tests/data/test-only-primes.json") as cluster:
        admin = cluster.client("admin")
        key = await admin.create_key(threshold=2)
        c = cluster.client("initiator", node=1)
        req = await c.request_signature(key["key_id"], hashlib.sha256(b"hi").digest())
        sig = (await c.wait_signature(req["request_id"]))["signature"]

What it starts: ``nodes`` real node processes (``appliance serve``), each with its own SoftHSM2
token in its own directory (``cluster.data_dirs[i]``: node.toml, cluster.toml,
hsm/softhsm2.conf, hsm/tokens/, tls/, node.db, node.log), serving HTTPS with pinned mutual TLS
on loopback ports (``cluster.urls``). The cluster configuration has one user per role —
``initiator``, ``approver``, ``admin``, ``auditor`` (user id = role name) — each with a
freshly generated Ed25519 key; ``cluster.client(user, node=0)`` returns an
:class:`api.client.ApplianceClient` for that user talking to that node (closed with the
cluster).

Fast start: Paillier keys need safe primes, which take seconds each to find. Pass
``prime_file`` (a *test-only* prime file such as ``tests/data/test-only-primes.json``) and each
node's prime pool is seeded from a disjoint slice of it through its configuration
(``[testing] prime_file``); without it the nodes generate fresh primes in the background as
in production (``await cluster.wait_primes()`` waits for them). ``paillier_bits`` is 3072 by
default; 2048 is much faster for tests.

Metrics: ``await cluster.metrics(i)`` scrapes node ``i``'s ``/metrics`` as Prometheus would,
with its bearer token (``metrics_auth="bearer"``, the default; ``cluster.metrics_token(i)``), or
with a scraper certificate LocalCluster makes (``metrics_auth="mtls"``,
``cluster.scraper_dir``); ``metrics_auth="none"`` leaves ``/metrics`` open.

Other controls: ``stop_node(i)`` / ``start_node(i)`` (restart with the same state),
``kill_node(i)`` (SIGKILL), ``base_dir`` + ``keep=True`` to keep the state,
``round_timeout``, ``presign_pool`` (presignatures kept ready per signer set; 0 = off),
``node_extra`` (extra node.toml settings per node index, e.g. ``{"node": {...}}``).
Every client it hands out checks every answer against ``/openapi.json``
(:class:`api.conformance.ResponseContract`: a documented status, a body that fits its schema
with no undocumented field); ``check_responses=False`` turns that off.

Faults (test-only): ``faults={i: {"tamper": ["alter"]}}`` or ``cluster.configure_faults(i, ...)``
give node ``i`` a :class:`appliance.faults.FaultPlan` (slow peer, tampered frames, crash points,
a malicious coordinator, a read-only audit store); such a node is started through this module's
test-only entry point (``python -m appliance.testing serve --config ... --faults ...``), never
through a setting production code reads.

Policy: each node reads ``policy.toml`` (identical on every node), LocalCluster's default
policy (:meth:`LocalCluster.default_policy`): signing needs the initiator and one approver,
key changes one admin, raw digests allowed. ``users={"approver2": ["approver"]}`` adds users
(each with a fresh Ed25519 key, ``cluster.client("approver2")``); ``policy={...}`` merges
tables into the default policy, e.g. ``{"signing": {"transactions": {"network": "regtest"}}}``.
The flow a user follows::

    req = await cluster.client("initiator").request_signature(key_id, digest)   # pending
    await cluster.client("approver").approve(req["request_id"])
    done = await cluster.client("initiator").wait_signature(req["request_id"])

Separate hosts: ``hosts`` gives each node its own listen address (default 127.0.0.1) and
``launchers`` a command prefix per node, e.g. ``["ip", "netns", "exec", "ns1"]`` to run it in
its own network namespace (see tests/cluster/test_netns.py).
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any, Callable

import aiohttp

from api.auth import generate_user_key
from api.client import ApplianceClient
from api.conformance import ResponseContract
from api.app import serve
from appliance.config import write_toml
from appliance.faults import FaultPlan
from appliance.logs import configure as configure_logs
from appliance.fsmodes import make_private_dir, open_private_append, set_private_umask, write_private_file
from appliance.policy import Policy, default_policy
from appliance.tls import client_context, make_node_certificate, peer_client_context, write_private

ROLE_USERS = ("initiator", "approver", "admin", "auditor")


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux; the IANA range elsewhere)."""
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 49152, 65535


def _free_ports(n: int) -> list[int]:
    """``n`` listening ports for the nodes, chosen below the kernel's ephemeral range and
    checked bindable now. The nodes bind them seconds later (after their init): a port from the
    ephemeral range (what ``bind(0)`` hands out) can meanwhile become the local port of any
    outgoing connection on the machine, and the node then fails with EADDRINUSE."""
    lo, _ = _ephemeral_range()
    pick = random.SystemRandom()
    ports: list[int] = []
    while len(ports) < n:
        port = pick.randrange(10000, max(lo, 10001))
        if port in ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    return ports


class LocalCluster:
    def __init__(self, nodes: int = 3, threshold: int = 2, *, paillier_bits: int = 3072,
                 prime_file: str | Path | None = None, base_dir: str | Path | None = None,
                 keep: bool = False, round_timeout: float = 30.0, job_timeout: float = 300.0,
                 presign_pool: int = 0, metrics_auth: str = "bearer", metrics_open: bool | None = None,
                 startup_timeout: float = 60.0,
                 node_extra: dict[int, dict] | None = None, python: str | None = None,
                 log_level: str = "info", hosts: list[str] | None = None,
                 launchers: list[list[str]] | None = None, policy: dict | None = None,
                 users: dict[str, list[str]] | None = None,
                 faults: dict[int, dict] | None = None, test_hooks: bool = False,
                 check_responses: bool = True) -> None:
        if nodes < 2 or not 1 <= threshold <= nodes:
            raise ValueError("need nodes >= 2 and 1 <= threshold <= nodes")
        self.n = nodes
        self.threshold = threshold
        self.paillier_bits = paillier_bits
        self.prime_file = Path(prime_file).resolve() if prime_file else None
        self.keep = keep
        self._base_given = base_dir is not None
        self.base_dir = Path(base_dir).resolve() if base_dir else None
        self.round_timeout = round_timeout
        self.job_timeout = job_timeout
        self.presign_pool = presign_pool
        if metrics_auth not in ("bearer", "mtls", "none"):
            raise ValueError('metrics_auth is "bearer", "mtls" or "none"')
        self.metrics_auth = "none" if metrics_open else metrics_auth  # metrics_open=True: older spelling
        self.startup_timeout = startup_timeout
        self.node_extra = node_extra or {}
        self.faults = faults or {}
        self.test_hooks = test_hooks
        # every client checks every answer against /openapi.json (api/conformance.py)
        self.contract = ResponseContract() if check_responses else None
        self.policy_overrides = policy or {}
        self.extra_users = dict(users or {})
        self.python = python or sys.executable
        self.log_level = log_level
        self.hosts = list(hosts) if hosts else ["127.0.0.1"] * nodes
        self.launchers = [list(x) for x in launchers] if launchers else [[] for _ in range(nodes)]
        if len(self.hosts) != nodes or len(self.launchers) != nodes:
            raise ValueError("hosts and launchers need one entry per node")
        self.node_ids = [f"node-{i + 1}" for i in range(nodes)]
        self.urls: list[str] = []
        self.data_dirs: list[Path] = []
        self.user_keys: dict[str, bytes] = {}
        self.procs: list[subprocess.Popen | None] = []
        self._clients: list[Any] = []
        self._logs: list[Any] = []

    # -- context manager ------------------------------------------------------------------

    async def __aenter__(self) -> "LocalCluster":
        atexit.register(self._kill_all)  # never leave node processes behind
        try:
            await self.setup()
            await asyncio.gather(*(self.start_node(i) for i in range(self.n)))
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # -- building -------------------------------------------------------------------------

    async def setup(self) -> None:
        if self.base_dir is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix="appliance-cluster-"))
        make_private_dir(self.base_dir)  # node state and user keys: this user's only
        ports = _free_ports(self.n)
        self.data_dirs = [self.base_dir / nid for nid in self.node_ids]
        self.urls = [f"https://{h}:{p}" for h, p in zip(self.hosts, ports)]
        slices = self._prime_slices()
        procs = []
        for i, nid in enumerate(self.node_ids):
            extra: dict[str, dict] = {"node": {"round_timeout_s": self.round_timeout,
                                               "job_timeout_s": self.job_timeout,
                                               "presign_pool": self.presign_pool,
                                               "paillier_bits": self.paillier_bits},
                                      "metrics": self._metrics_settings(),
                                      # every test client shares the loopback address
                                      "http": {"max_connections_per_client": 1024}}
            for section, values in self.node_extra.get(i, {}).items():
                extra.setdefault(section, {}).update(values)
            d = self.data_dirs[i]
            make_private_dir(d)
            if slices is not None:
                write_private_file(d / "test-only-primes.json", json.dumps(slices[i]))
                extra.setdefault("testing", {})["prime_file"] = "test-only-primes.json"
            code = ("import json,sys; from pathlib import Path; from appliance.cli import init_node; "
                    "from appliance.init_hsm import SoftHSMSetup; "
                    "a=json.loads(sys.argv[1]); init_node(Path(a['dir']), a['id'], listen=a['listen'], "
                    "hsm=SoftHSMSetup(Path(a['dir']) / 'hsm'), "
                    "url=a['url'], paillier_bits=a['bits'], extra=a['extra'])")
            arg = json.dumps({"dir": str(d), "id": nid, "listen": f"{self.hosts[i]}:{ports[i]}", "url": self.urls[i],
                              "bits": self.paillier_bits, "extra": extra})
            procs.append(await asyncio.create_subprocess_exec(
                self.python, "-c", code, arg, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env=self._env()))
        for i, p in enumerate(procs):
            out, err = await p.communicate()
            if p.returncode != 0:
                raise RuntimeError(f"init of {self.node_ids[i]} failed: {err.decode()[-2000:]}")
        infos = [json.loads((d / "node-info.json").read_text()) for d in self.data_dirs]
        users = []
        roles = {role: [role] for role in ROLE_USERS}
        roles.update(self.extra_users)
        for uid, user_roles in roles.items():
            priv, pub = generate_user_key("ed25519")
            self.user_keys[uid] = priv
            users.append({"id": uid, "roles": list(user_roles), "public_key": pub.decode()})
        cluster = {"cluster": {"id": "local"},
                   "nodes": [dict(info, index=i) for i, info in enumerate(infos)], "users": users}
        policy_toml = self.default_policy(users).to_toml()
        for d in self.data_dirs:
            write_toml(d / "cluster.toml", cluster)
            write_private_file(d / "policy.toml", policy_toml)
            node_toml = tomllib.loads((d / "node.toml").read_text())
            node_toml["policy"] = "policy.toml"
            write_toml(d / "node.toml", node_toml)
        keys_dir = self.base_dir / "users"
        make_private_dir(keys_dir)
        for role, priv in self.user_keys.items():
            write_private(keys_dir / f"{role}.pem", priv)
        for i, plan in self.faults.items():
            self.configure_faults(i, **plan)
        self.procs = [None] * self.n

    @property
    def scraper_dir(self) -> Path:
        """The Prometheus scraper's TLS certificate and key (``metrics_auth="mtls"``)."""
        return self.base_dir / "scraper"

    def _metrics_settings(self) -> dict:
        if self.metrics_auth != "mtls":
            return {"auth": self.metrics_auth}

        if not (self.scraper_dir / "scraper.crt").exists():
            cert, key = make_node_certificate("prometheus-scraper", ["localhost"])
            make_private_dir(self.scraper_dir)
            write_private_file(self.scraper_dir / "scraper.crt", cert)
            write_private(self.scraper_dir / "scraper.key", key)
        return {"auth": "mtls", "client_certs": [str(self.scraper_dir / "scraper.crt")]}

    def metrics_token(self, i: int) -> str:
        """Node ``i``'s metrics bearer token (``[metrics] bearer_token_file``)."""
        return (self.data_dirs[i] / "metrics.token").read_text().strip()

    async def metrics(self, i: int = 0) -> str:
        """Scrape node ``i``'s ``/metrics`` as a Prometheus scraper would: with the node's
        bearer token, or the scraper's client certificate (``metrics_auth="mtls"``)."""

        ctx = self._server_ctx(i)
        headers = {}
        if self.metrics_auth == "mtls":
            ctx.load_cert_chain(self.scraper_dir / "scraper.crt", self.scraper_dir / "scraper.key")
        elif self.metrics_auth == "bearer":
            headers["Authorization"] = f"Bearer {self.metrics_token(i)}"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
            async with s.get(self.urls[i] + "/metrics", headers=headers) as r:
                text = await r.text()
                if r.status != 200:
                    raise RuntimeError(f"{self.node_ids[i]} /metrics: {r.status} {text[:200]}")
                return text

    def default_policy(self, users: list[dict]):
        """LocalCluster's policy: :func:`appliance.policy.default_policy` (signing needs the
        initiator and one approver, key changes one admin, raw digests allowed) over the
        cluster's users, with ``policy=`` overrides merged in (tables merged key by key)."""

        base = default_policy("local", {u["id"]: u["public_key"] for u in users},
                              roles={u["id"]: u["roles"] for u in users}).canonical()

        def merge(a: dict, b: dict) -> dict:
            out = dict(a)
            for k, v in b.items():
                out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
            return out

        return Policy.from_mapping(merge(base, self.policy_overrides))

    def _prime_slices(self) -> list[dict] | None:
        if self.prime_file is None:
            return None
        data = json.loads(self.prime_file.read_text())
        out = []
        for i in range(self.n):
            sl: dict[str, Any] = {"warning": data.get("warning", "TEST ONLY")}
            for kind in ("safe", "blum"):
                sl[kind] = {bits: v[i :: self.n] for bits, v in data.get(kind, {}).items()}
            out.append(sl)
        return out

    def _env(self) -> dict:
        env = dict(os.environ)
        root = Path(__file__).resolve().parent.parent
        # this repo's packages, and the client library the node imports (client/appliance_client)
        paths = [str(root)] + ([str(root / "client")] if (root / "client" / "appliance_client").is_dir() else [])
        env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env.pop("SOFTHSM2_CONF", None)
        return env

    # -- test hooks (test_hooks=True): a clock the test moves, events it waits on ---------------

    def set_clock_offset(self, seconds: float) -> None:
        """Every node's policy clock runs ``seconds`` ahead of the wall clock from now on."""
        for d in self.data_dirs:
            write_private_file(d / CLOCK_FILE, json.dumps({"offset_s": float(seconds)}))

    def events_mark(self, i: int) -> int:
        """Where node ``i``'s event log ends now (pass it to :meth:`wait_event`)."""
        path = self.data_dirs[i] / EVENTS_FILE
        return path.stat().st_size if path.exists() else 0

    async def wait_event(self, i: int, event: str, *, since: int = 0, timeout: float = 60.0,
                         **match: Any) -> dict:
        """The first event ``event`` node ``i`` emitted after ``since`` whose fields include
        ``match`` (e.g. ``protocol="presign", round=2``); TimeoutError after ``timeout``."""
        path = self.data_dirs[i] / EVENTS_FILE
        deadline = time.monotonic() + timeout
        pos = since
        while True:
            if path.exists():
                with open(path, "rb") as f:
                    f.seek(pos)
                    chunk = f.read()
                complete = chunk[: chunk.rfind(b"\n") + 1]
                pos += len(complete)
                for line in complete.splitlines():
                    e = json.loads(line)
                    if e.get("event") == event and all(e.get(k) == v for k, v in match.items()):
                        return e
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.node_ids[i]} emitted no {event} {match}")
            await asyncio.sleep(0.02)  # polling the node's event log, not standing in for it

    def configure_faults(self, i: int, **values: Any) -> None:
        """Node ``i``'s test-only fault plan (:class:`appliance.faults.FaultPlan` fields), from
        its next start; no values: none. Written to ``faults.json`` in its data directory and
        handed to the node by this module's test-only entry point, never by its config."""
        FaultPlan.from_mapping(values)  # refuse unknown keys here, not in the node
        path = self.data_dirs[i] / FAULTS_FILE
        if values:
            write_private_file(path, json.dumps(values, default=sorted))
        elif path.exists():
            path.unlink()

    def configure_node(self, i: int, section: str, **values: Any) -> None:
        """Change settings in node ``i``'s node.toml (effective at its next start)."""

        path = self.data_dirs[i] / "node.toml"
        m = tomllib.loads(path.read_text())
        m.setdefault(section, {}).update(values)
        write_toml(path, m)

    # -- node processes -------------------------------------------------------------------

    async def start_node(self, i: int, wait: str = "ready") -> None:
        """Start node ``i``; ``wait``: until ``/readyz`` says ready, or (``"health"``) only until
        the process answers (a node that is up but not ready, e.g. its audit store refuses)."""
        if self.procs[i] is not None and self.procs[i].poll() is None:
            return
        d = self.data_dirs[i]
        logf = open_private_append(d / "node.log")
        self._logs.append(logf)
        if self.test_hooks or (d / FAULTS_FILE).exists():  # the test-only entry point
            args = self.launchers[i] + [self.python, "-m", "appliance.testing", "serve",
                                        "--config", str(d / "node.toml")]
            if (d / FAULTS_FILE).exists():
                args += ["--faults", str(d / FAULTS_FILE)]
            if self.test_hooks:
                args += ["--hooks", str(d)]
        else:
            args = self.launchers[i] + [self.python, "-m", "appliance.cli"]
            if self.log_level == "info":
                args.append("-v")
            args += ["serve", "--config", str(d / "node.toml")]
        self.procs[i] = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT, env=self._env(),
                                         cwd=str(d), start_new_session=True)
        await self.wait_ready(i, path="/readyz" if wait == "ready" else "/healthz")

    async def wait_ready(self, i: int, timeout: float | None = None, path: str = "/readyz") -> None:
        deadline = time.monotonic() + (timeout or self.startup_timeout)
        ctx = self._server_ctx(i)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
            while True:
                proc = self.procs[i]
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(f"{self.node_ids[i]} exited with {proc.returncode}; see "
                                       f"{self.data_dirs[i] / 'node.log'}:\n{self.log_tail(i)}")
                try:
                    async with s.get(self.urls[i] + path, timeout=aiohttp.ClientTimeout(total=2)) as r:
                        if r.status == 200:
                            return
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.node_ids[i]} not ready; log:\n{self.log_tail(i)}")
                await asyncio.sleep(0.1)

    def log_tail(self, i: int, n: int = 4000) -> str:
        try:
            return (self.data_dirs[i] / "node.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    async def stop_node(self, i: int, timeout: float = 10.0) -> None:
        """SIGTERM (clean shutdown) and wait."""
        p = self.procs[i]
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while p.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if p.poll() is None:
            p.kill()
            p.wait()

    async def kill_node(self, i: int) -> None:
        p = self.procs[i]
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()

    def _kill_all(self) -> None:
        for p in self.procs:
            if p is not None and p.poll() is None:
                p.kill()

    def running(self, i: int) -> bool:
        p = self.procs[i] if i < len(self.procs) else None
        return p is not None and p.poll() is None

    async def close(self) -> None:
        for c in self._clients:
            try:
                await c.close()
            except Exception:
                pass
        self._clients.clear()
        await asyncio.gather(*(self.stop_node(i) for i in range(len(self.procs))), return_exceptions=True)

        atexit.unregister(self._kill_all)
        for f in self._logs:
            f.close()
        self._logs.clear()
        if self.base_dir is not None and not self.keep and not self._base_given:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    # -- clients and helpers --------------------------------------------------------------

    def server_cert(self, i: int) -> str:
        return (self.data_dirs[i] / "tls" / "node.crt").read_text()

    def _server_ctx(self, i: int) -> ssl.SSLContext:
        return client_context(self.server_cert(i))

    def client(self, user: str = "admin", node: int = 0):
        """An ApplianceClient for ``user`` (a role name) talking to node ``node``."""

        if user not in self.user_keys:
            raise KeyError(f"no user {user!r}; users: {', '.join(self.user_keys)}")
        c = ApplianceClient(self.urls[node], user, self.user_keys[user], server_cert=self.server_cert(node),
                            observe=self.contract.check if self.contract is not None else None)
        self._clients.append(c)
        return c

    def peer_ssl_context(self, as_node: int, to_node: int) -> ssl.SSLContext:
        """A TLS client context presenting ``as_node``'s pinned certificate to ``to_node``."""

        d = self.data_dirs[as_node]
        return peer_client_context(d / "tls" / "node.crt", d / "tls" / "node.key", self.server_cert(to_node))

    async def replace_node(self, i: int, *, start: bool = True) -> dict:
        """Disaster: node ``i`` loses its token and database entirely. Its process is killed,
        its directory wiped, and a new node is made in its place with ``appliance init`` under
        the same node id, address and settings (a fresh SoftHSM2 token: new identity, transport
        and TLS keys). ``cluster.toml`` is updated on every node with the new node info and the
        other running nodes are restarted to load it; node ``i`` starts unless ``start=False``
        (e.g. to restore a backup into it first). Returns the new node info."""

        d = self.data_dirs[i]
        old = tomllib.loads((d / "node.toml").read_text())
        keep = {name: (d / name).read_bytes() for name in ("policy.toml", "test-only-primes.json")
                if (d / name).exists()}
        cluster_map = tomllib.loads((d / "cluster.toml").read_text())
        await self.kill_node(i)
        shutil.rmtree(d)
        make_private_dir(d)
        node = {k: v for k, v in old.get("node", {}).items() if k not in ("id", "listen", "db")}
        extra = {k: v for k, v in old.items() if isinstance(v, dict) and k not in ("tls", "hsm", "node")}
        extra["node"] = node
        code = ("import json,sys; from pathlib import Path; from appliance.cli import init_node; "
                    "from appliance.init_hsm import SoftHSMSetup; "
                "a=json.loads(sys.argv[1]); init_node(Path(a['dir']), a['id'], listen=a['listen'], "
                    "hsm=SoftHSMSetup(Path(a['dir']) / 'hsm'), "
                "url=a['url'], paillier_bits=a['bits'], extra=a['extra'])")
        arg = json.dumps({"dir": str(d), "id": self.node_ids[i], "listen": old["node"]["listen"],
                          "url": self.urls[i], "bits": self.paillier_bits, "extra": extra})
        p = await asyncio.create_subprocess_exec(self.python, "-c", code, arg, stdout=asyncio.subprocess.PIPE,
                                                 stderr=asyncio.subprocess.PIPE, env=self._env())
        _, err = await p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"init of {self.node_ids[i]} failed: {err.decode()[-2000:]}")
        for name, data in keep.items():
            write_private_file(d / name, data)
        new_toml = tomllib.loads((d / "node.toml").read_text())
        new_toml.update({k: v for k, v in old.items() if not isinstance(v, dict) and k != "cluster"})
        write_toml(d / "node.toml", new_toml)
        info = json.loads((d / "node-info.json").read_text())
        cluster_map["nodes"] = [dict(info, index=i) if n["index"] == i else n for n in cluster_map["nodes"]]
        for dd in self.data_dirs:
            write_toml(dd / "cluster.toml", cluster_map)
        others = [j for j in range(self.n) if j != i and self.running(j)]
        await asyncio.gather(*(self.stop_node(j) for j in others))
        await asyncio.gather(*(self.start_node(j) for j in others))
        if start:
            await self.start_node(i)
        return info

    async def wait_primes(self, timeout: float = 600.0, *,
                          on_progress: Callable[[dict], None] | None = None) -> None:
        """Wait until every node has the primes for one aux-info run in its pool (two safe
        primes each, as its ``/readyz`` counts them). ``on_progress``: called with a progress
        report (``phase`` ``primes``, ``done`` of ``total`` primes ready over all nodes, ``detail``
        per node) each time the counts change."""

        need = 2
        deadline = time.monotonic() + timeout
        sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._server_ctx(i)))
                    for i in range(self.n)]
        ready = [0] * self.n
        last: tuple | None = None
        try:
            while True:
                for i in range(self.n):
                    if ready[i] >= need:
                        continue
                    async with sessions[i].get(self.urls[i] + "/readyz") as r:
                        pr = (await r.json()).get("primes", {})
                    ready[i] = min(need, pr.get("safe", 0), pr.get("blum", 0))
                if on_progress is not None and tuple(ready) != last:
                    last = tuple(ready)
                    on_progress({"phase": "primes", "done": sum(ready), "total": need * self.n, "completed": [],
                                 "detail": ", ".join(f"{nid} {c}/{need}" for nid, c in zip(self.node_ids, ready))})
                if all(c >= need for c in ready):
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError("prime pools not filled in time")
                await asyncio.sleep(0.25)  # the pools fill in the nodes' own time: poll /readyz
        finally:
            for s in sessions:
                await s.close()


FAULTS_FILE = "faults.json"  # a node's test-only fault plan (LocalCluster.configure_faults)
CLOCK_FILE = "test-clock.json"  # the offset of its test clock (LocalCluster.set_clock_offset)
EVENTS_FILE = "test-events.jsonl"  # what it emitted (LocalCluster.wait_event)


class OffsetClock:
    """Test-only: the wall clock plus an offset read from a file when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: int | None = None
        self._offset = 0.0

    def now(self) -> float:
        try:
            stamp = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            self._offset = json.loads(self.path.read_text())["offset_s"] if stamp is not None else 0.0
            self._stamp = stamp
        return time.time() + self._offset


class FileEvents:
    """Test-only: each event a JSON line, written at once."""

    def __init__(self, path: Path) -> None:
        self._f = open_private_append(path)

    def emit(self, event: str, **fields: Any) -> None:
        self._f.write((json.dumps({"event": event, **fields}) + "\n").encode())
        self._f.flush()


def main(argv: list[str] | None = None) -> int:
    """The test-only entry point: ``python -m appliance.testing serve --config node.toml
    --faults faults.json`` serves a node built with that fault plan (what ``appliance serve``
    does, with a FaultPlan no configuration file can give)."""
    import argparse
    import logging


    ap = argparse.ArgumentParser(prog="python -m appliance.testing")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("serve", help="serve a node with a test-only fault plan")
    p.add_argument("--config", required=True)
    p.add_argument("--faults", help="a FaultPlan as JSON")
    p.add_argument("--hooks", help="a directory: the test clock's offset file and the event log")
    p.add_argument("--ready-file")
    args = ap.parse_args(argv)
    set_private_umask()
    configure_logs(level=logging.INFO)
    plan = FaultPlan.from_mapping(json.loads(Path(args.faults).read_text())) if args.faults else FaultPlan()
    hooks: dict[str, Any] = {}
    if args.hooks:
        hooks = {"clock": OffsetClock(Path(args.hooks) / CLOCK_FILE),
                 "events": FileEvents(Path(args.hooks) / EVENTS_FILE)}
    logging.getLogger("appliance.testing").warning("TEST-ONLY node: fault plan %s, hooks %s", plan, sorted(hooks))
    asyncio.run(serve(args.config, ready_file=args.ready_file, faults=plan, **hooks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
