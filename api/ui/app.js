// The approval console (issue 17): plain JavaScript, no inline script (CSP script-src 'self').
// Reads /ui/api with the session cookie; every decision is a passkey assertion over the
// approval statement the node gives (userVerification "required"), checked by every signer.
"use strict";

const $ = (sel) => document.querySelector(sel);
const main = () => $("#main");

function b64url(buf) {
  const bytes = new Uint8Array(buf);
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
// RFC 8785 JSON of a value made of null, booleans, strings, safe integers, arrays and objects
// (what statements and decoded summaries hold): ECMAScript string escaping (JSON.stringify),
// keys sorted by UTF-16 code units (Array.prototype.sort's order). null for anything else (a
// number the page cannot hold exactly): then the summary cannot be checked here.
function canonical(v) {
  if (v === null || typeof v === "boolean" || typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number") return Number.isSafeInteger(v) ? String(v) : null;
  if (Array.isArray(v)) {
    const items = v.map(canonical);
    return items.includes(null) ? null : "[" + items.join(",") + "]";
  }
  if (typeof v === "object") {
    const out = [];
    for (const k of Object.keys(v).sort()) {
      const c = canonical(v[k]);
      if (c === null) return null;
      out.push(JSON.stringify(k) + ":" + c);
    }
    return "{" + out.join(",") + "}";
  }
  return null;
}
async function sha256(text) {
  if (!(window.crypto && crypto.subtle)) throw mismatch("this page cannot hash (no crypto.subtle): not approving");
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
}
const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
function mismatch(message) {
  const err = new Error(message);
  err.code = "statement_mismatch";
  return err;
}
// Before the authenticator is asked: the statement the node gives is for the request this page
// shows (id, digest, payload hash, network, the decoded summary's hash, the decision) and its
// challenge is SHA-256 of the statement's canonical bytes. Returns the challenge bytes.
async function checkedChallenge(shown, decision, got) {
  const s = got.statement || {};
  const want = { request_id: shown.request_id, digest: shown.digest ?? null,
    payload_hash: shown.payload_hash ?? null, network: shown.network ?? null, decision };
  for (const [k, v] of Object.entries(want)) {
    if (s[k] !== v) throw mismatch("the node's statement differs from this page in " + k + ": not approving");
  }
  const summary = canonical(shown.decoded ?? null);
  if (summary !== null && shown.decoded != null) {  // else (a number past 2**53): the signers check it
    if (s.summary_hash !== hex(await sha256(summary))) {
      throw mismatch("the node's statement differs from this page in summary_hash: not approving");
    }
  }
  const text = canonical(s);
  if (text === null) throw mismatch("the node's statement is not canonical JSON: not approving");
  const challenge = await sha256(text);
  if (b64url(challenge) !== got.challenge) {
    throw mismatch("the node's challenge is not SHA-256 of its statement: not approving");
  }
  return challenge;
}
function unb64url(s) {
  const pad = s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4);
  return Uint8Array.from(atob(pad), (c) => c.charCodeAt(0));
}
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
}
async function api(method, path, body) {
  const r = await fetch("/ui/api/" + path, {
    method, credentials: "same-origin",
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await r.json();
  if (!r.ok) {
    const err = new Error((data.error && data.error.message) || r.statusText);
    err.code = data.error && data.error.code;
    err.status = r.status;
    throw err;
  }
  return data;
}
function showError(err) {
  const kind = err.code || (err.name && err.name !== "Error" ? err.name : "");  // a node's code, or the browser's
  const p = el("p", { class: "error", id: "error", text: (kind ? kind + ": " : "") + err.message });
  const old = $("#error");
  if (old) old.replaceWith(p); else main().prepend(p);
}
function assertionJSON(cred) {
  return {
    credential_id: b64url(cred.rawId),
    authenticator_data: b64url(cred.response.authenticatorData),
    client_data_json: b64url(cred.response.clientDataJSON),
    signature: b64url(cred.response.signature),
  };
}
const seg = (id) => encodeURIComponent(id);

// ------------------------------------------------------------------ sign in and enrol

function signInPage() {
  $("#nav").hidden = true;
  const btn = el("button", { id: "sign-in", type: "button", text: "Sign in with your passkey" });
  btn.addEventListener("click", async () => {
    try {
      const { challenge, rp_id } = await api("POST", "challenge", {});
      const cred = await navigator.credentials.get({ publicKey: {
        challenge: unb64url(challenge), rpId: rp_id, userVerification: "required", timeout: 60000 } });
      await api("POST", "sign-in", { challenge, webauthn: assertionJSON(cred) });
      route();
    } catch (e) { showError(e); }
  });
  main().replaceChildren(el("h2", { text: "Sign in" }), btn);
}

function enrolPage() {
  const label = el("input", { id: "label", value: "laptop", maxlength: "64" });
  const name = el("input", { id: "user", value: "approver", maxlength: "64" });
  const out = el("textarea", { id: "credential", readonly: "readonly" });
  const btn = el("button", { id: "enrol", type: "button", text: "Create a passkey" });
  btn.addEventListener("click", async () => {
    try {
      const { challenge, rp_id } = await api("POST", "challenge?purpose=register", {});
      const cred = await navigator.credentials.create({ publicKey: {
        challenge: unb64url(challenge), rp: { id: rp_id, name: "Threshold-signing appliance" },
        user: { id: crypto.getRandomValues(new Uint8Array(16)), name: name.value, displayName: name.value },
        pubKeyCredParams: [{ type: "public-key", alg: -7 }, { type: "public-key", alg: -8 }],
        authenticatorSelection: { userVerification: "required", residentKey: "preferred" },
        attestation: "none", timeout: 60000 } });
      const got = await api("POST", "registrations", {
        challenge, credential_id: b64url(cred.rawId), client_data_json: b64url(cred.response.clientDataJSON),
        attestation_object: b64url(cred.response.attestationObject), label: label.value });
      out.value = JSON.stringify(got.passkey);
    } catch (e) { showError(e); }
  });
  main().replaceChildren(el("h2", { text: "Enrol a passkey" }),
    el("p", { text: "Give the credential below to your admins: it approves only once a policy update signed by the admin quorum adds it to your user." }),
    el("label", { text: "User " }, name), el("label", { text: " Label " }, label), el("p", {}, btn), out);
}

// ------------------------------------------------------------------ lists

function when(t) {
  const d = new Date(Number(t) * 1000);
  return t && !isNaN(d.getTime()) && d.getUTCFullYear() < 10000 ? d.toISOString().replace(/\.\d+Z$/, "Z") + " (" + t + ")" : String(t ?? "-");
}

async function listPage(view) {
  const data = await api("GET", "sign-requests?view=" + view);
  const rows = data.sign_requests.map((r) => el("tr", {},
    el("td", {}, el("a", { href: "#/r/" + seg(r.request_id), class: "mono", text: r.request_id })),
    el("td", { text: r.status }), el("td", { text: r.key_id }), el("td", { text: r.initiator || "-" }),
    el("td", { text: (r.decoded && r.decoded.summary && r.decoded.summary.kind) || r.payload_type || "digest" }),
    el("td", { text: when(r.created) })));
  main().replaceChildren(el("h2", { text: view === "pending" ? "Pending requests" : "Decided requests" }),
    rows.length ? el("table", { id: "requests" }, el("tr", {}, ...["Request", "Status", "Key", "Initiator", "Kind", "Created"].map(
      (h) => el("th", { text: h }))), ...rows) : el("p", { id: "empty", text: "Nothing here." }));
}

// ------------------------------------------------------------------ one request

// Amounts with their units, in exact decimal: BigInt and string arithmetic on the integer base
// units the decoders give, never a float. ETH trims trailing zeros (as the summary's *_eth
// fields), BTC and SOL keep 8 and 9 decimals (as *_btc and *_sol) with the base units in
// brackets; a token shows decimals only where the summary carries them (Solana
// TransferChecked), else its base units and asset.
const UNITS = { ETH: [18, false, ""], BTC: [8, true, "sat"], SOL: [9, true, "lamports"] };
function decimalOf(base, decimals, fixed) {
  const s = String(base);
  if (!/^[0-9]{1,80}$/.test(s) || !Number.isInteger(decimals) || decimals < 0 || decimals > 77) return null;
  const n = BigInt(s), d = 10n ** BigInt(decimals);
  let frac = decimals ? (n % d).toString().padStart(decimals, "0") : "";
  if (!fixed) frac = frac.replace(/0+$/, "");
  return (n / d).toString() + (frac ? "." + frac : "");
}
function amountText(base, asset, decimals, symbol, decoded) {
  const unit = UNITS[asset];
  // ``decoded``: the decoder's own decimal of it (the summary's value_eth, fee_btc...), kept as is
  const dec = typeof decoded === "string" && /^[0-9]+(\.[0-9]+)?$/.test(decoded) ? decoded
    : unit ? decimalOf(base, unit[0], unit[1]) : decimalOf(base, decimals, false);
  if (dec === null) return String(base);
  if (unit) return dec + " " + asset + (unit[2] ? " (" + base + " " + unit[2] + ")" : "");
  return dec + " " + (symbol || asset || "tokens") + " (" + base + " base units)";
}
function tokenText(base, asset) {  // a token whose decimals the payload does not carry
  return /^[0-9]+$/.test(String(base)) ? base + " base units of " + asset : String(base);
}
// the native asset of a summary, and its fields in that asset's base units
const NATIVE = { eth_tx: "ETH", psbt: "BTC", sol_tx: "SOL" };
const NATIVE_FIELDS = {
  eth_tx: ["value", "max_fee", "max_fee_per_gas", "max_priority_fee_per_gas", "gas_price"],
  psbt: ["total_in", "total_out", "fee", "sent", "amount"], sol_tx: ["fee", "lamports"] };

// the text of field ``k`` of ``obj`` (``top``: the summary), with its unit if it is an amount
function valueText(top, obj, k, name) {
  const v = obj[k];
  const native = NATIVE[top.type];
  if (k === "amount" && typeof obj.asset === "string") {
    return UNITS[obj.asset] || obj.decimals != null ? amountText(v, obj.asset, obj.decimals, obj.symbol) : tokenText(v, obj.asset);
  }
  if (k === "amount" && obj.decimals != null) return amountText(v, obj.mint ? "SPL:" + obj.mint : null, obj.decimals, obj.symbol);
  if (top.type === "eth_tx" && name === "call.amount" && top.to) return tokenText(v, "ERC20:" + top.to);
  if (native && (NATIVE_FIELDS[top.type] || []).includes(k)) {
    return amountText(v, native, null, null, obj[k + "_" + native.toLowerCase()]);
  }
  return Array.isArray(v) ? v.join(", ") : String(v);
}

function fieldRows(obj, prefix, top) {
  top = top || obj || {};
  const rows = [];
  const native = NATIVE[top.type];
  for (const [k, v] of Object.entries(obj || {})) {
    const name = prefix ? prefix + "." + k : k;
    // the decoder's own decimal of an amount shown with its unit (value_eth, fee_btc...): one row
    const base = native && k.endsWith("_" + native.toLowerCase()) ? k.slice(0, -native.length - 1) : null;
    if (base !== null && base in obj && (NATIVE_FIELDS[top.type] || []).includes(base)) continue;
    if (v !== null && typeof v === "object" && !Array.isArray(v)) rows.push(...fieldRows(v, name, top));
    else if (Array.isArray(v) && v.length && typeof v[0] === "object") {
      v.forEach((item, i) => {
        const sub = fieldRows(item, name + "[" + i + "]", top);
        if (item && item.change) sub.forEach((r) => r.classList.add("change"));
        rows.push(...sub);
      });
    } else rows.push(el("tr", {}, el("th", { text: name }), el("td", { class: "mono", text: valueText(top, obj, k, name) })));
  }
  return rows;
}

async function requestPage(id) {
  const r = await api("GET", "sign-requests/" + seg(id));
  const st = (r.request && r.request.statement) || {};
  const head = [["Request", r.request_id], ["Status", r.status], ["Key", r.key_id], ["Policy rule", r.rule || "-"],
    ["Initiator", r.initiator || st.initiator], ["Expires", when(r.expires_at || st.expires_at)],
    ["Decisions", (r.decisions || []).map((d) => d.approver + " " + d.decision + (d.reason ? " (" + d.reason + ")" : "")).join(", ") || "none yet"]];
  const decoded = r.decoded || {};
  const parts = [el("h2", { text: "Sign request" }),
    el("table", { id: "overview" }, ...head.map(([k, v]) => el("tr", {}, el("th", { text: k }), el("td", { class: "mono", text: String(v) })))),
    el("h3", { text: "What every signer decoded" }),
    el("table", { id: "decoded" }, ...fieldRows(decoded.summary || decoded))];
  if (r.status === "pending") {
    const approve = el("button", { id: "approve", type: "button", text: "Approve" });
    const reject = el("button", { id: "reject", type: "button", text: "Reject" });
    const reason = el("input", { id: "reason", maxlength: "200", size: "50", placeholder: "why (signed with the rejection)" });
    approve.addEventListener("click", () => decide(r, "approve"));
    reject.addEventListener("click", () => {
      const why = reason.value.trim();
      if (!why) { showError(new Error("a rejection needs a reason")); return; }
      decide(r, "reject", why);
    });
    parts.push(el("p", {}, approve), el("p", {}, el("label", { text: "Reason " }, reason), " ", reject));
  }
  if (r.error) parts.push(el("p", { class: "error", id: "request-error", text: r.error.code + ": " + r.error.message }));
  if (r.signature) parts.push(el("p", { class: "ok", id: "signed", text: "Signed" }));
  const audit = await api("GET", "sign-requests/" + seg(id) + "/audit");
  parts.push(el("h3", { text: "Audit entries" }), el("table", { id: "audit" }, ...audit.entries.map((e) =>
    el("tr", {}, el("td", { text: when(e.time) }), el("td", { text: e.actor }), el("td", { text: e.action }),
      el("td", { text: e.decision }), el("td", { text: e.reason || "" })))));
  main().replaceChildren(...parts);
}

async function decide(shown, decision, reason) {
  const id = shown.request_id;
  try {
    const q = new URLSearchParams({ decision });
    if (reason) q.set("reason", reason);
    const got = await api("GET", "sign-requests/" + seg(id) + "/approval-statement?" + q.toString());
    const challenge = await checkedChallenge(shown, decision, got);
    const cred = await navigator.credentials.get({ publicKey: {
      challenge, rpId: got.rp_id, userVerification: "required", timeout: 60000,
      allowCredentials: got.credential_ids.map((c) => ({ type: "public-key", id: unb64url(c) })) } });
    await api("POST", "sign-requests/" + seg(id) + "/decisions",
      { approval: { statement: got.statement, webauthn: assertionJSON(cred) } });
    await requestPage(id);
  } catch (e) { showError(e); }
}

// ------------------------------------------------------------------ routing

async function route() {
  if (location.pathname === "/ui/enrol") { enrolPage(); return; }
  let me;
  try { me = await api("GET", "me"); } catch (e) { if (e.status === 401) { signInPage(); return; } showError(e); return; }
  $("#nav").hidden = false;
  $("#who").textContent = me.user;
  const h = location.hash || "#/";
  try {
    if (h.startsWith("#/r/")) await requestPage(decodeURIComponent(h.slice(4)));
    else await listPage(h === "#/history" ? "history" : "pending");
  } catch (e) { showError(e); }
}

document.addEventListener("DOMContentLoaded", () => {
  $("#sign-out").addEventListener("click", async () => { await api("POST", "sign-out", {}); route(); });
  window.addEventListener("hashchange", route);
  route();
});
