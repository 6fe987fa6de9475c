//! Check outcomes and how they roll up to a requirement.

use serde::{Deserialize, Serialize};

/// The outcome of a check (or of a requirement, rolled up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Pass,
    /// The check does not apply here (e.g. no posture field for a device class).
    NotApplicable,
    /// No data to decide on (no posture report yet, an expired attestation).
    Unknown,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::NotApplicable => "not-applicable",
            Self::Unknown => "unknown",
            Self::Fail => "fail",
        }
    }
}

/// A requirement's status from its checks' statuses: any failure fails it; otherwise any
/// unknown makes it unknown; otherwise it passes if anything passed; with only
/// not-applicable checks (or none) it is not applicable. An auditor never sees "pass" for a
/// requirement with a check Sigil could not decide.
pub fn roll_up(statuses: impl IntoIterator<Item = Status>) -> Status {
    let mut seen_pass = false;
    let mut seen_unknown = false;
    for s in statuses {
        match s {
            Status::Fail => return Status::Fail,
            Status::Unknown => seen_unknown = true,
            Status::Pass => seen_pass = true,
            Status::NotApplicable => {}
        }
    }
    if seen_unknown {
        Status::Unknown
    } else if seen_pass {
        Status::Pass
    } else {
        Status::NotApplicable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::any_status as status;
    use proptest::prelude::*;

    proptest! {
        /// The roll-up is the worst status by the order pass < not-applicable < unknown < fail,
        /// except that pass beats not-applicable.
        #[test]
        fn roll_up_is_the_worst_that_matters(v in proptest::collection::vec(status(), 0..8)) {
            let got = roll_up(v.iter().copied());
            if v.contains(&Status::Fail) {
                prop_assert_eq!(got, Status::Fail);
            } else if v.contains(&Status::Unknown) {
                prop_assert_eq!(got, Status::Unknown);
            } else if v.contains(&Status::Pass) {
                prop_assert_eq!(got, Status::Pass);
            } else {
                prop_assert_eq!(got, Status::NotApplicable);
            }
            // Order does not matter.
            let mut rev = v.clone();
            rev.reverse();
            prop_assert_eq!(roll_up(rev), got);
        }
    }
}
