//! Sigil's compliance model, pure: the control catalogue and the roll-up of check results.
//!
//! The catalogue is data (`catalogue/checks.toml`, `catalogue/frameworks/*.toml`), reviewed like
//! code and embedded at build time. Each framework requirement (with its official identifier)
//! maps to Sigil checks; each check says its scope (device, product, organisation), whether it
//! is automated or an attestation, and the AWS IoT Device Defender audit checks it covers.

mod catalogue;
pub mod device;
pub mod disclosure;
pub mod live;
pub mod organisation;
pub mod product;
mod status;
pub mod vulnerabilities;

pub use catalogue::{Catalogue, CatalogueError, Check, CheckKind, Framework, Requirement, Scope};
pub use live::{DeviceStatuses, FleetResults, StatusCounts, StatusScan};
pub use status::{Status, roll_up};

/// Helpers the tests of several modules share.
#[cfg(test)]
mod test_support {
    #![allow(clippy::unwrap_used)]
    use proptest::prelude::*;
    use sigil_domain::DeviceId;

    use crate::Status;

    pub(crate) fn any_status() -> impl Strategy<Value = Status> {
        prop_oneof![
            Just(Status::Pass),
            Just(Status::NotApplicable),
            Just(Status::Unknown),
            Just(Status::Fail)
        ]
    }

    /// A fixed device id numbered `n`.
    pub(crate) fn dev(n: u8) -> DeviceId {
        format!("00000000-0000-7000-8000-0000000000{n:02x}")
            .parse()
            .unwrap()
    }
}
