"""Every port (appliance/ports.py) is implemented by its production adapter and by its test fake,
member for member, with compatible signatures: a port that gains a method its fake or its
adapter lacks fails here, before an in-process test runs against a fake that drifted."""

from __future__ import annotations

import inspect
import typing

import pytest

from appliance import ports
from appliance.audit import AuditLog
from appliance.jobs.progress import ProgressBoard
from appliance.metered_hsm import MeteredHSM
from appliance.runtime import HSMSigner
from appliance.storage import NodeStore, Store
from appliance.transport import PeerClient
from appliance.tss.protocol import SoftwareSigner
from tests.node import fakes

# port -> (production adapter, test fake)
IMPLEMENTATIONS: dict[type, tuple[type, type]] = {
    ports.Clock: (ports.SystemClock, fakes.FakeClock),
    ports.EventSink: (ports.NoEvents, fakes.FakeEvents),
    ports.ProgressSink: (ProgressBoard, fakes.FakeProgress),
    ports.Late: (ports.Opened, ports.Opened),
    ports.Sealer: (MeteredHSM, fakes.FakeSealer),
    ports.IdentitySigner: (HSMSigner, SoftwareSigner),
    ports.PeerLink: (PeerClient, fakes.FakePeers),
    ports.Transactions: (NodeStore, fakes.FakeStore),
    ports.AuditSink: (AuditLog, fakes.FakeAudit),
    ports.CheckpointLog: (AuditLog, fakes.FakeAudit),
    ports.SignRequestStore: (NodeStore, fakes.FakeStore),
    ports.StatementStore: (NodeStore, fakes.FakeStore),
    ports.KeyStore: (NodeStore, fakes.FakeKeys),
    ports.KeyChangeStore: (NodeStore, fakes.FakeKeyChanges),
    ports.OperationStore: (NodeStore, fakes.FakeOperations),
    ports.PresignatureStore: (NodeStore, fakes.FakePresignatures),
    ports.FrostNonceStore: (NodeStore, Store),  # the in-process tests use the real store
    ports.PrimeStore: (NodeStore, fakes.FakePrimes),
    ports.AuxStore: (NodeStore, fakes.FakeAux),
    ports.PolicyUpdateStore: (NodeStore, fakes.FakePolicyUpdates),
    ports.CertUpdateStore: (NodeStore, fakes.FakeCertUpdates),
    ports.ReplayStore: (NodeStore, fakes.FakeReplay),
}


def port_members(port: type) -> dict[str, object]:
    """The members a port declares (its own and its bases', not Protocol's machinery)."""
    return {name: getattr(port, name) for name in typing_protocol_attrs(port)}


def typing_protocol_attrs(port: type) -> set[str]:
    attrs = getattr(port, "__protocol_attrs__", None)  # Python 3.12+
    if attrs is None:
        attrs = typing._get_protocol_attrs(port)  # type: ignore[attr-defined]  (3.11)
    return set(attrs)


def incompatible(port_fn, impl_fn) -> str | None:
    """Why ``impl_fn`` cannot stand in for ``port_fn`` (None if it can): every parameter of
    the port is accepted (same name and kind, a default where the port has one), the
    implementation needs nothing more, and both are coroutines or neither."""
    if inspect.iscoroutinefunction(port_fn) != inspect.iscoroutinefunction(impl_fn):
        return "async in one, not in the other"
    want = list(inspect.signature(port_fn).parameters.values())[1:]  # without self
    have = {h.name: h for h in list(inspect.signature(impl_fn).parameters.values())[1:]}
    varkw = any(p.kind is p.VAR_KEYWORD for p in have.values())
    for p in want:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            if not any(h.kind is p.kind for h in have.values()):
                return f"no {p}"
            continue
        h = have.get(p.name)
        if h is None:
            if p.kind is p.KEYWORD_ONLY and varkw:
                continue
            return f"no parameter {p.name!r}"
        if h.kind != p.kind and not (h.kind is h.POSITIONAL_OR_KEYWORD
                                     and p.kind in (p.POSITIONAL_ONLY, p.KEYWORD_ONLY)):
            return f"{p.name!r} is {h.kind.description}, the port has {p.kind.description}"
        if p.default is not p.empty and h.default is h.empty:
            return f"{p.name!r} has no default"
    declared = {p.name for p in want}
    extra = [h.name for h in have.values() if h.name not in declared and h.default is h.empty
             and h.kind not in (h.VAR_POSITIONAL, h.VAR_KEYWORD)]
    if extra:
        return f"needs {extra} the port does not give"
    return None


def check(port: type, impl: type) -> list[str]:
    problems = []
    for name, member in sorted(port_members(port).items()):
        if isinstance(member, property):
            if not hasattr(impl, name) and name not in getattr(impl, "__annotations__", {}) \
                    and name not in _instance_attrs(impl):
                problems.append(f"{impl.__name__} has no {name}")
            continue
        got = inspect.getattr_static(impl, name, None)
        if got is None or not callable(getattr(impl, name, None)):
            problems.append(f"{impl.__name__} has no method {name}")
            continue
        why = incompatible(member, getattr(impl, name))
        if why:
            problems.append(f"{impl.__name__}.{name}: {why}")
    return problems


def _instance_attrs(impl: type) -> set[str]:
    """Names assigned as ``self.NAME`` in ``__init__`` (an attribute stands in for a property)."""
    try:
        src = inspect.getsource(impl.__init__)
    except (OSError, TypeError):
        return set()
    return {line.split("self.", 1)[1].split("=")[0].split(":")[0].strip()
            for line in src.splitlines() if line.strip().startswith("self.") and "=" in line}


def test_every_port_is_listed():
    declared = {obj for obj in vars(ports).values()
                if isinstance(obj, type) and getattr(obj, "_is_protocol", False)
                and obj.__module__ == ports.__name__}
    assert declared == set(IMPLEMENTATIONS)
    assert set(ports.STORE_PORTS) <= declared


@pytest.mark.parametrize("port", list(IMPLEMENTATIONS), ids=lambda p: p.__name__)
def test_the_production_adapter_and_the_fake_implement_the_port(port):
    adapter, fake = IMPLEMENTATIONS[port]
    assert port_members(port), f"{port.__name__} declares nothing"
    assert check(port, adapter) == []
    assert check(port, fake) == []


def test_a_member_the_fake_lacks_or_takes_differently_is_found():
    class Port(typing.Protocol):
        def get(self, key: str, *, fresh: bool = False) -> int: ...

        async def put(self, key: str) -> None: ...

    class Lacking:
        def get(self, key: str, *, fresh: bool = False) -> int:
            return 0

    class Different:
        def get(self, name: str, fresh: bool) -> int:
            return 0

        def put(self, key: str) -> None:
            return None

    assert check(Port, Lacking) == ["Lacking has no method put"]
    assert check(Port, Different) == ["Different.get: no parameter 'key'",
                                      "Different.put: async in one, not in the other"]
