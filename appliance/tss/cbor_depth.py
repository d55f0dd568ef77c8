"""A pre-scan of CBOR bytes that bounds nesting depth before ``cbor2.loads`` recurses.

cbor2's decoder recurses once per array, map and tag; with a raised recursion limit a few
hundred KB of ``0x81 0x81 ...`` overflow the C stack and kill the process. :func:`check_depth`
walks the item headers iteratively (an explicit stack of remaining counts, no recursion, no
allocation proportional to declared lengths) and raises :class:`TooDeep` past ``max_depth``.
It only judges depth: malformed or truncated input is left for ``cbor2`` to refuse.
"""

from __future__ import annotations

from appliance.errors import TooDeep

MAX_CBOR_DEPTH = 32  # a batch -> frames -> frame is 3 deep; wire payloads a handful more

_INDEFINITE = -1


def check_depth(data: bytes | bytearray | memoryview, max_depth: int = MAX_CBOR_DEPTH) -> None:
    """Raise :class:`TooDeep` if the first CBOR item of ``data`` nests deeper than ``max_depth``
    arrays, maps and tags."""
    buf = memoryview(data).cast("B") if not isinstance(data, bytes) else data
    n = len(buf)
    pos = 0
    stack: list[int] = []  # items still expected in each open container (-1: until a break)
    while pos < n:
        ib = buf[pos]
        pos += 1
        major, ai = ib >> 5, ib & 0x1F
        if ib == 0xFF:  # break: closes the innermost indefinite container (or string)
            if stack and stack[-1] == _INDEFINITE:
                stack.pop()
                _item_done(stack)
                if not stack:
                    return
                continue
            return  # a stray break: cbor2 refuses it
        if ai < 24:
            arg = ai
        elif ai <= 27:
            size = 1 << (ai - 24)
            if pos + size > n:
                return  # truncated
            arg = int.from_bytes(buf[pos:pos + size], "big")
            pos += size
        elif ai == 31:
            arg = _INDEFINITE
        else:
            return  # reserved additional information: malformed
        if major in (2, 3):  # byte / text string
            if arg == _INDEFINITE:
                stack.append(_INDEFINITE)  # chunks until a break (depth-neutral for cbor2, cheap)
                if len(stack) > max_depth:
                    raise TooDeep(f"CBOR nested deeper than {max_depth}")
                continue
            pos += arg
            if pos > n:
                return
        elif major in (4, 5):  # array / map
            if len(stack) + 1 > max_depth:  # an empty one too: the decoder still descends
                raise TooDeep(f"CBOR nested deeper than {max_depth}")
            if arg != 0:
                stack.append(_INDEFINITE if arg == _INDEFINITE else arg * 2 if major == 5 else arg)
                continue
            # an empty container is a complete item
        elif major == 6:  # tag: one item follows, one level deeper for the decoder
            stack.append(1)
            if len(stack) > max_depth:
                raise TooDeep(f"CBOR nested deeper than {max_depth}")
            continue
        elif major == 7 and arg == _INDEFINITE:
            return  # handled above (0xff); anything else here is malformed
        # a complete scalar item (integers, simple values, floats, definite strings)
        if not stack:
            return
        _item_done(stack)
        if not stack:
            return


def _item_done(stack: list[int]) -> None:
    """One item of the innermost container is complete; close the containers it fills."""
    while stack and stack[-1] != _INDEFINITE:
        stack[-1] -= 1
        if stack[-1] > 0:
            return
        stack.pop()
