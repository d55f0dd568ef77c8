"""The node's HTTPS server (aiohttp): the app, its middleware, and ``serve``.

* Open: ``/healthz``, ``/readyz``, ``/openapi.json``. ``/metrics``: the scraper's bearer token
  or pinned client certificate (``[metrics]``, :mod:`api.metrics_auth`) or a signed user
  request; open only with ``[metrics] auth = "none"``.
* Client routes (:mod:`api.routes.client`): RFC 9421 signed requests (:mod:`api.auth`) by a
  configured user, and the role the route names.
* Peer routes (:mod:`api.routes.peer`, ``/v1/peer/``): only over TLS with a client certificate
  pinned in the cluster configuration (the TLS handshake checks it against the pins, the route
  maps its SHA-256 fingerprint to the node).

Errors are ``{"error": {"code", "message", "culprits"?, "missing_nodes"?}}`` with the status
:mod:`api.errors` gives the code. A refused request changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl

from aiohttp import web

from api.auth import SIGNATURE_REJECTED, RequestVerifier
from api.edge import BodyTimeout, GuardedSite, edge_middleware, runner_for
from api.errors import DOMAIN_ERRORS, error_response, refusal
from api.metrics_auth import MetricsAuth
from api.openapi import ROUTES, openapi_document
from api.request_log import add_request_id_header, request_log_middleware
from api.routes.common import NODE_KEY, OPENAPI_KEY, Route, node_of
from api.routes.ui import SESSIONS_KEY, ui_headers
from api.signed_request import Refusal, authenticate, node_verifier
from appliance.config import load_node_config
from appliance.faults import NO_FAULTS, FaultPlan
from appliance.fsmodes import tighten_tree
from appliance.ids import GRAMMARS, check_id
from appliance.logs import set_node
from appliance.node import Node
from appliance.ports import NO_EVENTS, SYSTEM_CLOCK, Clock, EventSink
from appliance.ui_sessions import COOKIE, UISessions
from appliance.tls import fingerprint_der, fingerprint_pem, server_context

log = logging.getLogger("appliance.api")

MAX_BODY = 2 << 20  # a PSBT up to the decoder's limit (1 MB, base64) fits; larger ones get a 400
MAX_PEER_BODY = 16 << 20
VERIFIER_KEY = web.AppKey("verifier", RequestVerifier)
PEERS_KEY = web.AppKey("peers", dict)
METRICS_AUTH_KEY = web.AppKey("metrics_auth", MetricsAuth)
POLICY_STATE_KEY = web.AppKey("policy_state", dict)


def route_for(request: web.Request) -> Route | None:
    info = request.match_info.route
    return getattr(info, "_appliance_route", None) if info is not None else None


# ---------------------------------------------------------------------------------------
# middleware


@web.middleware
async def errors_middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DOMAIN_ERRORS as exc:  # TooDeep: a JSON or CBOR body past the nesting bound, unparsed
        resp = error_response(exc)
        if resp.status >= 500:
            log.info("%s %s -> %s %s", request.method, request.path, resp.status, exc.code)
        return resp
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "no_route", 405: "method_not_allowed", 413: "body_too_large"}.get(exc.status, "http_error")
        return refusal(code, exc.reason, exc.status)
    except BodyTimeout as exc:  # the edge's body clock ran out (the connection then closes)
        return refusal("body_timeout", str(exc))
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return refusal("internal", "internal error")


@web.middleware
async def ids_middleware(request: web.Request, handler) -> web.StreamResponse:
    """Every id in a route's path is checked against its exact grammar once the caller is
    authenticated, before any handler sees it (a malformed one is a 400 ``bad_id``)."""
    for name, value in request.match_info.items():
        if name in GRAMMARS:
            check_id(name, value)
    return await handler(request)


@web.middleware
async def auth_middleware(request: web.Request, handler) -> web.StreamResponse:
    route = route_for(request)
    if route is None:
        return await handler(request)
    node = node_of(request)
    if route.auth == "open":
        return await handler(request)
    if route.auth == "ui":  # the console's session cookie (api/routes/ui.py); not /v1
        if node.store is None or node.hsm is None:
            return refusal("not_ready", f"{node.me.id} is not ready: {node.fault or 'starting'}")
        session = request.app[SESSIONS_KEY].session(request.cookies.get(COOKIE))
        user = node.policy.user(session.user)
        if user is None or not any(p.id == session.credential for p in user.passkeys):
            request.app[SESSIONS_KEY].sign_out(request.cookies.get(COOKIE))
            return refusal("ui_session_required", "the session's passkey left the policy: sign in again")
        request["user"] = user
        return await handler(request)
    if route.auth == "metrics":
        scraper = request.app[METRICS_AUTH_KEY]
        if scraper.allows(request.headers.get("Authorization"), _peer_fingerprint(request)):
            return await handler(request)
        if "Signature-Input" not in request.headers:  # else: a user's signed request
            resp = refusal("unauthenticated", "metrics need the scraper's credentials")
            resp.headers.update(scraper.challenge())
            return resp
    if node.store is None or node.hsm is None:
        return refusal("not_ready", f"{node.me.id} is not ready: {node.fault or 'starting'}")
    if route.auth == "peer":
        fp = _peer_fingerprint(request)
        index = request.app[PEERS_KEY].get(fp) if fp else None
        if index is None:
            return refusal("peer_not_pinned", "peer routes need a pinned node certificate")
        request["peer_index"] = index
        return await handler(request)
    verifier = request.app[VERIFIER_KEY]
    state = request.app[POLICY_STATE_KEY]
    if state.get("hash") != node.policy.hash:  # the users of the policy in force
        verifier.users = {u.id: u.key.public_key() for u in node.policy.users}
        state["hash"] = node.policy.hash
    try:
        with node.metrics.stage("client_auth"):  # body read, RFC 9421 verified, nonce recorded
            user_id, request["raw_body"] = await authenticate(request, verifier, MAX_BODY)
    except Refusal as r:
        resp = refusal(r.code, r.message)
        if r.unread and request.body_exists:
            resp.force_close()  # closed once answered ([http] linger_s: api/edge.py)
        return resp
    user = node.policy.user(user_id)
    if user is None:
        return refusal("unauthenticated", SIGNATURE_REJECTED)
    # routes the policy rules on (requests, approvals, key changes) let it decide, with its
    # reason codes; the others name their roles here
    if route.roles and not any(user.has(r) for r in route.roles):
        return refusal("forbidden", f"needs one of the roles: {', '.join(route.roles)}")
    request["user"] = user
    return await handler(request)


def _peer_fingerprint(request: web.Request) -> str | None:
    ssl_obj = request.transport.get_extra_info("ssl_object") if request.transport else None
    if ssl_obj is None:
        return None
    der = ssl_obj.getpeercert(binary_form=True)
    return fingerprint_der(der) if der else None


async def _console_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every /ui/ answer (pages, JSON, errors): the strict CSP, nosniff, no referrer."""
    if request.path.startswith("/ui/"):
        ui_headers(response)


def make_app(node: Node) -> web.Application:
    app = web.Application(middlewares=[request_log_middleware(node.metrics),
                                       edge_middleware(node.config.http),
                                       errors_middleware, auth_middleware, ids_middleware],
                          client_max_size=MAX_PEER_BODY)
    app.on_response_prepare.append(add_request_id_header)
    app.on_response_prepare.append(_console_headers)
    app[NODE_KEY] = node
    app[OPENAPI_KEY] = openapi_document(node)
    app[VERIFIER_KEY] = node_verifier(node)
    app[POLICY_STATE_KEY] = {"hash": node.policy.hash}
    app[PEERS_KEY] = {fingerprint_pem(n.tls_cert): n.index for n in node.cluster.nodes}
    app[METRICS_AUTH_KEY] = MetricsAuth.from_config(node.config.metrics)
    app[SESSIONS_KEY] = UISessions(node.rt.clock, node.opened_store, node.recorder)
    for r in ROUTES:
        res = app.router.add_route(r.method, r.path, r.handler)
        res._appliance_route = r  # type: ignore[attr-defined]
    return app


def tls_changed(app: web.Application, ctx: ssl.SSLContext, sites: list[GuardedSite], changed: frozenset[int]) -> None:
    """A certificate update was applied (appliance.cluster.cert_rotation): the peer routes map
    only the pins in force to nodes (the old certificate gets 403 ``peer_not_pinned``); new
    handshakes trust the new pin and, if it is this node's, serve its new certificate (the live
    context is reloaded: connections already open keep theirs)."""
    node = app[NODE_KEY]
    peers = app[PEERS_KEY]
    peers.clear()
    peers.update({fingerprint_pem(n.tls_cert): n.index for n in node.cluster.nodes})
    for i in changed:
        if i == node.index:
            ctx.load_cert_chain(str(node.config.tls_cert), str(node.config.tls_key))
        else:
            ctx.load_verify_locations(cadata=node.peers[i].tls_cert)
    for site in sites:
        site.set_peer_fingerprints(frozenset(peers))


# ---------------------------------------------------------------------------------------
# running a node


async def serve(config_path: str, *, ready_file: str | None = None, faults: FaultPlan = NO_FAULTS,
                clock: Clock = SYSTEM_CLOCK, events: EventSink = NO_EVENTS) -> None:
    """Start the node and its HTTPS server; run until SIGTERM or SIGINT, then stop cleanly.
    ``faults``, ``clock``, ``events``: test-only (only ``python -m appliance.testing serve``
    passes others than the production ones)."""
    cfg = load_node_config(config_path)
    set_node(cfg.node_id)
    for path in tighten_tree(cfg.data_dir):  # state left by a release before umask 077
        log.warning("%s was readable by others: now 0700/0600", path)
    node = Node(cfg, faults=faults, clock=clock, events=events)
    await node.start()
    app = make_app(node)
    scraper = app[METRICS_AUTH_KEY]
    ctx = server_context(cfg.tls_cert, cfg.tls_key, [n.tls_cert for n in node.cluster.nodes] + list(scraper.cert_pems))
    sites: list[GuardedSite] = []
    node.cert_rotation.listeners.append(lambda changed: tls_changed(app, ctx, sites, changed))
    if scraper.problem or cfg.metrics.legacy_open:
        log.warning("/metrics needs authentication (see [metrics] in node.toml)%s",
                    f": {scraper.problem}" if scraper.problem else "; [node] metrics_open is ignored")
    runner = runner_for(app, cfg.http)
    await runner.setup()
    site = GuardedSite(runner, cfg.listen_host, cfg.listen_port, ssl_context=ctx, limits=cfg.http,
                       peer_fingerprints=frozenset(app[PEERS_KEY]))
    sites.append(site)
    await site.start()
    log.info("node %s listening on %s:%s", cfg.node_id, cfg.listen_host, cfg.listen_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready_file:
        with open(ready_file, "w") as f:
            f.write("ready\n")
    try:
        await stop.wait()
    finally:
        log.info("node %s stopping", cfg.node_id)
        await runner.cleanup()
        await node.stop()
