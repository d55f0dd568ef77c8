"""The light client distribution (issue 15 item 11): its wheel needs exactly aiohttp,
cryptography, http-message-signatures and rfc8785 and holds only ``appliance_client``; the
node's distribution ships the same package. (Installed alone into a fresh venv, its sync
client talks to a real cluster: tests/cluster/test_formats_http.py.)"""

from __future__ import annotations

import re
import tomllib

from tests.packaging.client_dist import DEPENDENCIES, ROOT, shared_client_venv, wheel_metadata


def test_the_light_wheel_needs_the_four_dependencies_and_holds_only_the_client(tmp_path_factory):
    wheel, _ = shared_client_venv(tmp_path_factory)
    meta, top = wheel_metadata(wheel)
    assert meta["Name"] == "threshold-appliance-client"
    names = {re.split(r"[ ;<>=!~\[]", r, maxsplit=1)[0].lower() for r in meta["Requires-Dist"]}
    assert names == DEPENDENCIES, meta["Requires-Dist"]
    assert top == {"appliance_client", "threshold_appliance_client-0.1.0.dist-info"}


def test_the_node_distribution_ships_the_same_client_package():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    find = cfg["tool"]["setuptools"]["packages"]["find"]
    assert "client" in find["where"] and "appliance_client" in find["include"]
    assert "appliance_client" in cfg["tool"]["importlinter"]["root_packages"]
    client = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())
    assert client["project"]["name"] == "threshold-appliance-client"
    # the node needs what the client needs (the client's pins are no tighter than the node's)
    node_deps = {re.split(r"[ ;<>=!~\[]", d, maxsplit=1)[0].lower() for d in cfg["project"]["dependencies"]}
    assert DEPENDENCIES <= node_deps
