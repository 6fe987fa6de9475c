//! The audit export format and its offline verifier.
//!
//! An export is JSON Lines:
//!
//! ```text
//! {"format":"sigil-audit-export/1","origin":"<log origin>","size":<entries>}
//! {"checkpoint":"<signed note>"}                       -- zero or more, ascending size
//! {"entry":<canonical entry>,"leaf":"<base64 hash>"}   -- one per entry, in seq order
//! ```
//!
//! `entry` is the stored canonical text, embedded verbatim; `leaf` is the leaf hash the log
//! recorded when the entry was appended. The verifier trusts nothing in the file except what the
//! log key signed: it recomputes every leaf and the root at every checkpoint size, streaming, in
//! O(log n) memory.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::checkpoint::LogVerifier;
use crate::tree::{Frontier, leaf_hash};
use crate::{AuditEntry, AuditError, Hash, SignedCheckpoint};

pub const EXPORT_FORMAT: &str = "sigil-audit-export/1";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportHeader {
    pub format: String,
    pub origin: String,
    pub size: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointLine {
    checkpoint: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryLine<'a> {
    #[serde(borrow)]
    entry: &'a RawValue,
    leaf: Option<String>,
}

/// Writing side: the lines of an export, each without its newline.
pub fn header_line(origin: &str, size: u64) -> Result<String, AuditError> {
    serde_json::to_string(&ExportHeader {
        format: EXPORT_FORMAT.into(),
        origin: origin.into(),
        size,
    })
    .map_err(|e| AuditError::Export(e.to_string()))
}

pub fn checkpoint_line(note: &str) -> Result<String, AuditError> {
    serde_json::to_string(&CheckpointLine {
        checkpoint: note.into(),
    })
    .map_err(|e| AuditError::Export(e.to_string()))
}

/// `canonical_entry` is embedded verbatim, so the verifier hashes exactly the stored bytes.
/// `stored_leaf` is `None` when the log has no leaf hash for the entry (itself a sign of damage).
pub fn entry_line(canonical_entry: &str, stored_leaf: Option<&Hash>) -> String {
    match stored_leaf {
        Some(leaf) => format!(r#"{{"entry":{canonical_entry},"leaf":"{leaf}"}}"#),
        None => format!(r#"{{"entry":{canonical_entry}}}"#),
    }
}

/// Something the verifier found wrong. Each names the first entry (or range) concerned.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// The line at this position does not parse as an entry.
    Malformed { position: u64, reason: String },
    /// The entry at `position` says it is entry `seq`: entries were deleted, inserted or
    /// reordered here.
    OutOfSequence { position: u64, seq: u64 },
    /// The entry's bytes do not hash to the leaf recorded when it was appended: it was edited.
    Edited { seq: u64 },
    /// Entries `[from, size)` do not hash to the root signed at `size`; everything before
    /// `from` matched a signed root. `kept` is set when the root is the user's own checkpoint.
    RootMismatch { from: u64, size: u64, kept: bool },
    /// A signed checkpoint covers `signed` entries but the export holds only `present`: the
    /// tail `[present, signed)` was removed.
    Truncated {
        present: u64,
        signed: u64,
        kept: bool,
    },
    /// A checkpoint in the export is not validly signed by the log key.
    BadCheckpoint { index: usize, reason: String },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whose = |kept: &bool| {
            if *kept {
                "your checkpoint"
            } else {
                "the log's signed checkpoint"
            }
        };
        match self {
            Problem::Malformed { position, reason } => {
                write!(f, "entry {position}: malformed: {reason}")
            }
            Problem::OutOfSequence { position, seq } => write!(
                f,
                "entry {position}: found entry {seq} in its place: entries were deleted, inserted or reordered here"
            ),
            Problem::Edited { seq } => write!(
                f,
                "entry {seq}: its content does not match the hash recorded when it was logged: it was changed afterwards"
            ),
            Problem::RootMismatch { from, size, kept } => write!(
                f,
                "entries 0..{size} do not hash to the root in {} for size {size}; entries before {from} match, so the first altered entry is in {from}..{}: the log was rewritten",
                whose(kept),
                size.saturating_sub(1)
            ),
            Problem::Truncated {
                present,
                signed,
                kept,
            } => write!(
                f,
                "entry {present}: missing: {} covers {signed} entries but the log holds only {present}: the tail was truncated",
                whose(kept)
            ),
            Problem::BadCheckpoint { index, reason } => {
                write!(f, "checkpoint {index} in the export: {reason}")
            }
        }
    }
}

/// What verification established.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub origin: String,
    /// Entries read.
    pub size: u64,
    /// Root over all entries read.
    pub root: Option<Hash>,
    /// Signed checkpoints whose root the entries reproduce.
    pub checkpoints_matched: usize,
    /// The newest checkpoint the entries reproduce.
    pub latest_verified: Option<SignedCheckpoint>,
    /// Everything found wrong, in file order; the first is the headline.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verify an export against the log's verifier key and, optionally, a checkpoint the user kept
/// from earlier (a signed note). Returns `Err` only when the export cannot be read at all
/// (wrong format, wrong log, unverifiable kept checkpoint); everything wrong with the log's
/// content is a [`Problem`] in the report.
pub fn verify_export(
    export: &str,
    verifier: &LogVerifier,
    kept: Option<&str>,
) -> Result<VerifyReport, AuditError> {
    verify_export_from(export.as_bytes(), verifier, kept)
}

/// [`verify_export`] reading line by line, so an export of any size verifies in O(log n) memory.
pub fn verify_export_from(
    export: impl std::io::BufRead,
    verifier: &LogVerifier,
    kept: Option<&str>,
) -> Result<VerifyReport, AuditError> {
    const MAX_PROBLEMS: usize = 100;
    let mut lines = export
        .lines()
        .filter(|l| l.as_ref().map_or(true, |l| !l.is_empty()));
    let read_error = |e: std::io::Error| AuditError::Export(format!("reading the export: {e}"));
    let header: ExportHeader = serde_json::from_str(
        &lines
            .next()
            .ok_or_else(|| AuditError::Export("empty export".into()))?
            .map_err(read_error)?,
    )
    .map_err(|e| AuditError::Export(format!("bad header: {e}")))?;
    if header.format != EXPORT_FORMAT {
        return Err(AuditError::Export(format!(
            "unsupported format `{}`",
            header.format
        )));
    }
    if header.origin != verifier.origin() {
        return Err(AuditError::Export(format!(
            "export is of log `{}` but the key is for `{}`",
            header.origin,
            verifier.origin()
        )));
    }
    let mut report = VerifyReport {
        origin: header.origin.clone(),
        ..VerifyReport::default()
    };

    // Targets: size -> (root, is the user's kept checkpoint, the checkpoint).
    let mut targets: BTreeMap<u64, Vec<(bool, SignedCheckpoint)>> = BTreeMap::new();
    if let Some(kept) = kept {
        let cp = verifier
            .open_checkpoint(kept.as_bytes())
            .map_err(|e| AuditError::Checkpoint(format!("your checkpoint: {e}")))?;
        targets.entry(cp.size).or_default().push((true, cp));
    }

    let mut frontier = Frontier::default();
    let mut last_matched = 0u64;
    let mut checkpoint_index = 0usize;
    for line in lines {
        let line = line.map_err(read_error)?;
        let line = line.as_str();
        if report.problems.len() >= MAX_PROBLEMS {
            break;
        }
        if line.starts_with(r#"{"checkpoint""#) {
            let parsed: CheckpointLine = serde_json::from_str(line)
                .map_err(|e| AuditError::Export(format!("bad checkpoint line: {e}")))?;
            match verifier.open_checkpoint(parsed.checkpoint.as_bytes()) {
                Ok(cp) => targets.entry(cp.size).or_default().push((false, cp)),
                Err(e) => report.problems.push(Problem::BadCheckpoint {
                    index: checkpoint_index,
                    reason: e.to_string(),
                }),
            }
            checkpoint_index += 1;
            continue;
        }
        let position = frontier.size();
        let leaf = match check_entry_line(line, position) {
            Ok(leaf) => leaf,
            Err(problem) => {
                report.problems.push(problem);
                // Hash the bytes as they are, so later roots are still checked.
                leaf_hash(line)
            }
        };
        frontier.push(leaf);
        let size = frontier.size();
        if let Some(at_size) = targets.get(&size) {
            let root = frontier.root();
            for (is_kept, cp) in at_size {
                if cp.root == root {
                    last_matched = size;
                    if !is_kept {
                        report.checkpoints_matched += 1;
                        report.latest_verified = Some(cp.clone());
                    }
                } else {
                    report.problems.push(Problem::RootMismatch {
                        from: last_matched,
                        size,
                        kept: *is_kept,
                    });
                }
            }
        }
    }
    report.size = frontier.size();
    report.root = Some(frontier.root());
    // Targets beyond the end: the log lost its tail (or the export was cut).
    for (size, cps) in targets.range(report.size + 1..) {
        for (is_kept, _) in cps {
            report.problems.push(Problem::Truncated {
                present: report.size,
                signed: *size,
                kept: *is_kept,
            });
        }
    }
    if header.size != report.size && report.problems.is_empty() {
        report.problems.push(Problem::Truncated {
            present: report.size,
            signed: header.size,
            kept: false,
        });
    }
    Ok(report)
}

/// Check one entry line at `position`; its leaf hash if it is sound.
fn check_entry_line(line: &str, position: u64) -> Result<Hash, Problem> {
    let malformed = |reason: String| Problem::Malformed { position, reason };
    let parsed: EntryLine<'_> = serde_json::from_str(line).map_err(|e| malformed(e.to_string()))?;
    let text = parsed.entry.get();
    let entry = AuditEntry::from_canonical(text).map_err(|e| malformed(e.to_string()))?;
    if entry.seq != position {
        return Err(Problem::OutOfSequence {
            position,
            seq: entry.seq,
        });
    }
    let leaf = leaf_hash(text);
    if let Some(stored) = parsed.leaf {
        let stored = Hash::parse_hash(&stored).map_err(|e| malformed(e.to_string()))?;
        if stored != leaf {
            return Err(Problem::Edited { seq: position });
        }
    }
    Ok(leaf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{self, Hashes};
    use crate::{Actor, AuditEvent, LogKey, Outcome};
    use proptest::prelude::*;
    use serde_json::json;
    use time::OffsetDateTime;

    struct Log {
        key: LogKey,
        entries: Vec<String>,
        hashes: Hashes,
        checkpoints: Vec<String>,
    }

    impl Log {
        fn new() -> Self {
            let key = LogKey::from_pkcs8("test.example/audit", &LogKey::generate_pkcs8().unwrap())
                .unwrap();
            Self {
                key,
                entries: vec![],
                hashes: Hashes::new(),
                checkpoints: vec![],
            }
        }
        fn append(&mut self, n: usize) {
            for _ in 0..n {
                let seq = self.entries.len() as u64;
                let text = AuditEvent::new(
                    OffsetDateTime::UNIX_EPOCH,
                    Actor::system("test"),
                    "test.event",
                    format!("thing:{seq}"),
                    Outcome::Success,
                    json!({"n": seq}),
                )
                .into_entry(seq)
                .to_canonical()
                .unwrap();
                tree::append(seq, &[tree::leaf_hash(&text)], &mut self.hashes).unwrap();
                self.entries.push(text);
            }
        }
        fn checkpoint(&mut self) -> String {
            let size = self.entries.len() as u64;
            let note = self
                .key
                .sign_checkpoint(size, tree::root(size, &self.hashes).unwrap())
                .unwrap()
                .note;
            self.checkpoints.push(note.clone());
            note
        }
        fn export(&self) -> String {
            let mut out = header_line(self.key.origin(), self.entries.len() as u64).unwrap();
            for c in &self.checkpoints {
                out.push('\n');
                out.push_str(&checkpoint_line(c).unwrap());
            }
            for (seq, e) in self.entries.iter().enumerate() {
                out.push('\n');
                out.push_str(&entry_line(
                    e,
                    self.hashes.get(&tree::leaf_index(seq as u64)),
                ));
            }
            out.push('\n');
            out
        }
        fn verifier(&self) -> LogVerifier {
            LogVerifier::new(&self.key.verifier_key()).unwrap()
        }
    }

    fn sample() -> (Log, String) {
        let mut log = Log::new();
        log.append(10);
        log.checkpoint();
        log.append(7);
        let kept = log.checkpoint();
        log.append(5);
        log.checkpoint();
        (log, kept)
    }

    #[test]
    fn an_intact_export_verifies() {
        let (log, kept) = sample();
        let report = verify_export(&log.export(), &log.verifier(), Some(&kept)).unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!(report.size, 22);
        assert_eq!(report.checkpoints_matched, 3);
        assert_eq!(report.latest_verified.unwrap().size, 22);
    }

    #[test]
    fn wrong_key_or_forged_kept_checkpoint_is_an_error() {
        let (log, kept) = sample();
        let other = Log::new();
        // Same origin, different key: every checkpoint in the export is refused.
        let report = verify_export(&log.export(), &other.verifier(), None).unwrap();
        assert!(matches!(
            report.problems[0],
            Problem::BadCheckpoint { index: 0, .. }
        ));
        let forged = kept.replace("17\n", "18\n");
        assert!(verify_export(&log.export(), &log.verifier(), Some(&forged)).is_err());
    }

    #[test]
    fn edited_entry_is_named() {
        let (mut log, kept) = sample();
        log.entries[12] = log.entries[12].replace("thing:12", "thing:99");
        let report = verify_export(&log.export(), &log.verifier(), Some(&kept)).unwrap();
        assert_eq!(report.problems[0], Problem::Edited { seq: 12 });
    }

    #[test]
    fn edited_entry_with_rewritten_hashes_is_localised_by_signed_roots() {
        let (mut log, kept) = sample();
        log.entries[12] = log.entries[12].replace("thing:12", "thing:99");
        // The attacker recomputes every stored hash, but cannot sign.
        let mut hashes = Hashes::new();
        let leaves: Vec<Hash> = log.entries.iter().map(|e| tree::leaf_hash(e)).collect();
        tree::append(0, &leaves, &mut hashes).unwrap();
        log.hashes = hashes;
        let report = verify_export(&log.export(), &log.verifier(), Some(&kept)).unwrap();
        assert_eq!(
            report.problems[0],
            Problem::RootMismatch {
                from: 10,
                size: 17,
                kept: true
            }
        );
        assert!(report.problems[0].to_string().contains("10..16"));
    }

    #[test]
    fn deleted_and_reordered_entries_are_named() {
        let (mut log, kept) = sample();
        let mut deleted = log.export();
        let line = deleted
            .lines()
            .find(|l| l.contains("thing:5\""))
            .unwrap()
            .to_owned();
        deleted = deleted.replace(&format!("{line}\n"), "");
        let report = verify_export(&deleted, &log.verifier(), Some(&kept)).unwrap();
        assert_eq!(
            report.problems[0],
            Problem::OutOfSequence {
                position: 5,
                seq: 6
            }
        );

        log.entries.swap(3, 4);
        let report = verify_export(&log.export(), &log.verifier(), Some(&kept)).unwrap();
        assert_eq!(
            report.problems[0],
            Problem::OutOfSequence {
                position: 3,
                seq: 4
            }
        );
    }

    #[test]
    fn truncated_tail_is_named() {
        let (mut log, kept) = sample();
        log.entries.truncate(15);
        log.checkpoints.clear(); // the attacker also drops the checkpoints the log kept
        let report = verify_export(&log.export(), &log.verifier(), Some(&kept)).unwrap();
        assert_eq!(
            report.problems[0],
            Problem::Truncated {
                present: 15,
                signed: 17,
                kept: true
            }
        );
    }

    #[test]
    fn rewritten_log_with_fresh_root_fails_against_kept_checkpoint() {
        let (log, kept) = sample();
        // A different history of the same length, consistently hashed, and a checkpoint the
        // attacker signed with their own key.
        let mut fake = Log::new();
        fake.key =
            LogKey::from_pkcs8("test.example/audit", &LogKey::generate_pkcs8().unwrap()).unwrap();
        fake.append(22);
        fake.entries[0] = fake.entries[0].replace("\"n\":0", "\"n\":1000");
        let mut hashes = Hashes::new();
        let leaves: Vec<Hash> = fake.entries.iter().map(|e| tree::leaf_hash(e)).collect();
        tree::append(0, &leaves, &mut hashes).unwrap();
        fake.hashes = hashes;
        fake.checkpoint();
        let report = verify_export(&fake.export(), &log.verifier(), Some(&kept)).unwrap();
        assert!(matches!(report.problems[0], Problem::BadCheckpoint { .. }));
        assert!(report.problems.contains(&Problem::RootMismatch {
            from: 0,
            size: 17,
            kept: true
        }));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Flipping any byte of any entry line is either caught or leaves the entry's meaning
        /// unchanged (e.g. a byte inside the stored leaf hash that decodes the same).
        #[test]
        fn any_single_byte_change_is_detected(line in 0usize..22, offset in any::<usize>(), byte in any::<u8>()) {
            let (log, kept) = sample();
            let export = log.export();
            let lines: Vec<&str> = export.lines().collect();
            let target = 4 + line; // header + 3 checkpoints
            let mut bytes = lines[target].as_bytes().to_vec();
            let i = offset % bytes.len();
            prop_assume!(bytes[i] != byte);
            bytes[i] = byte;
            let Ok(changed) = String::from_utf8(bytes) else { return Ok(()); };
            let mut all: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            all[target] = changed;
            let report = verify_export(&all.join("\n"), &log.verifier(), Some(&kept)).unwrap();
            prop_assert!(!report.is_ok());
        }

        #[test]
        fn verifier_never_panics(text in "\\PC{0,400}") {
            let (log, _) = sample();
            let _ = verify_export(&text, &log.verifier(), None);
            let with_header = format!("{}\n{text}", header_line("test.example/audit", 1).unwrap());
            let _ = verify_export(&with_header, &log.verifier(), None);
        }
    }
}
