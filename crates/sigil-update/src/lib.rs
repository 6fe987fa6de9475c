//! Sigil's software-update logic, with no I/O: the authority stores and serves what these
//! functions build, and the CLI signs with them off the server.
//!
//! - [`version`]: release versions per product, totally ordered under a declared scheme
//!   (semver precedence, or plain integers), so "newer" and "downgrade" have one meaning.
//! - [`rollout`]: staged rollouts: groups, success and error thresholds (each failure kind
//!   on its own, with a minimum sample), security signals, maintenance windows; every
//!   decision says which threshold triggered it.
//! - [`tuf`]: The Update Framework 1.0 on the repository side: metadata types, OLPC canonical
//!   JSON, Ed25519 keys and key ids, signing, threshold verification, and the four roles'
//!   documents of a product repository with consistent snapshots.
//!
//! Why our own TUF repository code rather than `tough`'s editor: the editor works on a whole
//! repository tree in files, async on tokio, and rewrites it per change; Sigil keeps each
//! product's repository in its database (one row per signed document), signs online roles in
//! the server and accepts offline signatures for root and targets one by one, and must do so
//! in this pure layer. Devices verify with an independent client (`tough` in the agent,
//! python-tuf's ngclient in the test suite), so the two sides never share code.

mod error;
pub mod rollout;
pub mod tuf;
pub mod version;

pub use error::UpdateError;
pub use version::{ReleaseVersion, VersionScheme};
