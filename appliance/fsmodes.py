"""File modes of a node's state: only the node's own user reads it.

A node's directory holds sealed shares and, in its audit log, signed approvals and payloads in
the clear (``node.db``; ``audit.db.migrated-*`` left by an older release), SQLite's ``-wal``/``-shm`` files, logs, configuration and the TLS key.
Directories are 0700, files 0600:

* the node (``appliance serve``) and the CLI set the process umask to 077 at start
  (:func:`set_private_umask`), so whatever SQLite, SoftHSM2 or logging create is private too;
* what the appliance writes itself is created with explicit modes
  (:func:`make_private_dir`, :func:`write_private_file`), whatever the umask;
* :func:`mode_violations` lists what is not (for tests and checks).
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Iterator

PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600


def set_private_umask() -> int:
    """Set the process umask to 077; returns the previous one."""
    return os.umask(PRIVATE_UMASK)


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Umask 077 for the block (also for child processes started in it), then the old one."""
    old = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(old)


def make_private_dir(path: Path) -> Path:
    """``path`` and any missing parents, each made 0700; ``path`` itself is made 0700 also
    when it exists already (parents that existed are left alone)."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        d.mkdir(mode=DIR_MODE, exist_ok=True)
        os.chmod(d, DIR_MODE)
    os.chmod(path, DIR_MODE)
    return path


def write_private_file(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically (a 0600 temporary file renamed over it)."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode()
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def open_private_append(path: Path):
    """``path`` opened for appending (binary), created 0600 if missing."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    return os.fdopen(fd, "ab")


def mode_violations(root: Path) -> list[tuple[str, str]]:
    """Every directory under ``root`` (itself included) that is not 0700 and every file that
    is not 0600: (path relative to root, octal mode). Symbolic links are not followed."""
    root = Path(root)
    out: list[tuple[str, str]] = []

    def check(p: Path, want: int) -> None:
        mode = stat.S_IMODE(p.lstat().st_mode)
        if mode != want:
            out.append((str(p.relative_to(root)) or ".", oct(mode)))

    check(root, DIR_MODE)
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in dirnames:
            if not (base / name).is_symlink():
                check(base / name, DIR_MODE)
        for name in filenames:
            p = base / name
            if not p.is_symlink():
                check(p, FILE_MODE)
    return sorted(out)


def tighten_tree(root: Path) -> list[str]:
    """Make every directory under ``root`` (itself included) 0700 and every file 0600, for
    the entries this user owns (state made by an older release, before umask 077); returns
    the paths changed. Symbolic links are not followed."""
    root = Path(root)
    uid = os.getuid()
    changed: list[str] = []
    for rel, _ in mode_violations(root):
        p = root / rel
        st = p.lstat()
        if st.st_uid != uid or not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
            continue
        os.chmod(p, DIR_MODE if stat.S_ISDIR(st.st_mode) else FILE_MODE)
        changed.append(str(p))
    return changed
