"""The one thread that makes every PKCS#11 call of this process.

SoftHSM2 2.6 crashes when several threads call it at once, so nothing in this package
calls python-pkcs11 except from :class:`Pkcs11Worker`'s thread. Callers submit a function
and get a :class:`concurrent.futures.Future`; :meth:`Pkcs11Worker.call` waits for it
(synchronous callers), :meth:`Pkcs11Worker.acall` awaits it without blocking the event
loop. A call made from the worker thread itself runs inline (no deadlock).

There is one worker per process (:func:`get_worker`), shared by every open token,
because the library is one per process too.

Library state (:class:`ModuleState`, touched only on the worker thread):

* SoftHSM reads SOFTHSM2_CONF in C_Initialize and enumerates the token directory only
  then. python-pkcs11 caches one ``lib`` per path. So: a process uses one SoftHSM
  configuration at a time. Switching to another configuration is allowed only when no
  token of the current one is open (finalize, point SOFTHSM2_CONF elsewhere, initialize);
  tests therefore open one test token directory at a time per process, or put several
  tokens (different labels) in one directory when a test needs two at once.
* A token initialized by ``softhsm2-util`` after C_Initialize is invisible until the
  library is re-initialized (:meth:`ModuleState.rescan`). A rescan invalidates every
  session and object handle of the process; each open token notices the new
  ``generation`` and reopens (new session, login, keys looked up again by label).
* After ``fork()`` the child gets a fresh worker and re-initializes the library before
  its first call (PKCS#11 forbids using the parent's state).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import queue
import threading
from concurrent.futures import Future
from typing import Any, Callable

from hsm.errors import HSMConfigError, HSMModuleError, HSMUnavailableError

_STOP = object()


class Pkcs11Worker:
    """A single thread running submitted callables in order."""

    def __init__(self, name: str = "pkcs11-worker") -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._ready = threading.Event()
        self._ident: int | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        self._ident = threading.get_ident()
        self._ready.set()
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            fut, fn, args, kwargs = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # delivered to the caller
                fut.set_exception(exc)
            else:
                fut.set_result(result)
            finally:
                del item, fut, fn, args, kwargs

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def in_worker(self) -> bool:
        return threading.get_ident() == self._ident

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        if self._closed:
            raise HSMUnavailableError("the PKCS#11 worker has stopped")
        fut: Future = Future()
        self._queue.put((fut, fn, args, kwargs))
        return fut

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` on the worker and wait (blocks the calling thread)."""
        if self.in_worker():
            return fn(*args, **kwargs)
        return self.submit(fn, *args, **kwargs).result()

    async def acall(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` on the worker; await the result without blocking the loop."""
        if self.in_worker():  # pragma: no cover - no event loop runs on the worker
            return fn(*args, **kwargs)
        return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))

    def stop(self, timeout: float = 5.0) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        if not self.in_worker():
            self._thread.join(timeout)


_worker: Pkcs11Worker | None = None
_worker_pid: int | None = None
_worker_lock = threading.Lock()


def get_worker() -> Pkcs11Worker:
    """The process's PKCS#11 worker (created on first use, and anew after fork)."""
    global _worker, _worker_pid
    with _worker_lock:
        if _worker is None or _worker_pid != os.getpid():
            _worker = Pkcs11Worker()
            _worker_pid = os.getpid()
        return _worker


class ModuleState:
    """One loaded PKCS#11 module. Every method runs on the worker thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lib: Any = None
        self.conf: str | None = None  # the SOFTHSM2_CONF the module was initialized with
        self.generation = 0  # bumped on every (re)initialization
        self.open_tokens: set[str] = set()  # labels of open tokens
        self.pid = os.getpid()

    # -- loading ---------------------------------------------------------------------
    def ensure(self, conf: str | None) -> Any:
        """The module, initialized under ``conf`` (None: leave SOFTHSM2_CONF alone)."""
        if self.pid != os.getpid():  # forked: the parent's library state is not ours
            self._after_fork()
        if self.lib is not None and conf is not None and conf != self.conf:
            if self.open_tokens:
                raise HSMConfigError(
                    "this process already has tokens open under another SoftHSM "
                    f"configuration ({self.conf!r}); one configuration per process at a "
                    "time: close them first"
                )
            self._finalize()
        if self.lib is None or not self.lib.initialized:
            self._load(conf)
        return self.lib

    def _load(self, conf: str | None) -> None:
        import pkcs11

        if conf is not None:
            os.environ["SOFTHSM2_CONF"] = conf
        if not os.path.exists(self.path):
            raise HSMModuleError(f"PKCS#11 module {self.path!r} not found")
        try:
            if self.lib is None:
                self.lib = pkcs11.lib(self.path)  # loads and calls C_Initialize
            else:
                self.lib.initialize()
        except pkcs11.PKCS11Error as exc:
            hint = ""
            if conf is not None or os.environ.get("SOFTHSM2_CONF"):
                hint = "; for SoftHSM, check that the token directory of SOFTHSM2_CONF exists"
            raise HSMModuleError(
                f"cannot load or initialize PKCS#11 module {self.path!r} "
                f"({type(exc).__name__}){hint}"
            ) from None
        self.conf = conf if conf is not None else os.environ.get("SOFTHSM2_CONF")
        self.generation += 1

    def _finalize(self) -> None:
        if self.lib is not None and self.lib.initialized:
            try:
                self.lib.finalize()
            except Exception:
                pass
        self.generation += 1

    def rescan(self) -> None:
        """Finalize and initialize again: sees tokens created or restored since, and
        drops every session and handle (open tokens reopen on their next call)."""
        conf = self.conf
        self._finalize()
        try:
            self._load(conf)
        except HSMModuleError:
            raise HSMUnavailableError(
                f"PKCS#11 module {self.path!r} could not be initialized again "
                "(token directory missing?)"
            ) from None

    def _after_fork(self) -> None:
        self.pid = os.getpid()
        self.open_tokens.clear()
        self._finalize()


_modules: dict[str, ModuleState] = {}


def module_state(path: str) -> ModuleState:
    """The state of module ``path`` (worker thread only)."""
    path = os.path.realpath(path) if os.path.exists(path) else path
    st = _modules.get(path)
    if st is None:
        st = _modules[path] = ModuleState(path)
    return st


def _shutdown() -> None:  # pragma: no cover - interpreter exit
    w = _worker
    if w is None or _worker_pid != os.getpid():
        return

    def fin() -> None:
        for st in _modules.values():
            st._finalize()

    try:
        w.submit(fin).result(timeout=5)
    except Exception:
        pass
    w.stop()


atexit.register(_shutdown)
