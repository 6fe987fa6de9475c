//! Sigil's domain model: identifiers, inventory records and the device lifecycle.
//!
//! This crate does no I/O and never reads the clock: callers pass the time in. Everything an
//! outside caller hands Sigil (JSON bodies, CLI flags, path segments) is parsed into the types here
//! once, at the edge, so the rest of the code works with values that are already valid.

pub mod device_edit;
pub mod device_listing;
pub mod ids;
pub mod import;
pub mod inventory;
pub mod lifecycle;
pub mod posture;
pub mod revocation;

pub use device_edit::DeviceChange;
pub use device_listing::{DeviceSearch, DeviceSort, DeviceSortKey};
pub use ids::{DeviceId, Fingerprint, IdError, ProductId, Serial};
pub use inventory::{
    Device, DeviceFields, DeviceFilter, InventoryError, MAX_DECLARED, MAX_REMEDIATION_DAYS,
    MAX_TAGS, NewDevice, NewProduct, Product, ProductDeclaration, Tag, parse_service,
};
pub use lifecycle::{
    Issuance, IssuanceRefusal, LifecycleError, LifecycleEvent, LifecycleState, issuance_rule,
};
pub use posture::{InstalledRelease, ListeningService, Posture, PostureError};
pub use revocation::{RevocationReason, UnknownReason};
