"""The core store: keys, sealed secrets, the sealed prime pool, presignatures, the FROST
nonce pool and sign requests, the repositories of :mod:`appliance.storage` behind one object (what a node's
start-up clean-up, the backup tool and the tests use). See :mod:`appliance.storage` for the
rules it keeps."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from appliance.storage.database import Database
from appliance.storage.frost_nonces import FrostNonceRepository
from appliance.storage.keys import KeyRepository
from appliance.storage.presignatures import PresignatureRepository
from appliance.storage.primes import PrimePool
from appliance.storage.sign_requests import SignRequestRepository


class Store(KeyRepository, PrimePool, PresignatureRepository, FrostNonceRepository, SignRequestRepository):
    """The core repositories over one :class:`Database`: the node's (given), or a connection
    of its own (given a path). Thread-safe; several Store objects (threads, processes) may
    share a file. Presignature reservations are bound to this object (``instance_id``)."""

    def __init__(self, db: Database | str | Path, *, busy_timeout: float = 10.0) -> None:
        self._own = not isinstance(db, Database)
        self.db = Database(db, busy_timeout=busy_timeout) if self._own else db
        self.path = self.db.path
        self.instance_id = secrets.token_hex(16)

    @property
    def schema_version(self) -> int:
        return self.db.schema_version

    def checkpoint(self) -> None:
        self.db.checkpoint()

    def backup_to(self, path: str | Path) -> None:
        self.db.backup_to(path)

    def close(self) -> None:
        if self._own:
            self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
