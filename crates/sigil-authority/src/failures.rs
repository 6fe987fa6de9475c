//! Failed authentications, counted per source address, so that nobody can flood the audit
//! log (which is append-only and never pruned) or hide in it.
//!
//! Within each window (a minute) the first [`FailureLedger::per_window`] failures from an
//! address are recorded one by one, with the address. Past that its failures are answered with
//! 429 and only counted; when the window ends, one summary entry per address says how many were
//! refused and on which channels. Valid credentials from the same address still work: devices
//! behind one NAT gateway must not lose enrolment because one of them is misconfigured. An
//! address is an IPv4 address or an IPv6 /64 (one host's usual allocation). When more addresses
//! than [`MAX_ADDRESSES`] fail in one window, the rest share one bucket, so memory stays
//! bounded under a distributed flood. Pure: time is passed in.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;

use time::{Duration, OffsetDateTime};

/// Addresses tracked in one window before the rest share one bucket: this also bounds the
/// summary entries a window can produce.
pub const MAX_ADDRESSES: usize = 1024;
/// Failures recorded one by one per window across all addresses: past it, every address's
/// failures are only counted, so a flood from many addresses grows the log by at most this
/// many entries plus [`MAX_ADDRESSES`] summaries a window.
pub const MAX_RECORDED_PER_WINDOW: u64 = 2000;

/// The key failures are counted under.
pub fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// What to do with one more failure from an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Record it in the audit log, as before.
    Record,
    /// Counted for the summary; answer 429 with this Retry-After (seconds).
    Limited { retry_after: u64 },
}

/// One address's failures past the limit in one window, for one summary entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub address: String,
    pub window_start: OffsetDateTime,
    pub window_end: OffsetDateTime,
    /// Failures recorded one by one in the window.
    pub recorded: u64,
    /// Failures past the limit, refused with 429 and not recorded one by one.
    pub suppressed: u64,
    /// Suppressed failures per channel (`api`, `est`, ...).
    pub channels: BTreeMap<String, u64>,
}

#[derive(Debug)]
struct Window {
    start: OffsetDateTime,
    recorded: u64,
    suppressed: u64,
    channels: BTreeMap<String, u64>,
}

#[derive(Debug)]
pub struct FailureLedger {
    window: Duration,
    per_window: u64,
    windows: Mutex<Windows>,
}

#[derive(Debug, Default)]
struct Windows {
    by_address: HashMap<String, Window>,
    /// Failures recorded one by one across all addresses, and since when.
    recorded: u64,
    since: Option<OffsetDateTime>,
}

const OVERFLOW: &str = "(other addresses)";

impl FailureLedger {
    pub fn new(window: Duration, per_window: u64) -> Self {
        Self {
            window,
            per_window,
            windows: Mutex::new(Windows::default()),
        }
    }

    pub fn per_window(&self) -> u64 {
        self.per_window
    }

    fn retry_after(&self, w: &Window, now: OffsetDateTime) -> u64 {
        let left = (w.start + self.window - now).whole_seconds().max(1);
        u64::try_from(left).unwrap_or(1)
    }

    /// Count one failure from `ip` on `channel`.
    pub fn note(&self, ip: IpAddr, channel: &str, now: OffsetDateTime) -> Verdict {
        let mut guard = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let all = &mut *guard;
        if all.since.is_none_or(|since| now >= since + self.window) {
            all.since = Some(now);
            all.recorded = 0;
        }
        let global_room = all.recorded < MAX_RECORDED_PER_WINDOW;
        let windows = &mut all.by_address;
        let mut key = address_key(ip);
        if !windows.contains_key(&key) && windows.len() >= MAX_ADDRESSES {
            key = OVERFLOW.to_owned();
        }
        let w = windows.entry(key).or_insert_with(|| Window {
            start: now,
            recorded: 0,
            suppressed: 0,
            channels: BTreeMap::new(),
        });
        if now >= w.start + self.window && w.suppressed == 0 {
            // A quiet window ended with nothing to summarise: start afresh.
            *w = Window {
                start: now,
                recorded: 0,
                suppressed: 0,
                channels: BTreeMap::new(),
            };
        }
        if w.recorded < self.per_window && w.suppressed == 0 && global_room {
            w.recorded += 1;
            all.recorded += 1;
            return Verdict::Record;
        }
        w.suppressed += 1;
        *w.channels.entry(channel.to_owned()).or_default() += 1;
        Verdict::Limited {
            retry_after: self.retry_after(w, now),
        }
    }

    /// Remove the windows that have ended: a summary for each that suppressed failures.
    pub fn drain_ended(&self, now: OffsetDateTime) -> Vec<Summary> {
        let mut guard = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let windows = &mut guard.by_address;
        let ended: Vec<String> = windows
            .iter()
            .filter(|(_, w)| now >= w.start + self.window)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for key in ended {
            if let Some(w) = windows.remove(&key)
                && w.suppressed > 0
            {
                out.push(Summary {
                    address: key,
                    window_start: w.start,
                    window_end: w.start + self.window,
                    recorded: w.recorded,
                    suppressed: w.suppressed,
                    channels: w.channels,
                });
            }
        }
        out.sort_by(|a, b| a.address.cmp(&b.address));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + Duration::seconds(1_000_000 + seconds)
    }

    #[test]
    fn the_first_failures_are_recorded_then_summarised_per_address() {
        let ledger = FailureLedger::new(Duration::minutes(1), 3);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        for i in 0..3 {
            assert_eq!(ledger.note(a, "api", t(i)), Verdict::Record);
        }
        assert_eq!(
            ledger.note(a, "api", t(3)),
            Verdict::Limited { retry_after: 57 }
        );
        for _ in 0..999 {
            assert!(matches!(
                ledger.note(a, "api", t(5)),
                Verdict::Limited { .. }
            ));
        }
        assert!(matches!(
            ledger.note(a, "est", t(6)),
            Verdict::Limited { .. }
        ));
        assert_eq!(ledger.note(b, "api", t(6)), Verdict::Record);
        assert!(
            ledger.drain_ended(t(30)).is_empty(),
            "the window is still open"
        );
        let summaries = ledger.drain_ended(t(60));
        assert_eq!(summaries.len(), 1, "{summaries:?}");
        let s = &summaries[0];
        assert_eq!(
            (s.address.as_str(), s.recorded, s.suppressed),
            ("10.0.0.1", 3, 1001)
        );
        assert_eq!(s.channels.get("est"), Some(&1));
        // A new window starts afresh.
        assert_eq!(ledger.note(a, "api", t(61)), Verdict::Record);
    }

    #[test]
    fn ipv6_hosts_are_counted_by_their_64() {
        let one: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let other: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        assert_eq!(address_key(one), address_key(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(address_key(mapped), "192.0.2.7");
    }

    proptest! {
        /// However failures arrive, per address and window: at most `per_window` are recorded,
        /// and every other one is in exactly one summary.
        #[test]
        fn every_failure_is_recorded_or_summarised(
            events in proptest::collection::vec((0u8..4, 0i64..300), 0..400),
            per_window in 1u64..6,
        ) {
            let ledger = FailureLedger::new(Duration::minutes(1), per_window);
            let mut events = events;
            events.sort_by_key(|e| e.1);
            let mut recorded = 0u64;
            let mut summarised = 0u64;
            for (host, at) in &events {
                let ip: IpAddr = [10, 0, 0, *host].into();
                for s in ledger.drain_ended(t(*at)) {
                    summarised += s.suppressed;
                    prop_assert!(s.recorded <= per_window);
                }
                if ledger.note(ip, "api", t(*at)) == Verdict::Record {
                    recorded += 1;
                }
            }
            for s in ledger.drain_ended(t(10_000)) {
                summarised += s.suppressed;
            }
            prop_assert_eq!(recorded + summarised, events.len() as u64);
        }
    }
}
