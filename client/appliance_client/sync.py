"""``SyncApplianceClient``: the client for scripts, without asyncio.

    with SyncApplianceClient(url, "alice", "alice.key.pem", server_cert=node_pem) as c:
        key = c.create_key(threshold=2)
        for r in c.iter_sign_requests(status="pending"):
            print(r["request_id"])

Every coroutine method of :class:`~appliance_client.client.ApplianceClient` is here as a
blocking method with the same name, arguments and result (and the same exceptions:
:class:`~appliance_client.client.ApplianceAPIError`, ``TimeoutError``); each ``iter_*``
async generator is a plain generator (pages fetched as it is consumed). Other attributes
(``url``, ``user``, ``timeout``, ``request_id``, ``last_request_id``) are the async client's.

The calls run on one event loop that the library keeps in a daemon thread of its own, shared
by every sync client of the process, so a call works from any thread, also from one that
runs an event loop of its own (e.g. a notebook), and one sync client may be another's
``approver`` (``sign(..., approver=other)``). Close a client (``close()`` or ``with``) to
close its connections; the thread lives as long as the process.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import Coroutine, Iterator
from typing import Any

from appliance_client.client import ApplianceClient

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _the_loop() -> asyncio.AbstractEventLoop:
    """The library's event loop (started in a daemon thread on first use)."""
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            threading.Thread(target=run, name="appliance-client-loop", daemon=True).start()
            ready.wait()
            _loop = loop
        return _loop


def _run(coro: Coroutine) -> Any:
    """Run ``coro`` on the library's loop and wait for its result (its exception raised here);
    an interrupt (Ctrl-C) while waiting cancels it."""
    fut = asyncio.run_coroutine_threadsafe(coro, _the_loop())
    try:
        return fut.result()
    except BaseException:
        fut.cancel()
        raise


def _unwrap(value: Any) -> Any:
    return value.aio if isinstance(value, SyncApplianceClient) else value


class SyncApplianceClient:
    """One user talking to one node, blocking. Takes what
    :class:`~appliance_client.client.ApplianceClient` takes: ``url``, ``user``, ``private_key``
    (PEM, a path to a PEM file, or a cryptography key), ``server_cert=`` (the node's
    certificate PEM to pin) or ``ca_file=``, ``timeout=``."""

    def __init__(self, url: str, user: str, private_key: Any, **kwargs: Any) -> None:
        object.__setattr__(self, "aio", ApplianceClient(url, user, private_key, **kwargs))

    # -- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the client's connections (it opens new ones if used again)."""
        _run(self.aio.close())

    def __enter__(self) -> SyncApplianceClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- every method of the async client -----------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.aio, name)
        if inspect.iscoroutinefunction(attr):
            @functools.wraps(attr)
            def call(*args: Any, **kwargs: Any) -> Any:
                return _run(attr(*map(_unwrap, args), **{k: _unwrap(v) for k, v in kwargs.items()}))
            return call
        if inspect.isasyncgenfunction(attr):
            @functools.wraps(attr)
            def iterate(*args: Any, **kwargs: Any) -> Iterator[Any]:
                return _iterate(attr(*args, **kwargs))
            return iterate
        return attr

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.aio, name, value)  # request_id, timeout, observe: the async client's

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | {n for n in dir(self.aio) if not n.startswith("_")})

    def __repr__(self) -> str:
        return f"SyncApplianceClient({self.aio.url!r}, {self.aio.user!r})"


def _iterate(agen: Any) -> Iterator[Any]:
    """A generator over an async generator, each step run on the library's loop."""
    try:
        while True:
            try:
                item = _run(agen.__anext__())
            except StopAsyncIteration:
                return
            yield item
    finally:
        _run(agen.aclose())
