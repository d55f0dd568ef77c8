"""The policy's checks every party makes by itself before it joins a job a peer coordinates:
the job's policy hash is its own; the signed request and each approval (signatures, roles,
bindings, expiry, rate limit, path, hours) with :func:`appliance.policy.authorize`; that it has
not taken part in this request before; and that the job is the one the request names (a key
change's parameters, a sign job's payload and its reservation on a quorum of holders).
Every refusal is audited with its reason code and counted."""

from __future__ import annotations

import functools
import time
from typing import Any, Callable, NamedTuple

from appliance.canonical import CanonicalError
from appliance.errors import PolicyDenied, ServiceError
from appliance.job_authority import JOB_AUTHORITY
from appliance.keys.shares import refuse_unusable
from appliance.jobs.model import JobFailed
from appliance.key_import import ImportBundleError, parse_bundle, request_params
from appliance.passkey_counters import check_counters, describe
from appliance.policy import (DEFAULT_SCHEME, KEY_ACTIONS, LIFECYCLE_ACTIONS, SIGN, Approval, PolicyError, SignedRequest,
                              authorize, payload_hash)
from appliance.policy.evaluation import LATER
from appliance.ports import KeyStore, Late, ReplayStore
from appliance.recorder import Recorder
from appliance.request_use import RequestUse, RequestUseRefused
from appliance.runtime import Runtime


class CheckedRequest(NamedTuple):
    """A sign job's request, checked: the kind goes on to decode its payload (and checks each
    decision's summary and network against that decode)."""
    request: SignedRequest
    refuse: Callable[..., ServiceError]  # audits a refusal of this job, returns the error
    digest: Any  # the request's digest or payload hash (what the audit entries name)
    passkeys: str = ""  # the passkey approvals checked, for the join entry (appliance.passkey_counters.describe)
    approvals: tuple[Approval, ...] = ()  # the job's decisions (parsed and checked but for what they bind of the summary)


class JobAuthorizer:
    def __init__(self, rt: Runtime, recorder: Recorder, request_use: RequestUse,
                 rate_usage: Callable[..., int], on_policy_mismatch: Callable[[], None], *,
                 key_store: Late[KeyStore], replay: Late[ReplayStore]) -> None:
        self.rt = rt
        self.key_store = key_store
        self.replay = replay
        self.recorder = recorder
        self.request_use = request_use
        self.rate_usage = rate_usage
        self.on_policy_mismatch = on_policy_mismatch  # catch up with the peers' policy

    def authorize(self, spec: dict, from_index: int) -> CheckedRequest | None:
        """Everything this node checks before it joins a job a peer coordinates; for a sign job
        the checked request (the kind decodes it), else None. Raises ServiceError (audited)."""
        rt = self.rt
        coord = rt.peers[from_index].id
        kind = spec["kind"]
        key_id = spec.get("key_id")
        job_id = str(spec["job_id"])
        pol = rt.policy

        def refuse(error: ServiceError, digest: Any = None, note: str = "") -> ServiceError:
            return self.recorder.refuse(error, actor=coord, action=f"{kind}_job_refused",
                                        key_id=key_id if isinstance(key_id, str) else None,
                                        subject=job_id, digest=digest, note=note)

        if spec.get("policy_hash") != pol.hash:
            self.on_policy_mismatch()
            raise refuse(PolicyDenied("policy_mismatch", "the job was opened under another policy"))
        if JOB_AUTHORITY[kind] == "coordinator":
            return None  # presign: the coordinator's signature (checked) authorizes it
        now = rt.clock.now()
        try:
            sr = SignedRequest.from_json(spec.get("request"))
        except (PolicyError, CanonicalError):
            raise refuse(PolicyDenied("bad_request", "the job does not carry a well-formed signed request")) from None
        r = sr.request
        dig = r.digest or r.payload_hash
        if spec.get("request_id") != sr.request_id:
            raise refuse(PolicyDenied("request_mismatch", "the job names another request"), dig)
        if self.replay().request_used(sr.request_id):
            raise refuse(ServiceError("request_already_signed", "this node already took part in this "
                                      "request"), dig)
        approvals = spec.get("approvals")
        if not isinstance(approvals, list):
            raise refuse(PolicyDenied("bad_request", "the job carries no approvals list"), dig)
        if kind == SIGN:
            usage = functools.partial(self.rate_usage, besides=sr.request_id)  # reserved already
            t0 = time.perf_counter()
            decision = authorize(pol, sr, approvals, now=now, usage=usage, action=SIGN,
                                 key_id=key_id, digest=spec.get("digest") if r.digest else None,
                                 derivation_path=spec.get("derivation_path"),
                                 shown=LATER)  # checked against this node's decode (sign_job.admit)
            rt.metrics.observe_stage("policy", time.perf_counter() - t0)
        else:
            decision = authorize(pol, sr, approvals, now=now, action=kind,
                                 key_id=None if kind in ("keygen", "import") else key_id)
        passkeys = self._passkey_approvals(approvals)
        if not decision.allowed:
            raise refuse(PolicyDenied(decision.reason or "denied", decision.message), dig,
                         describe(pol, passkeys))
        try:  # each passkey assertion's sign counter, against what this node accepted before
            check_counters(self.replay, pol, passkeys, in_order=False)
        except PolicyDenied as exc:
            raise refuse(exc, dig, describe(pol, passkeys)) from None
        if kind in KEY_ACTIONS:
            problem = self._key_job_params_problem(spec, r.params or {})
            if problem:
                raise refuse(PolicyDenied("request_mismatch", problem), dig)
            return None
        row = self.key_store().get_key(key_id) if isinstance(key_id, str) else None
        try:
            refuse_unusable(row, "unknown_key", "this node does not hold that key")
        except ServiceError as exc:
            raise refuse(exc, dig) from None
        try:  # the request is reserved for this signer set on a quorum of holders, here too
            self.request_use.check_job(spec, row)
        except RequestUseRefused as exc:
            raise refuse(exc, dig) from None
        # sign: what does this node itself read in the request?
        if r.payload_type is not None:
            try:
                ph = payload_hash(r.payload_type, spec.get("payload"))
            except PolicyError:
                ph = None
            if spec.get("payload_type") != r.payload_type or ph != r.payload_hash:
                raise refuse(PolicyDenied("request_mismatch", "the job's payload is not the signed "
                                          "request's"), dig)
        return CheckedRequest(sr, refuse, dig, describe(pol, passkeys),
                              tuple(Approval.from_json(a) for a in approvals))

    @staticmethod
    def _passkey_approvals(approvals: list) -> list[Approval]:
        """The job's approvals made with a passkey (the malformed ones were refused already)."""
        out = []
        for a in approvals:
            try:
                appr = Approval.from_json(a)
            except (PolicyError, CanonicalError):
                continue
            if appr.webauthn is not None:
                out.append(appr)
        return out

    def _key_job_params_problem(self, spec: dict, params: dict) -> str | None:
        rt = self.rt
        kind = spec["kind"]
        if kind in ("refresh", *LIFECYCLE_ACTIONS):
            return None
        if kind == "import":
            try:
                bundle = parse_bundle(spec.get("bundle"), rt.cluster)
            except ImportBundleError:
                return "the job's bundle is malformed"
            if request_params(bundle) != params:
                return "the bundle differs from the signed import request"
            if bundle.parties != sorted(spec.get("parties") or []) or bundle.threshold != spec.get("threshold"):
                return "the job's parties or threshold differ from the bundle's"
            return None
        if params.get("threshold") != spec.get("threshold"):
            return "threshold differs from the signed request"
        if kind == "keygen" and spec.get("scheme", DEFAULT_SCHEME) != params.get("scheme", DEFAULT_SCHEME):
            return "scheme differs from the signed request"
        nodes = params.get("nodes")
        want = spec.get("parties") if kind == "keygen" else spec.get("new_members")
        if nodes is None:
            if kind == "keygen" and sorted(want or []) != sorted(n.index for n in rt.cluster.nodes):
                return "the request names all nodes, the job does not"
            if kind == "reshare":
                return "a reshare request names its nodes"
            return None
        try:
            idx = sorted(rt.index_of(n) for n in nodes)
        except Exception:  # noqa: BLE001
            return "unknown node in the signed request"
        if idx != sorted(int(p) for p in want or []):
            return "nodes differ from the signed request"
        return None


def mark_request_used(store: ReplayStore, spec: dict, amounts: dict | None = None) -> None:
    """Durably record that this node signs (or runs the key change of) the job's request,
    before anything of it leaves; a second time is refused."""
    rid = spec.get("request_id")
    if not rid:
        return
    if not store.use_request(rid, spec["kind"], spec.get("key_id"), spec["job_id"], amounts):
        raise JobFailed(ServiceError("request_already_signed",
                                     "this node already took part in this request"))
