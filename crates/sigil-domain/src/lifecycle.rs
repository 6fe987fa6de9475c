//! The device lifecycle state machine.
//!
//! ```text
//! registered --identity issued--> provisioned --activate--> active <--suspend/resume--> suspended
//!      \______________\____________________________\______________________/
//!                                      retire --> retired (terminal)
//! ```
//!
//! Every state change of a device goes through [`LifecycleState::apply`]; storage code never
//! writes a state it did not get from here.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LifecycleState {
    /// Known to the inventory, no identity yet.
    Registered,
    /// Holds an identity certificate, not yet in service.
    Provisioned,
    /// In service.
    Active,
    /// Temporarily out of service: may not obtain certificates.
    Suspended,
    /// Permanently decommissioned. Terminal.
    Retired,
}

/// Something that happens to a device and may change its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleEvent {
    /// A device identity certificate was issued (first issuance or rotation).
    IdentityIssued,
    /// The device was put into service.
    Activate,
    Suspend,
    Resume,
    Retire,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LifecycleError {
    #[error("device is {from}: cannot {event}{}", hint(*from, *event))]
    IllegalTransition {
        from: LifecycleState,
        event: LifecycleEvent,
    },
    #[error(
        "unknown lifecycle state `{0}` (expected registered, provisioned, active, suspended or retired)"
    )]
    UnknownState(String),
}

fn hint(from: LifecycleState, event: LifecycleEvent) -> &'static str {
    use LifecycleEvent as E;
    use LifecycleState as S;
    match (from, event) {
        (S::Retired, _) => " (retired is terminal)",
        (S::Suspended, E::IdentityIssued) => " (resume the device first)",
        (S::Registered, E::Activate) => " (issue it an identity first)",
        _ => "",
    }
}

impl LifecycleState {
    /// The state after `event`, or why `event` is not allowed now.
    pub fn apply(self, event: LifecycleEvent) -> Result<LifecycleState, LifecycleError> {
        use LifecycleEvent as E;
        use LifecycleState as S;
        let next = match (self, event) {
            (S::Registered | S::Provisioned, E::IdentityIssued) => S::Provisioned,
            // Rotation keeps an in-service device in service.
            (S::Active, E::IdentityIssued) => S::Active,
            (S::Provisioned, E::Activate) => S::Active,
            (S::Active, E::Suspend) => S::Suspended,
            (S::Suspended, E::Resume) => S::Active,
            (S::Registered | S::Provisioned | S::Active | S::Suspended, E::Retire) => S::Retired,
            (from, event) => return Err(LifecycleError::IllegalTransition { from, event }),
        };
        Ok(next)
    }

    /// May a device in this state be issued a new identity certificate?
    pub fn may_receive_identity(self) -> bool {
        self.apply(LifecycleEvent::IdentityIssued).is_ok()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Provisioned => "provisioned",
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Retired => "retired",
        }
    }

    pub const ALL: [LifecycleState; 5] = [
        Self::Registered,
        Self::Provisioned,
        Self::Active,
        Self::Suspended,
        Self::Retired,
    ];
}

/// Why a device may not receive a certificate for a key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IssuanceRefusal {
    /// Its lifecycle state does not allow a new identity (suspended, retired).
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    /// The key is bound to another device: a public key belongs to at most one device, ever.
    #[error("the key is bound to device {0}")]
    KeyBound(crate::DeviceId),
}

/// What issuing a certificate does to the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Issuance {
    pub next: LifecycleState,
    /// The key is bound to the device for the first time (not a renewal that keeps its key).
    pub key_is_new: bool,
}

/// The issuance rule, for a certificate for `device` (now in `state`) over a key currently
/// bound to `key_owner`, if any: the state must allow a new identity and the key must not
/// belong to another device. The store applies it in a read-only pre-check and, authoritatively,
/// inside the transaction that records the certificate.
pub fn issuance_rule(
    device: crate::DeviceId,
    state: LifecycleState,
    key_owner: Option<crate::DeviceId>,
) -> Result<Issuance, IssuanceRefusal> {
    let next = state.apply(LifecycleEvent::IdentityIssued)?;
    match key_owner {
        Some(owner) if owner != device => Err(IssuanceRefusal::KeyBound(owner)),
        Some(_) => Ok(Issuance {
            next,
            key_is_new: false,
        }),
        None => Ok(Issuance {
            next,
            key_is_new: true,
        }),
    }
}

impl LifecycleEvent {
    pub const ALL: [LifecycleEvent; 5] = [
        Self::IdentityIssued,
        Self::Activate,
        Self::Suspend,
        Self::Resume,
        Self::Retire,
    ];
}

impl fmt::Display for LifecycleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for LifecycleEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::IdentityIssued => "issue an identity",
            Self::Activate => "activate",
            Self::Suspend => "suspend",
            Self::Resume => "resume",
            Self::Retire => "retire",
        })
    }
}

impl FromStr for LifecycleState {
    type Err = LifecycleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| LifecycleError::UnknownState(s.chars().take(32).collect()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn issuance_needs_a_state_that_allows_it_and_a_key_of_no_other_device() {
        use LifecycleState as S;
        let (a, b) = (crate::DeviceId::generate(), crate::DeviceId::generate());
        assert_eq!(
            issuance_rule(a, S::Registered, None),
            Ok(Issuance {
                next: S::Provisioned,
                key_is_new: true
            })
        );
        assert_eq!(
            issuance_rule(a, S::Active, Some(a)),
            Ok(Issuance {
                next: S::Active,
                key_is_new: false
            })
        );
        assert_eq!(
            issuance_rule(a, S::Active, Some(b)),
            Err(IssuanceRefusal::KeyBound(b))
        );
        for state in [S::Suspended, S::Retired] {
            assert!(matches!(
                issuance_rule(a, state, None),
                Err(IssuanceRefusal::Lifecycle(_))
            ));
        }
    }

    use super::*;
    use LifecycleEvent as E;
    use LifecycleState as S;
    use proptest::prelude::*;

    #[test]
    fn happy_path() {
        let mut s = S::Registered;
        for (event, expected) in [
            (E::IdentityIssued, S::Provisioned),
            (E::Activate, S::Active),
            (E::Suspend, S::Suspended),
            (E::Resume, S::Active),
            (E::IdentityIssued, S::Active),
            (E::Retire, S::Retired),
        ] {
            s = s.apply(event).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(s, expected);
        }
    }

    #[test]
    fn illegal_transitions_are_refused_with_a_clear_message() {
        let err = S::Registered.apply(E::Suspend).unwrap_err();
        assert_eq!(err.to_string(), "device is registered: cannot suspend");
        let err = S::Suspended.apply(E::IdentityIssued).unwrap_err();
        assert_eq!(
            err.to_string(),
            "device is suspended: cannot issue an identity (resume the device first)"
        );
        let err = S::Active.apply(E::Resume).unwrap_err();
        assert!(matches!(
            err,
            LifecycleError::IllegalTransition {
                from: S::Active,
                event: E::Resume
            }
        ));
    }

    #[test]
    fn the_full_transition_table() {
        // (state, event) -> allowed? Written out in full so a change to the machine is a visible diff.
        let allowed = [
            (S::Registered, E::IdentityIssued),
            (S::Registered, E::Retire),
            (S::Provisioned, E::IdentityIssued),
            (S::Provisioned, E::Activate),
            (S::Provisioned, E::Retire),
            (S::Active, E::IdentityIssued),
            (S::Active, E::Suspend),
            (S::Active, E::Retire),
            (S::Suspended, E::Resume),
            (S::Suspended, E::Retire),
        ];
        for s in S::ALL {
            for e in E::ALL {
                assert_eq!(s.apply(e).is_ok(), allowed.contains(&(s, e)), "{s} + {e:?}");
            }
        }
    }

    #[test]
    fn state_names_round_trip() {
        for s in S::ALL {
            assert_eq!(s.as_str().parse::<S>(), Ok(s));
            assert_eq!(serde_json::to_string(&s).ok(), Some(format!("\"{s}\"")));
        }
        assert!("bogus".parse::<S>().is_err());
    }

    fn any_event() -> impl Strategy<Value = E> {
        proptest::sample::select(E::ALL.to_vec())
    }

    proptest! {
        /// Whatever happens, retired is terminal and only an identity issuance leaves `registered`
        /// for anything but `retired`.
        #[test]
        fn retired_is_terminal_and_provisioning_needs_an_identity(events in proptest::collection::vec(any_event(), 0..40)) {
            let mut s = S::Registered;
            let mut had_identity = false;
            for e in events {
                if let Ok(next) = s.apply(e) {
                    prop_assert_ne!(s, S::Retired);
                    if e == E::IdentityIssued { had_identity = true; }
                    if matches!(next, S::Provisioned | S::Active | S::Suspended) {
                        prop_assert!(had_identity);
                    }
                    s = next;
                }
            }
        }
    }
}
