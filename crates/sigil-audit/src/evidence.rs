//! Evidence bundles: one tar archive holding the audit entries of a period with their inclusion
//! proofs, the checkpoint they are proven against, and whatever else the server adds (CA
//! certificates, inventory snapshot, ...), with a manifest of SHA-256 digests that the log key
//! signs (a C2SP signed note, so any signed-note verifier can check it).
//!
//! ```text
//! MANIFEST                 signed note: header lines, then "<sha256 hex> <path>" per file
//! checkpoint               the signed checkpoint the proofs are against
//! audit/entries.jsonl      canonical entries, one per line, ascending seq
//! audit/proofs.jsonl       {"seq":..,"leaf":..,"proof":[..]} per entry, same order
//! ...                      other files, listed in MANIFEST
//! ```

use std::collections::BTreeMap;
use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::checkpoint::LogVerifier;
use crate::tree::{leaf_hash, verify_inclusion};
use crate::{AuditEntry, AuditError, Hash, LogKey, SignedCheckpoint};

pub const BUNDLE_FORMAT: &str = "sigil-evidence/1";
pub const MANIFEST: &str = "MANIFEST";
pub const CHECKPOINT: &str = "checkpoint";
pub const ENTRIES: &str = "audit/entries.jsonl";
pub const PROOFS: &str = "audit/proofs.jsonl";
/// Largest bundle member the verifier reads into memory.
const MAX_MEMBER_BYTES: u64 = 1 << 31;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofLine {
    pub seq: u64,
    pub leaf: String,
    pub proof: Vec<String>,
}

/// The period a bundle covers, as written in its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    /// Fixed-width RFC 3339 UTC (see `entry::format_time`), inclusive.
    pub since: String,
    /// Exclusive.
    pub until: String,
}

/// Collects a bundle's files, then writes the archive with its signed manifest.
pub struct BundleBuilder {
    files: BTreeMap<String, Vec<u8>>,
}

impl BundleBuilder {
    /// Starts with the entries, their proofs and the checkpoint; `entries` are `(seq, canonical
    /// text, leaf, proof)`.
    pub fn new(
        checkpoint: &SignedCheckpoint,
        entries: &[(u64, String, Hash, Vec<Hash>)],
    ) -> Result<Self, AuditError> {
        let mut lines = String::new();
        let mut proofs = String::new();
        for (seq, text, leaf, proof) in entries {
            lines.push_str(text);
            lines.push('\n');
            let line = ProofLine {
                seq: *seq,
                leaf: leaf.to_string(),
                proof: proof.iter().map(Hash::to_string).collect(),
            };
            proofs.push_str(
                &serde_json::to_string(&line).map_err(|e| AuditError::Export(e.to_string()))?,
            );
            proofs.push('\n');
        }
        let mut files = BTreeMap::new();
        files.insert(CHECKPOINT.to_owned(), checkpoint.note.clone().into_bytes());
        files.insert(ENTRIES.to_owned(), lines.into_bytes());
        files.insert(PROOFS.to_owned(), proofs.into_bytes());
        Ok(Self { files })
    }

    pub fn add(&mut self, path: &str, contents: Vec<u8>) {
        self.files.insert(path.to_owned(), contents);
    }

    /// The archive: the signed MANIFEST first, then every file in path order.
    pub fn finish(
        self,
        key: &LogKey,
        period: &Period,
        checkpoint_size: u64,
        mtime: u64,
    ) -> Result<Vec<u8>, AuditError> {
        let mut text = format!(
            "{BUNDLE_FORMAT}\norigin {}\nperiod {} {}\ncheckpoint {checkpoint_size}\n",
            key.origin(),
            period.since,
            period.until
        );
        for (path, contents) in &self.files {
            text.push_str(&format!("{} {path}\n", sha256_hex(contents)));
        }
        let manifest = key.sign_note(&text)?;
        let mut builder = tar::Builder::new(Vec::new());
        let mut append = |path: &str, data: &[u8]| -> Result<(), AuditError> {
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(mtime);
            header.set_entry_type(tar::EntryType::Regular);
            builder
                .append_data(&mut header, path, data)
                .map_err(|e| AuditError::Export(format!("{path}: {e}")))
        };
        append(MANIFEST, manifest.as_bytes())?;
        for (path, contents) in &self.files {
            append(path, contents)?;
        }
        builder
            .into_inner()
            .map_err(|e| AuditError::Export(e.to_string()))
    }
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data))
}

/// What a valid bundle proves.
#[derive(Debug, Clone)]
pub struct BundleReport {
    pub origin: String,
    pub period: Period,
    pub checkpoint: SignedCheckpoint,
    pub entries: u64,
    /// Every file the manifest lists (all digests matched).
    pub files: Vec<String>,
}

/// Verify a bundle with the log's verifier key: the manifest's signature, every file's digest
/// (no file missing, none extra), the checkpoint's signature, and every entry's inclusion in it.
/// The first failure is the error, naming the file or entry.
pub fn verify_bundle(archive: &[u8], verifier: &LogVerifier) -> Result<BundleReport, AuditError> {
    let bad = |m: String| AuditError::Export(m);
    let mut members: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut tar = tar::Archive::new(archive);
    for member in tar
        .entries()
        .map_err(|e| bad(format!("not a tar archive: {e}")))?
    {
        let mut member = member.map_err(|e| bad(format!("corrupt archive: {e}")))?;
        let path = member
            .path()
            .map_err(|e| bad(format!("bad member name: {e}")))?
            .to_string_lossy()
            .into_owned();
        if member.header().entry_type() != tar::EntryType::Regular {
            return Err(bad(format!("{path}: not a regular file")));
        }
        let size = member
            .header()
            .size()
            .map_err(|e| bad(format!("{path}: {e}")))?;
        if size > MAX_MEMBER_BYTES {
            return Err(bad(format!("{path}: too large")));
        }
        let mut data = Vec::with_capacity(size as usize);
        member
            .read_to_end(&mut data)
            .map_err(|e| bad(format!("{path}: {e}")))?;
        if members.insert(path.clone(), data).is_some() {
            return Err(bad(format!("{path}: appears twice")));
        }
    }

    let manifest = members
        .remove(MANIFEST)
        .ok_or_else(|| bad("no MANIFEST".into()))?;
    let text = verifier
        .open_note(&manifest)
        .map_err(|e| AuditError::Signature(format!("MANIFEST: {e}")))?;
    let mut lines = text.lines();
    let mut field = |name: &str| -> Result<String, AuditError> {
        let line = lines.next().unwrap_or_default();
        if name.is_empty() {
            return if line == BUNDLE_FORMAT {
                Ok(String::new())
            } else {
                Err(bad(format!("MANIFEST: unsupported format `{line}`")))
            };
        }
        line.strip_prefix(name)
            .and_then(|v| v.strip_prefix(' '))
            .map(str::to_owned)
            .ok_or_else(|| bad(format!("MANIFEST: expected `{name}` line")))
    };
    field("")?;
    let origin = field("origin")?;
    let period_text = field("period")?;
    let size_text = field("checkpoint")?;
    let (since, until) = period_text
        .split_once(' ')
        .ok_or_else(|| bad("MANIFEST: bad period".into()))?;
    let period = Period {
        since: since.to_owned(),
        until: until.to_owned(),
    };
    let mut listed = Vec::new();
    for line in lines {
        let (digest, path) = line
            .split_once(' ')
            .ok_or_else(|| bad(format!("MANIFEST: bad line `{line}`")))?;
        let data = members
            .get(path)
            .ok_or_else(|| bad(format!("{path}: listed in MANIFEST but missing")))?;
        if sha256_hex(data) != digest {
            return Err(bad(format!(
                "{path}: SHA-256 does not match MANIFEST: the file was changed"
            )));
        }
        listed.push(path.to_owned());
    }
    if let Some(extra) = members.keys().find(|p| !listed.contains(p)) {
        return Err(bad(format!("{extra}: not listed in MANIFEST")));
    }

    let checkpoint = verifier.open_checkpoint(
        members
            .get(CHECKPOINT)
            .ok_or_else(|| bad("no checkpoint".into()))?,
    )?;
    if checkpoint.size.to_string() != size_text || checkpoint.origin != origin {
        return Err(bad(
            "MANIFEST does not describe the bundled checkpoint".into()
        ));
    }

    let entries = std::str::from_utf8(members.get(ENTRIES).map(Vec::as_slice).unwrap_or_default())
        .map_err(|e| bad(format!("{ENTRIES}: {e}")))?;
    let proofs = std::str::from_utf8(members.get(PROOFS).map(Vec::as_slice).unwrap_or_default())
        .map_err(|e| bad(format!("{PROOFS}: {e}")))?;
    let mut count = 0u64;
    let mut proof_lines = proofs.lines();
    let mut previous: Option<u64> = None;
    for text in entries.lines() {
        let entry = AuditEntry::from_canonical(text)
            .map_err(|e| bad(format!("{ENTRIES} line {}: {e}", count + 1)))?;
        let seq = entry.seq;
        let proof_line = proof_lines
            .next()
            .ok_or_else(|| bad(format!("entry {seq}: no proof")))?;
        let proof: ProofLine = serde_json::from_str(proof_line)
            .map_err(|e| bad(format!("entry {seq}: bad proof: {e}")))?;
        if proof.seq != seq || previous.is_some_and(|p| p >= seq) {
            return Err(bad(format!("entry {seq}: out of order")));
        }
        if entry.time < period.since || entry.time >= period.until {
            return Err(bad(format!("entry {seq}: outside the bundle's period")));
        }
        let leaf = leaf_hash(text);
        let hashes = proof
            .proof
            .iter()
            .map(|h| Hash::parse_hash(h))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("entry {seq}: bad proof hash: {e}")))?;
        verify_inclusion(&hashes, checkpoint.size, checkpoint.root, seq, leaf)
            .map_err(|e| AuditError::Proof(format!("entry {seq}: {e}")))?;
        previous = Some(seq);
        count += 1;
    }
    if proof_lines.next().is_some() {
        return Err(bad(format!("{PROOFS} has more proofs than entries")));
    }
    Ok(BundleReport {
        origin,
        period,
        checkpoint,
        entries: count,
        files: listed,
    })
}
