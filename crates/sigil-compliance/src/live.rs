//! The fleet's device-check results, kept current one device at a time.
//!
//! A full evaluation fills this; after that every event re-evaluates only the devices it names
//! and [`FleetResults::set`] moves the per-check counts by the difference, so a framework's
//! posture is read in constant time however large the fleet. Each device also carries the
//! moment time alone will change one of its results (see [`crate::device::next_change`]); the
//! caller re-evaluates the devices [`FleetResults::due`] names.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sigil_domain::DeviceId;

use crate::Status;
use crate::device::{DEVICE_CHECKS, Time};

/// How many devices a check passed, failed, ...
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatusCounts {
    pub pass: u64,
    pub fail: u64,
    pub unknown: u64,
    pub not_applicable: u64,
}

impl StatusCounts {
    fn slot(&mut self, s: Status) -> &mut u64 {
        match s {
            Status::Pass => &mut self.pass,
            Status::Fail => &mut self.fail,
            Status::Unknown => &mut self.unknown,
            Status::NotApplicable => &mut self.not_applicable,
        }
    }

    pub fn add(&mut self, s: Status) {
        *self.slot(s) += 1;
    }

    fn remove(&mut self, s: Status) {
        let n = self.slot(s);
        *n = n.saturating_sub(1);
    }

    /// The status over everything counted: any failure fails, then unknown, then pass.
    pub fn status(&self) -> Status {
        let seen = [
            (self.fail, Status::Fail),
            (self.unknown, Status::Unknown),
            (self.pass, Status::Pass),
        ];
        crate::roll_up(seen.into_iter().filter(|(n, _)| *n > 0).map(|(_, s)| s))
    }
}

/// What [`FleetResults::devices_by_status`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusScan {
    /// The matching devices, in id order.
    pub found: Vec<DeviceId>,
    /// How many devices it looked at.
    pub looked: usize,
    /// Where to go on from (the last device looked at) when it stopped before the fleet's
    /// end; `None` when it reached the end.
    pub resume: Option<DeviceId>,
}

/// Results of the [`DEVICE_CHECKS`] for one device.
pub type DeviceStatuses = [Status; DEVICE_CHECKS.len()];

#[derive(Debug, Clone, Copy)]
struct Entry {
    statuses: DeviceStatuses,
    due: Option<Time>,
}

/// Every device's results, the counts per check, and when each device is next due.
#[derive(Debug, Default)]
pub struct FleetResults {
    devices: BTreeMap<DeviceId, Entry>,
    counts: [StatusCounts; DEVICE_CHECKS.len()],
    due: BTreeSet<(Time, DeviceId)>,
}

fn check_index(check: &str) -> Option<usize> {
    DEVICE_CHECKS.iter().position(|c| *c == check)
}

impl FleetResults {
    /// Record `device`'s current results (replacing any earlier ones) and when time alone will
    /// next change them.
    pub fn set(&mut self, device: DeviceId, statuses: DeviceStatuses, due: Option<Time>) {
        self.remove(device);
        for (counts, s) in self.counts.iter_mut().zip(statuses) {
            counts.add(s);
        }
        if let Some(t) = due {
            self.due.insert((t, device));
        }
        self.devices.insert(device, Entry { statuses, due });
    }

    /// Forget `device` (no longer in the inventory).
    pub fn remove(&mut self, device: DeviceId) {
        if let Some(old) = self.devices.remove(&device) {
            for (counts, s) in self.counts.iter_mut().zip(old.statuses) {
                counts.remove(s);
            }
            if let Some(t) = old.due {
                self.due.remove(&(t, device));
            }
        }
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// The counts of one device check; `None` for an id that is not a device check.
    pub fn counts(&self, check: &str) -> Option<StatusCounts> {
        check_index(check).map(|i| self.counts[i])
    }

    pub fn statuses(&self, device: DeviceId) -> Option<DeviceStatuses> {
        self.devices.get(&device).map(|e| e.statuses)
    }

    /// Devices whose results time may have changed by `now`, earliest first.
    pub fn due(&self, now: Time) -> Vec<DeviceId> {
        self.due
            .range(..=(now, DeviceId::max()))
            .map(|(_, d)| *d)
            .collect()
    }

    /// The earliest moment a device falls due.
    pub fn next_due(&self) -> Option<Time> {
        self.due.first().map(|(t, _)| *t)
    }

    /// Devices after `after` (by id) whose results over `checks`, rolled up, are `status`:
    /// at most `limit` of them, looking at no more than `budget` devices. Unknown check ids
    /// are ignored.
    pub fn devices_by_status(
        &self,
        checks: &[&str],
        status: Status,
        after: Option<DeviceId>,
        limit: usize,
        budget: usize,
    ) -> StatusScan {
        use std::ops::Bound::{Excluded, Unbounded};
        let indices: Vec<usize> = checks.iter().filter_map(|c| check_index(c)).collect();
        let start = after.map_or(Unbounded, Excluded);
        let mut scan = StatusScan::default();
        for (id, entry) in self.devices.range((start, Unbounded)) {
            if scan.found.len() >= limit || scan.looked >= budget {
                return scan;
            }
            scan.looked += 1;
            scan.resume = Some(*id);
            if crate::roll_up(indices.iter().map(|i| entry.statuses[*i])) == status {
                scan.found.push(*id);
            }
        }
        scan.resume = None;
        scan
    }

    /// The first `limit` devices (by id) whose result for `check` is one of `statuses`.
    pub fn devices_with(&self, check: &str, statuses: &[Status], limit: usize) -> Vec<DeviceId> {
        let Some(i) = check_index(check) else {
            return Vec::new();
        };
        self.devices
            .iter()
            .filter(|(_, e)| statuses.contains(&e.statuses[i]))
            .map(|(d, _)| *d)
            .take(limit)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::test_support::{any_status as status, dev};
    use proptest::prelude::*;

    /// Scanning in budgeted steps finds exactly the devices a one-pass filter finds, in order.
    #[test]
    fn status_scan_in_steps_equals_one_pass() {
        let mut fleet = FleetResults::default();
        let checks = [DEVICE_CHECKS[0], DEVICE_CHECKS[3]];
        let mut expected = Vec::new();
        for n in 0..=255u8 {
            let mut statuses = [Status::Pass; DEVICE_CHECKS.len()];
            statuses[0] = [
                Status::Pass,
                Status::Fail,
                Status::Unknown,
                Status::NotApplicable,
            ][(n % 4) as usize];
            statuses[3] = if n % 7 == 0 {
                Status::Fail
            } else {
                Status::Pass
            };
            // Failing another check than the two asked for does not count.
            statuses[5] = Status::Fail;
            let id = dev(n);
            fleet.set(id, statuses, None);
            if n % 4 == 1 || n % 7 == 0 {
                expected.push(id);
            }
        }
        expected.sort();
        for (limit, budget) in [(10, 1000), (1000, 13), (3, 3), (1, 1)] {
            let mut got = Vec::new();
            let mut after = None;
            loop {
                let scan = fleet.devices_by_status(&checks, Status::Fail, after, limit, budget);
                assert!(scan.found.len() <= limit && scan.looked <= budget);
                got.extend(scan.found);
                match scan.resume {
                    Some(r) => after = Some(r),
                    None => break,
                }
            }
            assert_eq!(got, expected, "limit {limit}, budget {budget}");
        }
    }

    proptest! {
        /// Whatever sequence of updates and removals, the counts and the due queue are what a
        /// recount from scratch gives.
        #[test]
        fn incremental_counts_equal_a_recount(
            ops in proptest::collection::vec(
                (0u8..8, proptest::option::of(proptest::array::uniform15(status())), proptest::option::of(0i64..100)),
                0..60,
            )
        ) {
            let mut live = FleetResults::default();
            let mut model: BTreeMap<DeviceId, (DeviceStatuses, Option<Time>)> = BTreeMap::new();
            for (n, statuses, due) in ops {
                match statuses {
                    Some(s) => {
                        live.set(dev(n), s, due);
                        model.insert(dev(n), (s, due));
                    }
                    None => {
                        live.remove(dev(n));
                        model.remove(&dev(n));
                    }
                }
            }
            prop_assert_eq!(live.len(), model.len());
            for (i, check) in DEVICE_CHECKS.iter().enumerate() {
                let mut recount = StatusCounts::default();
                for (s, _) in model.values() {
                    recount.add(s[i]);
                }
                prop_assert_eq!(live.counts(check).unwrap(), recount);
                let failing: Vec<DeviceId> = model
                    .iter()
                    .filter(|(_, (s, _))| s[i] == Status::Fail)
                    .map(|(d, _)| *d)
                    .collect();
                prop_assert_eq!(live.devices_with(check, &[Status::Fail], 100), failing);
            }
            let mut due: Vec<(Time, DeviceId)> = model
                .iter()
                .filter_map(|(d, (_, t))| t.map(|t| (t, *d)))
                .collect();
            due.sort();
            prop_assert_eq!(live.next_due(), due.first().map(|(t, _)| *t));
            let upto: Vec<DeviceId> = due.iter().filter(|(t, _)| *t <= 50).map(|(_, d)| *d).collect();
            prop_assert_eq!(live.due(50), upto);
        }
    }

    #[test]
    fn counts_roll_up_like_requirements() {
        let mut c = StatusCounts::default();
        assert_eq!(c.status(), Status::NotApplicable);
        c.add(Status::Pass);
        assert_eq!(c.status(), Status::Pass);
        c.add(Status::Unknown);
        assert_eq!(c.status(), Status::Unknown);
        c.add(Status::Fail);
        assert_eq!(c.status(), Status::Fail);
        assert_eq!(FleetResults::default().counts("org.nope"), None);
    }
}
