"""Issue 15 item 7: the worked RFC 9421 example in api/README.md ("Worked example: a signed
request by hand") is exact. Its blocks are read from the README; the Content-Digest and the
signature base are rebuilt by hand from the inputs (as a client in another language would), the
Ed25519 signature of that base is the README's, ``api.auth.sign_request`` makes exactly the
README's headers, and the node's verifier accepts the request (and refuses it with one byte
of the body changed)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from api.auth import COVERED, AuthError, RequestVerifier, authority_of, load_private_key, sign_request

README = (Path(__file__).resolve().parents[2] / "api" / "README.md").read_text()

#: RFC 8032 section 7.1, TEST 1: the public key of the secret key the README names
RFC8032_TEST1_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"


def block(name: str) -> str:
    """The fenced block after ``<!-- rfc9421:name -->`` (its indentation removed)."""
    m = re.search(r"<!-- rfc9421:" + re.escape(name) + r" -->\n( *)```\n(.*?)\n *```", README, re.S)
    assert m, f"no rfc9421:{name} block in api/README.md"
    indent = len(m.group(1))
    return "\n".join(line[indent:] for line in m.group(2).split("\n"))


def fields(name: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in block(name).split("\n"))


INPUTS = fields("inputs")
BODY = block("body").encode()
KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(INPUTS["secret key (hex)"]))
CREATED = int(INPUTS["created"])


def test_the_key_is_rfc_8032_test_1_and_the_pem_is_the_same_key():
    raw = KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert raw.hex() == RFC8032_TEST1_PUBLIC
    pem = load_private_key(block("key-pem") + "\n")
    assert pem.private_bytes_raw() == KEY.private_bytes_raw()


def test_content_digest_and_signature_base_rebuilt_by_hand():
    assert f"exactly these {len(BODY)} bytes (no trailing newline)" in README
    digest = "sha-256=:" + base64.b64encode(hashlib.sha256(BODY).digest()).decode() + ":"
    assert block("content-digest") == digest
    url = urlsplit(INPUTS["url"])
    params = ("(" + " ".join(f'"{c}"' for c in COVERED) + f');created={CREATED};keyid="{INPUTS["keyid"]}"'
              f';alg="ed25519";nonce="{INPUTS["nonce"]}"')
    values = {"@method": INPUTS["method"].upper(), "@authority": authority_of(INPUTS["url"]),
              "@path": url.path, "@query": "?" + url.query, "content-digest": digest}
    base = "\n".join([*(f'"{c}": {values[c]}' for c in COVERED), f'"@signature-params": {params}'])
    assert block("signature-base") == base
    headers = fields("headers")
    assert headers["Content-Digest"] == digest
    assert headers["Signature-Input"] == f"sig1={params}"
    assert headers["Signature"] == "sig1=:" + base64.b64encode(KEY.sign(base.encode())).decode() + ":"


def test_sign_request_makes_exactly_the_readme_headers_and_the_node_accepts_them():
    made = sign_request(INPUTS["method"], INPUTS["url"], BODY, INPUTS["keyid"], KEY,
                        created=datetime.datetime.fromtimestamp(CREATED, datetime.timezone.utc),
                        nonce=INPUTS["nonce"])
    assert made == fields("headers")
    # the node's verifier, for the node of that URL; max_age wide enough for the fixed created
    # (a node keeps 300 s, which this test does not exercise)
    age = int(datetime.datetime.now(datetime.timezone.utc).timestamp()) - CREATED + 3600

    def verifier() -> RequestVerifier:
        return RequestVerifier({INPUTS["keyid"]: KEY.public_key()}, authority=authority_of(INPUTS["url"]),
                               max_age=age)

    headers = list(fields("headers").items())
    assert verifier().verify(INPUTS["method"], INPUTS["url"], headers, BODY) == INPUTS["keyid"]
    with pytest.raises(AuthError, match="^signature rejected$"):
        verifier().verify(INPUTS["method"], INPUTS["url"], headers, BODY.replace(b"11", b"12", 1))
