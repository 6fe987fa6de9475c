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
    let mut members = read_members(archive)?;
    let manifest = members
        .remove(MANIFEST)
        .ok_or_else(|| bad("no MANIFEST".into()))?;
    let text = verifier
        .open_note(&manifest)
        .map_err(|e| AuditError::Signature(format!("MANIFEST: {e}")))?;
    let mut lines = text.lines();
    let header = ManifestHeader::parse(&mut lines)?;
    let listed = check_listed_files(lines, &members)?;
    let checkpoint = verifier.open_checkpoint(
        members
            .get(CHECKPOINT)
            .ok_or_else(|| bad("no checkpoint".into()))?,
    )?;
    if checkpoint.size.to_string() != header.checkpoint_size || checkpoint.origin != header.origin {
        return Err(bad(
            "MANIFEST does not describe the bundled checkpoint".into()
        ));
    }
    let entries = verify_entries(&members, &header.period, &checkpoint)?;
    Ok(BundleReport {
        origin: header.origin,
        period: header.period,
        checkpoint,
        entries,
        files: listed,
    })
}

/// A malformed bundle.
fn bad(m: String) -> AuditError {
    AuditError::Export(m)
}

/// The archive's members by path: regular files only, each at most [`MAX_MEMBER_BYTES`], no
/// path twice.
fn read_members(archive: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, AuditError> {
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
    Ok(members)
}

/// The header lines of a (signature-checked) MANIFEST.
struct ManifestHeader {
    origin: String,
    period: Period,
    /// The checkpoint size, as written.
    checkpoint_size: String,
}

impl ManifestHeader {
    /// Read the header from the first lines of `lines`, leaving the file lines.
    fn parse(lines: &mut std::str::Lines<'_>) -> Result<Self, AuditError> {
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
        let checkpoint_size = field("checkpoint")?;
        let (since, until) = period_text
            .split_once(' ')
            .ok_or_else(|| bad("MANIFEST: bad period".into()))?;
        let period = Period {
            since: since.to_owned(),
            until: until.to_owned(),
        };
        Ok(Self {
            origin,
            period,
            checkpoint_size,
        })
    }
}

/// Check the MANIFEST's file lines (`<sha256 hex> <path>`) against `members`: every listed file
/// present with that digest, none unlisted, the required ones there. The listed paths, in
/// MANIFEST order.
fn check_listed_files(
    lines: std::str::Lines<'_>,
    members: &BTreeMap<String, Vec<u8>>,
) -> Result<Vec<String>, AuditError> {
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
    for required in [CHECKPOINT, ENTRIES, PROOFS] {
        if !listed.iter().any(|p| p == required) {
            return Err(bad(format!("{required}: missing from the bundle")));
        }
    }
    Ok(listed)
}

/// Check every bundled entry against its proof line: in ascending order, inside `period`, and
/// included in `checkpoint`; no proof left over. The number of entries.
fn verify_entries(
    members: &BTreeMap<String, Vec<u8>>,
    period: &Period,
    checkpoint: &SignedCheckpoint,
) -> Result<u64, AuditError> {
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
        verify_entry_inclusion(text, seq, &proof, checkpoint)?;
        previous = Some(seq);
        count += 1;
    }
    if proof_lines.next().is_some() {
        return Err(bad(format!("{PROOFS} has more proofs than entries")));
    }
    Ok(count)
}

/// Check that entry `seq` (canonical `text`) is in `checkpoint`'s tree, by its proof.
fn verify_entry_inclusion(
    text: &str,
    seq: u64,
    proof: &ProofLine,
    checkpoint: &SignedCheckpoint,
) -> Result<(), AuditError> {
    let leaf = leaf_hash(text);
    let hashes = proof
        .proof
        .iter()
        .map(|h| Hash::parse_hash(h))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("entry {seq}: bad proof hash: {e}")))?;
    verify_inclusion(&hashes, checkpoint.size, checkpoint.root, seq, leaf)
        .map_err(|e| AuditError::Proof(format!("entry {seq}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{self, Hashes};
    use crate::{Actor, AuditEvent, Outcome};
    use serde_json::json;
    use time::{Duration, OffsetDateTime};

    const ORIGIN: &str = "test.example/audit";

    struct Fixture {
        key: LogKey,
        archive: Vec<u8>,
    }

    /// A log of 20 entries one minute apart; the bundle covers minutes 5..15.
    fn fixture() -> Fixture {
        let key = LogKey::from_pkcs8(ORIGIN, &LogKey::generate_pkcs8().unwrap()).unwrap();
        let start = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
        let mut hashes = Hashes::new();
        let mut texts = Vec::new();
        for seq in 0..20u64 {
            let text = AuditEvent::new(
                start + Duration::minutes(seq as i64),
                Actor::system("test"),
                "test.event",
                format!("thing:{seq}"),
                Outcome::Success,
                json!({"n": seq}),
            )
            .into_entry(seq)
            .to_canonical()
            .unwrap();
            tree::append(seq, &[tree::leaf_hash(&text)], &mut hashes).unwrap();
            texts.push(text);
        }
        let checkpoint = key
            .sign_checkpoint(20, tree::root(20, &hashes).unwrap())
            .unwrap();
        let entries: Vec<_> = (5..15u64)
            .map(|seq| {
                let text = texts[seq as usize].clone();
                let leaf = tree::leaf_hash(&text);
                (
                    seq,
                    text,
                    leaf,
                    tree::inclusion_proof(seq, 20, &hashes).unwrap(),
                )
            })
            .collect();
        let period = Period {
            since: crate::entry::format_time(start + Duration::minutes(5)),
            until: crate::entry::format_time(start + Duration::minutes(15)),
        };
        let mut builder = BundleBuilder::new(&checkpoint, &entries).unwrap();
        builder.add("ca/root.crt", b"-----BEGIN CERTIFICATE-----\n".to_vec());
        builder.add("inventory/devices.json", b"[]\n".to_vec());
        let archive = builder.finish(&key, &period, 20, 0).unwrap();
        Fixture { key, archive }
    }

    fn verifier(key: &LogKey) -> LogVerifier {
        LogVerifier::new(&key.verifier_key()).unwrap()
    }

    /// Rebuild the archive with `edit` applied to its members (MANIFEST left as it was).
    fn rewrite(archive: &[u8], edit: impl Fn(&mut BTreeMap<String, Vec<u8>>)) -> Vec<u8> {
        let mut members = BTreeMap::new();
        let mut order = Vec::new();
        for m in tar::Archive::new(archive).entries().unwrap() {
            let mut m = m.unwrap();
            let path = m.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            m.read_to_end(&mut data).unwrap();
            order.push(path.clone());
            members.insert(path, data);
        }
        edit(&mut members);
        let mut out = tar::Builder::new(Vec::new());
        for path in order
            .iter()
            .chain(members.keys().filter(|k| !order.contains(k)))
        {
            if let Some(data) = members.get(path) {
                let mut h = tar::Header::new_ustar();
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                out.append_data(&mut h, path, data.as_slice()).unwrap();
            }
        }
        out.into_inner().unwrap()
    }

    fn error_of(archive: &[u8], key: &LogKey) -> String {
        verify_bundle(archive, &verifier(key))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn an_intact_bundle_verifies() {
        let f = fixture();
        let report = verify_bundle(&f.archive, &verifier(&f.key)).unwrap();
        assert_eq!(report.entries, 10);
        assert_eq!(report.checkpoint.size, 20);
        assert_eq!(report.origin, ORIGIN);
        assert!(report.files.contains(&"inventory/devices.json".to_owned()));
    }

    #[test]
    fn a_changed_file_is_named() {
        let f = fixture();
        let bad = rewrite(&f.archive, |m| {
            m.insert("inventory/devices.json".into(), b"[{}]\n".to_vec());
        });
        let e = error_of(&bad, &f.key);
        assert!(
            e.contains("inventory/devices.json") && e.contains("changed"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_or_extra_file_is_named() {
        let f = fixture();
        let e = error_of(
            &rewrite(&f.archive, |m| {
                m.remove("ca/root.crt");
            }),
            &f.key,
        );
        assert!(e.contains("ca/root.crt") && e.contains("missing"), "{e}");
        let e = error_of(
            &rewrite(&f.archive, |m| {
                m.insert("extra.txt".into(), b"hi".to_vec());
            }),
            &f.key,
        );
        assert!(e.contains("extra.txt") && e.contains("not listed"), "{e}");
    }

    #[test]
    fn a_manifest_signed_by_another_key_is_refused() {
        let f = fixture();
        let other = LogKey::from_pkcs8(ORIGIN, &LogKey::generate_pkcs8().unwrap()).unwrap();
        let e = error_of(&f.archive, &other);
        assert!(e.contains("MANIFEST"), "{e}");
    }

    #[test]
    fn a_re_signed_manifest_still_needs_the_entries_in_the_checkpoint() {
        // Someone holding the key could re-sign a manifest over an edited entry, but the entry's
        // inclusion proof against the (signed) checkpoint then fails and names the entry.
        let f = fixture();
        let edited = rewrite(&f.archive, |m| {
            let entries = String::from_utf8(m[ENTRIES].clone()).unwrap();
            m.insert(
                ENTRIES.into(),
                entries.replace("thing:7", "thing:8").into_bytes(),
            );
            let manifest = f.key.sign_note(&manifest_text(m)).unwrap();
            m.insert(MANIFEST.into(), manifest.into_bytes());
        });
        let e = error_of(&edited, &f.key);
        assert!(e.contains("entry 7"), "{e}");
    }

    /// The manifest text the builder would write for these members.
    fn manifest_text(members: &BTreeMap<String, Vec<u8>>) -> String {
        let old = String::from_utf8(members[MANIFEST].clone()).unwrap();
        let mut text: String = old.lines().take(4).map(|l| format!("{l}\n")).collect();
        for (path, data) in members.iter().filter(|(p, _)| p.as_str() != MANIFEST) {
            text.push_str(&format!("{} {path}\n", sha256_hex(data)));
        }
        text
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let f = fixture();
        for bad in [&b""[..], b"not a tar", &f.archive[..f.archive.len() / 2]] {
            assert!(verify_bundle(bad, &verifier(&f.key)).is_err());
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Any single flipped byte in the archive is either harmless padding or detected.
        #[test]
        fn flipped_bytes_never_verify_a_different_content(pos in 0usize..20_000, bit in 0u8..8) {
            let f = fixture();
            let mut bad = f.archive.clone();
            let pos = pos % bad.len();
            bad[pos] ^= 1 << bit;
            if let Ok(report) = verify_bundle(&bad, &verifier(&f.key)) {
                // Only tar padding or header slack may change without detection.
                let good = verify_bundle(&f.archive, &verifier(&f.key)).unwrap();
                proptest::prop_assert_eq!(report.entries, good.entries);
                proptest::prop_assert_eq!(report.files, good.files);
            }
        }
    }
}
