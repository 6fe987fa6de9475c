//! The maths of Sigil's tamper-evident audit log, with no I/O: the storage layer calls these
//! functions inside its transactions, the server signs checkpoints with them, and the offline
//! verifier (`sigil audit verify`, `sigil evidence verify`) is built only from them.
//!
//! - [`entry`]: what one entry says, serialised as RFC 8785 canonical JSON. The canonical bytes
//!   are the leaf; nothing else about an entry is trusted.
//! - [`tree`]: the RFC 6962 / RFC 9162 Merkle tree (leaf = SHA-256(0x00 || entry), node =
//!   SHA-256(0x01 || left || right)) over a store of "stored hashes" (one per complete subtree,
//!   about two per entry), so an append and a proof each read O(log n) hashes.
//! - [`checkpoint`]: C2SP `tlog-checkpoint` bodies in C2SP `signed-note`s, Ed25519 log key.
//! - [`export`]: the export format and the offline verifier that names what broke.

pub mod checkpoint;
pub mod entry;
mod error;
pub mod evidence;
pub mod export;
pub mod tree;

pub use checkpoint::{LogKey, LogVerifier, SignedCheckpoint};
pub use entry::{Actor, ActorKind, AuditEntry, AuditEvent, Outcome};
pub use error::AuditError;
pub use tree::Hash;
