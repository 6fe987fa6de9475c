// Sigil console: check an audit entry's inclusion proof in the browser, independently of the
// server's own code. The entry's exact bytes are hashed (RFC 9162 leaf), the audit path is
// walked to a root (RFC 9162 section 2.1.3.2), the root and size are compared with the
// checkpoint's, and the checkpoint's Ed25519 signature (a C2SP signed note) is verified with
// the log's public key, all with WebCrypto.
(function () {
  "use strict";
  var enc = new TextEncoder();

  function b64(s) {
    var bin = atob(s), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  function concat(parts) {
    var n = 0, i;
    for (i = 0; i < parts.length; i++) n += parts[i].length;
    var out = new Uint8Array(n), at = 0;
    for (i = 0; i < parts.length; i++) { out.set(parts[i], at); at += parts[i].length; }
    return out;
  }
  function equal(a, b) {
    if (a.length !== b.length) return false;
    for (var i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }
  async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  }
  function node(l, r) { return sha256(concat([Uint8Array.of(1), l, r])); }

  // RFC 9162 2.1.3.2: the root an inclusion proof leads to, or null if it cannot be one.
  async function rootFromProof(index, size, leaf, path) {
    if (index >= size) return null;
    var fn = index, sn = size - 1, r = leaf;
    for (var i = 0; i < path.length; i++) {
      var p = path[i];
      if (sn === 0) return null;
      if (fn % 2 === 1 || fn === sn) {
        r = await node(p, r);
        while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
      } else {
        r = await node(r, p);
      }
      fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
    }
    return sn === 0 ? r : null;
  }

  // A C2SP signed note: its text, and its signatures by key name.
  function parseNote(note) {
    var split = note.indexOf("\n\n");
    if (split < 0) throw new Error("the checkpoint is not a signed note");
    var text = note.slice(0, split + 1);
    var sigs = note.slice(split + 2).split("\n").filter(function (l) { return l.length; });
    return { text: text, lines: text.split("\n"), signatures: sigs };
  }

  async function verifyNote(note, vkey) {
    // name+hash+key, where the base64 key may itself contain "+".
    var first = vkey.indexOf("+"), second = vkey.indexOf("+", first + 1);
    if (first < 1 || second !== first + 9) throw new Error("the log key is not a note verifier key");
    var name = vkey.slice(0, first), keyHash = vkey.slice(first + 1, second), key = b64(vkey.slice(second + 1));
    if (key[0] !== 1 || key.length !== 33) throw new Error("the log key is not an Ed25519 key");
    for (var i = 0; i < note.signatures.length; i++) {
      var m = /^\u2014 (\S+) (\S+)$/.exec(note.signatures[i]);
      if (!m || m[1] !== name) continue;
      var sig = b64(m[2]);
      var hash = Array.from(sig.slice(0, 4)).map(function (b) { return b.toString(16).padStart(2, "0"); }).join("");
      if (hash !== keyHash) continue;
      var pub = await crypto.subtle.importKey("raw", key.slice(1), { name: "Ed25519" }, false, ["verify"]);
      return crypto.subtle.verify({ name: "Ed25519" }, pub, sig.slice(4), enc.encode(note.text));
    }
    return false;
  }

  async function check(box) {
    var out = box.querySelector("[data-result]");
    try {
      var seq = Number(box.dataset.seq);
      var leaf = await sha256(concat([Uint8Array.of(0), enc.encode(box.dataset.entry)]));
      if (!equal(leaf, b64(box.dataset.leaf))) throw new Error("the entry's bytes do not hash to the proven leaf: the entry shown is not the one logged");
      var note = parseNote(box.dataset.checkpoint);
      var keyName = box.dataset.vkey.slice(0, box.dataset.vkey.indexOf("+"));
      if (note.lines[0] !== keyName) throw new Error("the checkpoint is for log " + note.lines[0] + ", the key for " + keyName);
      if (!/^[0-9]+$/.test(note.lines[1])) throw new Error("the checkpoint's size line is not a number");
      var size = Number(note.lines[1]), root = b64(note.lines[2]);
      if (size !== Number(box.dataset.size)) throw new Error("the proof is for a tree of " + box.dataset.size + " entries, the checkpoint for " + size);
      var path = JSON.parse(box.dataset.proof).map(b64);
      var computed = await rootFromProof(seq, size, leaf, path);
      if (!computed || !equal(computed, root)) throw new Error("the audit path does not lead to the checkpoint's root");
      if (!(await verifyNote(note, box.dataset.vkey))) throw new Error("the checkpoint's signature does not verify under the log's key");
      out.className = "done";
      var keyId = box.dataset.vkey.split("+")[1];
      out.textContent = "Verified in your browser: entry " + seq + " is in the log of " + size +
        " entries whose checkpoint is signed by " + keyName + " with key " + keyId +
        " (compare it with the log key you keep).";
    } catch (e) {
      out.className = "problem";
      out.textContent = "Not verified: " + e.message + ".";
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    var boxes = document.querySelectorAll("[data-inclusion-proof]");
    for (var i = 0; i < boxes.length; i++) {
      (function (box) {
        check(box);
        var again = box.querySelector("[data-check-again]");
        if (again) again.addEventListener("click", function () { check(box); });
      })(boxes[i]);
    }
  });
})();
