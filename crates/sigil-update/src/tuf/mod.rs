//! The Update Framework (TUF) 1.0, repository side.
//!
//! - [`metadata`]: the four roles' documents and the signed envelope, as the specification
//!   writes them (`_type`, `spec_version`, `version`, `expires`, ...), and OLPC canonical JSON,
//!   the bytes every signature covers.
//! - [`keys`]: Ed25519 public keys in TUF's form, key ids (SHA-256 of the key's canonical
//!   JSON), and the [`Signer`] trait an online key, a key file or (later) an HSM implement.
//! - [`repository`]: building a product repository's documents, signing them, checking
//!   threshold signatures (an offline signer's contribution, a cross-signed new root), target
//!   names and the consistent-snapshot file names the server answers to.

pub mod keys;
pub mod metadata;
pub mod repository;

pub use keys::{Ed25519Signer, PublicKey, Signer};
pub use metadata::{
    Envelope, MetaFile, Metadata, Role, RoleKeys, Root, Signature, Snapshot, TargetFile, Targets,
    Timestamp, canonical_json,
};
pub use repository::{MetadataFile, TargetName};
