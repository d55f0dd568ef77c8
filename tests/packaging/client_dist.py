"""The light client distribution (client/, ``threshold-appliance-client``) built as a wheel and
installed into a fresh virtual environment with its dependencies from PyPI: what a script
author gets from ``pip install threshold-appliance-client``. Shared by
tests/packaging/test_client_dist.py and the round trip in tests/cluster/test_formats_http.py.
pip's download cache (``PIP_CACHE_DIR``, else ~/.cache/pip) is used, so only a first run
downloads."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

from filelock import FileLock

ROOT = Path(__file__).resolve().parents[2]
CLIENT_DIR = ROOT / "client"
#: the light distribution's whole dependency list (names as the wheel's Requires-Dist has them)
DEPENDENCIES = {"aiohttp", "cryptography", "http-message-signatures", "rfc8785"}


def _pip(*args: str) -> subprocess.CompletedProcess:
    # the test venv's pip drives the fresh venv (``--python``): no ensurepip in the new one
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
                          capture_output=True, text=True, timeout=300)


def build_wheel(work: Path) -> Path:
    """``pip wheel --no-deps client/`` on a copy of client/ (the build writes into its tree)."""
    src = work / "client-src"
    shutil.copytree(CLIENT_DIR, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    out = _pip("wheel", "--no-deps", "-w", str(work / "wheels"), str(src))
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = (work / "wheels").glob("threshold_appliance_client-*.whl")
    return wheel


def wheel_metadata(wheel: Path) -> tuple[dict, set[str]]:
    """The wheel's METADATA (``Requires-Dist`` as a list) and its top-level names."""
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        (meta_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        msg = Parser().parsestr(z.read(meta_name).decode())
    meta = {"Name": msg["Name"], "Requires-Dist": msg.get_all("Requires-Dist") or []}
    return meta, {n.split("/")[0] for n in names}


def make_client_venv(work: Path) -> Path:
    """A fresh venv with only the light wheel and its dependencies (from PyPI); its python."""
    wheel = build_wheel(work)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    out = _pip("--python", str(python), "install", str(wheel))
    assert out.returncode == 0, out.stderr[-2000:]
    return python


def shared_client_venv(tmp_path_factory) -> tuple[Path, Path]:
    """(the light wheel, the fresh venv's python), built once per test run and shared by every
    xdist worker (under the run's temp root, as tests/conftest.py's caches are)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    work = root / "client-dist"
    with FileLock(str(work) + ".lock"):
        python = work / "venv" / "bin" / "python"
        if not python.exists():
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            make_client_venv(work)
        (wheel,) = (work / "wheels").glob("threshold_appliance_client-*.whl")
        return wheel, python
