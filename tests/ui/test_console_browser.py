"""The approval console in a real browser (issue 17): Debian's headless Chromium driven by
Selenium, with a WebDriver virtual authenticator (CTAP2, internal transport, resident keys,
user verification on). A 2-of-3 cluster with an ETH transaction policy; the browser enrols a
passkey on /ui/enrol, the admin quorum adds it by a policy update (through the client), the
initiator files an EIP-1559 transaction through the API, the approver signs in, sees the
decoded destination and amount on the page, approves with the passkey, and the signature is
released and recovers to the key's address; a rejection made in the browser, with its reason
(signed with it), shows on the initiator's side; with user verification absent (the virtual
authenticator's isUserVerified false) the page shows the refusal and nothing is decided.
Screenshots of the pending list and the request page go to docs/ui/. The signer-level
refusals (another request's assertion, a replayed one, a credential not in the policy, a wrong
origin, UV absent, a forged or dropped assertion) are in tests/cluster/test_policy_http.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.virtual_authenticator import (
    Protocol,
    Transport,
    VirtualAuthenticatorOptions,
)
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from appliance import payloads as P
from appliance.payloads import samples
from appliance.payloads.ethereum import _eth
from appliance.payloads.psbt import _btc
from appliance.payloads.solana import _sol
from api.routes.ui import CSP
from tests.cluster_fixtures import cluster_fixture, cluster_marks, signed_policy_update, two_input_psbt

pytestmark = cluster_marks("ui-browser")

ETH_TO = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
ETHER = 10**18
DEST = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"  # BIP173 regtest example
DOCS = Path(__file__).resolve().parents[2] / "docs" / "ui"

cluster = cluster_fixture(
    policy={"policy_change": {"quorum": 2}, "signing": {"allow_raw_digest": False, "transactions": {
        "network": "regtest", "allowed_destinations": [ETH_TO, DEST], "allowed_chain_ids": [1],
        "max_fee": {"BTC": "5000", "ETH": str(10**16)},
        "limits": {"BTC": {"per_transaction": "150000"}, "ETH": {"per_transaction": str(ETHER)}}}}},
    users={"admin2": ["admin"]},
)


def _browser():
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail("chromium and chromium-driver are system packages of make system-deps")
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--ignore-certificate-errors", "--window-size=1200,1000"):  # the node's self-signed cert (test only)
        opts.add_argument(a)
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    d = webdriver.Chrome(options=opts, service=service)
    d.add_virtual_authenticator(VirtualAuthenticatorOptions(
        protocol=Protocol.CTAP2, transport=Transport.INTERNAL, has_resident_key=True,
        has_user_verification=True, is_user_verified=True))
    return d


async def _update(cluster, change) -> None:
    upd = await signed_policy_update(cluster, ["admin", "admin2"], change)
    out = await cluster.client("admin").update_policy(upd)
    assert out["applied"] and set(out["nodes"].values()) == {"applied"}, out


def _psbt(key) -> str:
    """Two P2WPKH inputs of the key (m, m/0/5); 80,000 sat to DEST, 23,500 change to m/1/0."""
    kc = P.KeyContext(bytes.fromhex(key["public_key"]), bytes.fromhex(key["chain_code"]))
    return two_input_psbt(kc, DEST)


def _text(d, css: str, timeout: float = 20, *, has: str = "") -> str:
    """The text of ``css`` once it is shown (and contains ``has``): a page re-rendered under
    the wait replaces its elements, so a stale one is looked up again."""
    def shown(d):
        e = EC.visibility_of_element_located((By.CSS_SELECTOR, css))(d)
        return e and has in e.text and e.text
    return WebDriverWait(d, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(shown)


def _click(d, id_: str, timeout: float = 20) -> None:
    """Click a button once the page has drawn it (the page first shows "Loading…")."""
    WebDriverWait(d, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(
        EC.element_to_be_clickable((By.ID, id_))).click()


def _rows(d) -> dict[str, tuple[str, bool]]:
    """The decoded table as shown: field name -> (its text, whether the row is marked change)."""
    return {r.find_element(By.TAG_NAME, "th").text: (r.find_element(By.TAG_NAME, "td").text,
                                                     "change" in (r.get_attribute("class") or ""))
            for r in d.find_elements(By.CSS_SELECTOR, "#decoded tr")}


def _check_amount_formatter(d) -> None:
    """The page's formatter (api/ui/app.js amountText, BigInt only) on edge values agrees with
    the decoders' own decimals (the summary's *_eth, *_btc, *_sol fields), with its unit."""
    values = [0, 1, 9, 10, 12_345, 10**8, 10**9, 10**18 - 1, 10**18, 10**18 + 1, 123 * 10**16, 2**256 - 1]
    got = d.execute_script("return arguments[0].map((v) => [amountText(v, 'ETH'), amountText(v, 'BTC'), "
                           "amountText(v, 'SOL'), amountText(v, 'SPL:m', 6), tokenText(v, 'ERC20:0xT')])",
                           [str(v) for v in values])
    want = [[f"{_eth(v)} ETH", f"{_btc(v)} BTC ({v} sat)", f"{_sol(v)} SOL ({v} lamports)",
             f"{_eth(v * 10**12)} SPL:m ({v} base units)", f"{v} base units of ERC20:0xT"] for v in values]
    assert got == want
    assert d.execute_script("return amountText('12300000000000000', 'ETH')") == "0.0123 ETH"
    assert d.execute_script("return [amountText('1e5', 'ETH'), amountText(null, 'BTC')]") == ["1e5", "null"]


def _open(d, origin: str, rid: str) -> None:
    """Go to a request's page and wait until it shows that request (not the one before)."""
    d.get(origin + "/ui/#/r/" + rid)
    _text(d, "#overview", has=rid)


async def test_console_headers_and_reads_need_a_session(cluster):
    """/ui/ pages and /ui/api answers carry the strict CSP (no inline script or style, no
    framing), nosniff and no referrer; a read without the session cookie is 401."""
    async with aiohttp.ClientSession() as s:
        for path in ("/ui/", "/ui/app.js", "/ui/api/me"):
            async with s.get(cluster.urls[0] + path, ssl=False) as r:
                assert r.headers["Content-Security-Policy"] == CSP, path
                assert (r.headers["X-Content-Type-Options"], r.headers["Referrer-Policy"]) == \
                    ("nosniff", "no-referrer"), path
                if path == "/ui/api/me":
                    assert r.status == 401 and (await r.json())["error"] == {
                        "code": "ui_session_required",
                        "message": "sign in with your passkey (no session, or it expired)"}
        assert "<script>" not in (await (await s.get(cluster.urls[0] + "/ui/", ssl=False)).text())
        # a field that is not base64url is a 400 naming it (it was a 500: found by schemathesis)
        bad = {"challenge": "0", "credential_id": "0", "client_data_json": "0", "attestation_object": "0"}
        async with s.post(cluster.urls[0] + "/ui/api/registrations", json=bad, ssl=False) as r:
            assert (r.status, (await r.json())["error"]) == (400, {
                "code": "bad_body", "message": "credential_id is unpadded base64url"})


async def test_approve_and_reject_in_the_browser(cluster):
    from eth_account import Account

    port = urlsplit(cluster.urls[0]).port
    origin = f"https://localhost:{port}"  # WebAuthn RP IDs are host names, not IP addresses

    def webauthn(m):
        m["webauthn"] = {"rp_id": "localhost", "origins": [origin]}
    await _update(cluster, webauthn)
    key = await cluster.client("admin").create_key(threshold=2)
    eth = (await cluster.client("auditor").address(key["key_id"], "eth"))["address"]
    key["chain_code"] = (await cluster.client("auditor").derive(key["key_id"], "m"))["chain_code"]
    d = _browser()
    try:
        # enrol: the page makes the passkey and shows its policy entry for the admins
        d.get(origin + "/ui/enrol")
        _click(d, "enrol")
        WebDriverWait(d, 20).until(lambda d: d.find_element(By.ID, "credential").get_attribute("value"))
        entry = json.loads(d.find_element(By.ID, "credential").get_attribute("value"))
        assert entry["alg"] == -7 and entry["label"] == "laptop"

        def enrol(m):
            for u in m["users"]:
                if u["id"] == "approver":
                    u["passkeys"] = [entry]
        await _update(cluster, enrol)

        ini = cluster.client("initiator")
        tx = samples.sample_eth_tx(chain_id=1, nonce=7, to=ETH_TO, value=ETHER // 4, gas=21_000,
                                   max_fee_per_gas=40 * 10**9, max_priority_fee_per_gas=10**9)
        req = await ini.request_signature(key["key_id"], payload=tx, payload_type="eth_tx")
        # sign in with the same passkey; the pending list shows the request
        d.get(origin + "/ui/")
        _click(d, "sign-in")
        assert req["request_id"] in _text(d, "#requests")
        cookie = d.get_cookie("appliance_ui")
        assert (cookie["httpOnly"], cookie["secure"], cookie["sameSite"], cookie["path"]) == \
            (True, True, "Strict", "/ui/"), cookie
        d.save_screenshot(str(DOCS / "pending.png"))
        _open(d, origin, req["request_id"])
        decoded = _text(d, "#decoded")
        assert ETH_TO.lower() in decoded.lower(), decoded
        # every amount with its unit, in exact decimal (21,000 gas at 40 gwei: 0.00084 ETH)
        rows = _rows(d)
        assert (rows["value"][0], rows["max_fee"][0], rows["max_fee_per_gas"][0],
                rows["max_priority_fee_per_gas"][0], rows["destinations[0].amount"][0]) == (
            "0.25 ETH", "0.00084 ETH", "0.00000004 ETH", "0.000000001 ETH", "0.25 ETH"), rows
        assert not any(k.endswith("_eth") for k in rows), rows  # value_eth, max_fee_eth: in those rows
        _check_amount_formatter(d)
        d.save_screenshot(str(DOCS / "request.png"))
        _click(d, "approve")
        done = await ini.wait_signature(req["request_id"], timeout=60)
        assert Account.recover_transaction(done["result"]["raw_tx"]) == eth
        _text(d, "#overview", has="approver approve")
        assert "approval accepted" in _text(d, "#audit"), _text(d, "#audit")  # the node's audit entries

        # a PSBT, its change output marked; rejected in the browser, which the initiator sees
        other = await ini.request_signature(key["key_id"], payload=_psbt(key), payload_type="psbt")
        _open(d, origin, other["request_id"])
        decoded = _text(d, "#decoded")
        assert DEST in decoded, decoded
        rows = _rows(d)
        assert (rows["outputs[0].address"], rows["outputs[0].amount"], rows["outputs[1].amount"]) == (
            (DEST, False), ("0.00080000 BTC (80000 sat)", False), ("0.00023500 BTC (23500 sat)", True)), rows
        assert (rows["inputs[0].amount"][0], rows["inputs[1].amount"][0], rows["fee"][0], rows["sent"][0]) == (
            "0.00060000 BTC (60000 sat)", "0.00045000 BTC (45000 sat)", "0.00001500 BTC (1500 sat)",
            "0.00080000 BTC (80000 sat)"), rows
        change = [e.text for e in d.find_elements(By.CSS_SELECTOR, "#decoded tr.change")]
        assert any("23500" in t for t in change) and not any(DEST in t for t in change), change
        _click(d, "reject")  # no reason: the page asks for one
        assert _text(d, "#error") == "a rejection needs a reason"
        d.find_element(By.ID, "reason").send_keys("change goes to an address we do not know")
        _click(d, "reject")
        _text(d, "#overview", has="rejected")
        seen = await ini.get_sign_request(other["request_id"])
        assert seen["status"] == "rejected", seen
        assert (seen["decisions"][-1]["approver"], seen["decisions"][-1]["reason"]) == \
            ("approver", "change goes to an address we do not know")  # signed with the rejection
        assert "approver reject (change goes to an address we do not know)" in _text(d, "#overview")

        # user verification absent (the authenticator cannot verify the person): refused
        third = await ini.request_signature(key["key_id"], payload=samples.sample_eth_tx(
            chain_id=1, nonce=8, to=ETH_TO, value=ETHER // 8, gas=21_000, max_fee_per_gas=40 * 10**9,
            max_priority_fee_per_gas=10**9), payload_type="eth_tx")
        d.set_user_verified(False)
        _open(d, origin, third["request_id"])
        _click(d, "approve")
        # Chromium itself refuses (userVerification "required"): no assertion reaches a node
        assert _text(d, "#error").startswith("NotAllowedError: The operation either timed out or was not allowed.")
        seen = await ini.get_sign_request(third["request_id"])
        assert (seen["status"], seen["decisions"]) == ("pending", []), seen
        d.get(origin + "/ui/#/history")  # both decided requests are in the history
        _text(d, "#main", has=other["request_id"])
        assert req["request_id"] in _text(d, "#requests")
    except Exception:
        print("PAGE:", d.current_url, d.page_source[:3000])  # what the browser showed
        raise
    finally:
        d.quit()
