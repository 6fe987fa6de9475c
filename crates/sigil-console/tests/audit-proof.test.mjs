// The console's in-browser proof checker (assets/audit-proof.js) against an independent
// RFC 9162 Merkle tree and C2SP signed notes made here with Node's own Ed25519: every leaf of
// trees of 1 to 17 entries verifies, and each kind of tampering is caught with its reason.
// Run by tests/audit_proof_js.rs (`node --test`).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, generateKeyPairSync, sign } from "node:crypto";
import { readFileSync } from "node:fs";
import vm from "node:vm";

const script = readFileSync(new URL("../assets/audit-proof.js", import.meta.url), "utf8");

const sha256 = (...parts) => {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return h.digest();
};
const leafHash = (entry) => sha256(Buffer.from([0]), Buffer.from(entry, "utf8"));
const nodeHash = (l, r) => sha256(Buffer.from([1]), l, r);

// RFC 9162 2.1.1: the tree head of `leaves` (already hashed).
function mth(leaves) {
  if (leaves.length === 1) return leaves[0];
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return nodeHash(mth(leaves.slice(0, k)), mth(leaves.slice(k)));
}

// RFC 9162 2.1.3.1: the audit path of leaf `m`.
function path(m, leaves) {
  if (leaves.length === 1) return [];
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return m < k
    ? [...path(m, leaves.slice(0, k)), mth(leaves.slice(k))]
    : [...path(m - k, leaves.slice(k)), mth(leaves.slice(0, k))];
}

// A log key as Sigil writes it (name+keyhash+base64(0x01||key)) and its signer.
function logKey(name) {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const raw = publicKey.export({ format: "der", type: "spki" }).subarray(-32);
  const keyBytes = Buffer.concat([Buffer.from([1]), raw]);
  const hash = sha256(Buffer.from(name + "\n"), keyBytes).subarray(0, 4);
  return {
    vkey: `${name}+${hash.toString("hex")}+${keyBytes.toString("base64")}`,
    sign: (text) => Buffer.concat([hash, sign(null, Buffer.from(text), privateKey)]).toString("base64"),
  };
}

function checkpoint(origin, size, root, key, signer = origin) {
  const text = `${origin}\n${size}\n${root.toString("base64")}\n`;
  return `${text}\n\u2014 ${signer} ${key.sign(text)}\n`;
}

// The page's box for entry `seq`, as the console renders it.
function box(data) {
  const result = { className: "", textContent: "" };
  return {
    dataset: data,
    result,
    querySelector: (sel) => (sel === "[data-result]" ? result : null),
  };
}

// Load the script as the browser does and run its check on `boxes`.
async function check(boxes) {
  let ready;
  const document = {
    querySelectorAll: () => boxes,
    addEventListener: (name, fn) => { if (name === "DOMContentLoaded") ready = fn; },
  };
  const context = vm.createContext({ document, crypto: globalThis.crypto, TextEncoder, atob, Uint8Array, Array, Number, JSON, Math, Error });
  vm.runInContext(script, context);
  ready();
  for (let i = 0; i < 200 && boxes.some((b) => b.result.textContent === ""); i++) {
    await new Promise((r) => setTimeout(r, 5));
  }
  return boxes.map((b) => b.result.textContent);
}

function tree(size) {
  const entries = Array.from({ length: size }, (_, i) => JSON.stringify({ seq: i, action: "device.created", note: "é+/" + i }));
  return { entries, leaves: entries.map(leafHash) };
}

function proofBox(t, seq, key, origin, overrides = {}) {
  const size = t.entries.length;
  return box({
    seq: String(seq),
    entry: t.entries[seq],
    leaf: t.leaves[seq].toString("base64"),
    checkpoint: checkpoint(origin, size, mth(t.leaves), key),
    vkey: key.vkey,
    size: String(size),
    proof: JSON.stringify(path(seq, t.leaves).map((h) => h.toString("base64"))),
    ...overrides,
  });
}

test("every leaf of trees of 1 to 17 entries verifies", async () => {
  const key = logKey("sigil.test/audit");
  for (let size = 1; size <= 17; size++) {
    const t = tree(size);
    const boxes = t.entries.map((_, seq) => proofBox(t, seq, key, "sigil.test/audit"));
    for (const [seq, text] of (await check(boxes)).entries()) {
      assert.match(text, /^Verified in your browser: entry \d+ is in the log of \d+ entries/, `size ${size}, entry ${seq}: ${text}`);
    }
  }
});

test("a key whose base64 holds '+' is read whole", async () => {
  let key;
  do { key = logKey("sigil.test/audit"); } while (!key.vkey.split("+").slice(2).join("+").includes("+"));
  const t = tree(5);
  const [text] = await check([proofBox(t, 3, key, "sigil.test/audit")]);
  assert.match(text, /^Verified/, text);
});

test("tampering is caught, each with its reason", async () => {
  const key = logKey("sigil.test/audit");
  const other = logKey("sigil.test/audit");
  const t = tree(9);
  const root = mth(t.leaves);
  const cases = [
    [{ entry: t.entries[4].replace("device.created", "device.retired") }, "do not hash to the proven leaf"],
    [{ proof: JSON.stringify(path(5, t.leaves).map((h) => h.toString("base64"))) }, "does not lead to the checkpoint's root"],
    [{ proof: JSON.stringify([]) }, "does not lead to the checkpoint's root"],
    [{ size: "8" }, "the proof is for a tree of 8 entries, the checkpoint for 9"],
    [{ checkpoint: checkpoint("sigil.test/audit", 9, root, other) }, "signature does not verify"],
    [{ checkpoint: checkpoint("sigil.test/audit", 9, root, key).replace(/ (\S+)\n$/, " AAAA$1\n") }, "signature does not verify"],
    [{ checkpoint: checkpoint("elsewhere/log", 9, root, key, "sigil.test/audit") }, "the checkpoint is for log elsewhere/log"],
    [{ checkpoint: `sigil.test/audit\n9\n${root.toString("base64")}\n` }, "not a signed note"],
    [{ checkpoint: checkpoint("sigil.test/audit", "9e0", root, key) }, "size line is not a number"],
    [{ vkey: "sigil.test/audit+1234+AAAA" }, "not a note verifier key"],
  ];
  const texts = await check(cases.map(([o]) => proofBox(t, 4, key, "sigil.test/audit", o)));
  for (const [i, [, reason]] of cases.entries()) {
    assert.ok(texts[i].startsWith("Not verified: ") && texts[i].includes(reason), `case ${i}: ${texts[i]}`);
  }
});
