"""Derivation paths: the strict BIP32 path grammar and the policy's path patterns."""

from __future__ import annotations

import re

from appliance.policy.grammar import PolicyError
# a request's derivation path: the client library's grammar (one for both sides)
from appliance_client.grammar import HARDENED as HARDENED
from appliance_client.grammar import normalize_path as normalize_path
from appliance_client.grammar import parse_path as parse_path


def parse_pattern(pattern: str) -> tuple[str, ...]:
    if not isinstance(pattern, str) or not (pattern == "m" or pattern.startswith("m/")):
        raise PolicyError(f"a path pattern starts with 'm': {pattern!r}")
    parts = tuple(pattern.split("/")[1:])
    for i, p in enumerate(parts):
        if p == "**":
            if i != len(parts) - 1:
                raise PolicyError("'**' may only end a path pattern")
        elif p in ("*", "*'"):
            continue
        elif re.fullmatch(r"(0|[1-9][0-9]{0,9})'?", p) is None or int(p.rstrip("'")) >= HARDENED:
            raise PolicyError(f"bad path pattern component {p!r}")
    return parts


def path_matches(pattern: str, path: str) -> bool:
    """``*`` one non-hardened index, ``*'`` one hardened index, ``**`` (last) any rest
    (also nothing), literals exactly."""
    pat = parse_pattern(pattern)
    comps = path.split("/")[1:] if path != "m" else []
    for i, p in enumerate(pat):
        if p == "**":
            return True
        if i >= len(comps):
            return False
        c = comps[i]
        if p == "*":
            if c.endswith("'"):
                return False
        elif p == "*'":
            if not c.endswith("'"):
                return False
        elif p != c:
            return False
    return len(comps) == len(pat)
