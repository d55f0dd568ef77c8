"""Derivation paths: the strict BIP32 path grammar and the policy's path patterns."""

from __future__ import annotations

import re

from appliance.policy.grammar import PolicyError

HARDENED = 0x8000_0000


def parse_path(path: str) -> tuple[int, ...]:
    """Strict canonical BIP32 path: ``m`` or ``m/i/j'/...`` (decimal, no leading zeros,
    ``'`` for hardened). Returns the child numbers (hardened ones with bit 31 set)."""
    if not isinstance(path, str) or not path.startswith("m"):
        raise PolicyError("a derivation path starts with 'm'")
    if path == "m":
        return ()
    parts = path.split("/")
    if parts[0] != "m" or len(parts) > 256:
        raise PolicyError("bad derivation path")
    out = []
    for p in parts[1:]:
        m = re.fullmatch(r"(0|[1-9][0-9]{0,9})(')?", p)
        if m is None or int(m.group(1)) >= HARDENED:
            raise PolicyError(f"bad derivation path component {p!r}")
        out.append(int(m.group(1)) + (HARDENED if m.group(2) else 0))
    return tuple(out)


def normalize_path(path: str | None) -> str:
    """``None``/``""`` -> ``m``; ``h``/``H`` -> ``'``; checked canonical."""
    if path is None or path == "":
        return "m"
    if not isinstance(path, str):
        raise PolicyError("a derivation path is a string")
    p = path.strip().replace("h", "'").replace("H", "'")
    parts = p.split("/")
    if parts and parts[0] in ("m", "M"):
        parts[0] = "m"
    else:
        raise PolicyError("a derivation path starts with 'm'")
    norm = []
    for c in parts[1:]:
        hard = c.endswith("'")
        num = c[:-1] if hard else c
        if not num.isdigit() or not num.isascii():
            raise PolicyError(f"bad derivation path component {c!r}")
        norm.append(str(int(num)) + ("'" if hard else ""))
    out = "/".join(["m", *norm])
    parse_path(out)
    return out



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
