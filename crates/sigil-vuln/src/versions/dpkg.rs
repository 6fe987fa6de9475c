//! Debian's version order (dpkg, Debian Policy 5.6.12), which OSV's `Debian` (and Ubuntu)
//! ecosystem ranges use: `[epoch:]upstream[-revision]`, the epoch compared as a number, then
//! upstream and revision each by alternating runs of non-digits (compared character by
//! character, `~` before everything, even the end, then letters, then other characters) and
//! digits (compared as numbers).

use std::cmp::Ordering;

use crate::VulnError;

/// A parsed Debian version.
#[derive(Debug, Clone)]
pub struct DpkgVersion {
    epoch: u64,
    upstream: String,
    revision: String,
}

impl DpkgVersion {
    pub fn parse(version: &str) -> Result<Self, VulnError> {
        let invalid = |why: &str| VulnError::InvalidVersion {
            ecosystem: "Debian",
            version: version.chars().take(64).collect(),
            reason: why.to_owned(),
        };
        let version = version.trim();
        let (epoch, rest) = match version.split_once(':') {
            Some((e, rest)) => (
                e.parse::<u64>()
                    .map_err(|_| invalid("the epoch is not a number"))?,
                rest,
            ),
            None => (0, version),
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((u, r)) => (u, r),
            None => (rest, ""),
        };
        if !upstream.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(invalid("the upstream version must start with a digit"));
        }
        let allowed = |c: char, extra: &str| c.is_ascii_alphanumeric() || extra.contains(c);
        if !upstream.chars().all(|c| allowed(c, ".+~-:")) {
            return Err(invalid("the upstream version has a character dpkg refuses"));
        }
        if !revision.chars().all(|c| allowed(c, ".+~")) {
            return Err(invalid("the revision has a character dpkg refuses"));
        }
        Ok(Self {
            epoch,
            upstream: upstream.to_owned(),
            revision: revision.to_owned(),
        })
    }
}

/// A character's weight in a non-digit run: `~` lowest (below the end of the run), then the
/// end, then letters, then everything else.
fn weight(c: Option<u8>) -> i32 {
    match c {
        Some(b'~') => -1,
        None => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`.
fn compare_part(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while !a.is_empty() || !b.is_empty() {
        // The non-digit prefixes, character by character.
        loop {
            let ca = a.first().copied().filter(|c| !c.is_ascii_digit());
            let cb = b.first().copied().filter(|c| !c.is_ascii_digit());
            if ca.is_none() && cb.is_none() {
                break;
            }
            match weight(ca).cmp(&weight(cb)) {
                Ordering::Equal => {
                    a = &a[1..];
                    b = &b[1..];
                }
                unequal => return unequal,
            }
        }
        // The digit runs, as numbers (leading zeros ignored, any length).
        let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
        let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let na = trim_zeros(&a[..da]);
        let nb = trim_zeros(&b[..db]);
        match na.len().cmp(&nb.len()).then_with(|| na.cmp(nb)) {
            Ordering::Equal => {
                a = &a[da..];
                b = &b[db..];
            }
            unequal => return unequal,
        }
    }
    Ordering::Equal
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|c| **c == b'0').count();
    &digits[zeros..]
}

impl Ord for DpkgVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| compare_part(&self.upstream, &other.upstream))
            .then_with(|| compare_part(&self.revision, &other.revision))
    }
}

// Equal means equal in the order ("1.0" and "1.00" are one version), as the ranges need.
impl PartialEq for DpkgVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for DpkgVersion {}

impl PartialOrd for DpkgVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> DpkgVersion {
        DpkgVersion::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    /// Examples from Debian Policy 5.6.12 and dpkg's own tests (`t/dpkg_version.t`).
    #[test]
    fn debian_published_orders() {
        for (a, want, b) in [
            ("1.0", Ordering::Equal, "1.0-0"),
            ("1.0", Ordering::Equal, "0:1.0"),
            ("1.0~rc1", Ordering::Less, "1.0"),
            ("1.0~~", Ordering::Less, "1.0~~a"),
            ("1.0~~a", Ordering::Less, "1.0~"),
            ("1.0~", Ordering::Less, "1.0"),
            ("1.0", Ordering::Less, "1.0a"),
            ("1.0a", Ordering::Less, "1.0+"),
            ("1:0.1", Ordering::Greater, "9.9"),
            ("2.30-1", Ordering::Less, "2.30-1+deb12u1"),
            ("1.2.3-1", Ordering::Less, "1.2.3-1.1"),
            ("1.2.10", Ordering::Greater, "1.2.9"),
            ("1.2.010", Ordering::Equal, "1.2.10"),
            ("3.0.11-1~deb12u2", Ordering::Less, "3.0.11-1"),
            ("7.88.1-10+deb12u5", Ordering::Greater, "7.88.1-10+deb12u4"),
            ("1:2.38.1-5+deb12u1", Ordering::Less, "1:2.38.1-5+deb12u2"),
            ("0.9", Ordering::Less, "0.10"),
            ("2.0-1-2", Ordering::Greater, "2.0-1"),
            ("1.0.0+dfsg-1", Ordering::Greater, "1.0.0-1"),
            (
                "99999999999999999999999",
                Ordering::Less,
                "100000000000000000000000",
            ),
        ] {
            assert_eq!(v(a).cmp(&v(b)), want, "{a} vs {b}");
            assert_eq!(v(b).cmp(&v(a)), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn invalid_versions_say_why() {
        for bad in ["", "a1.0", "x:1.0", "1.0 beta", "1.0-r/1", "-1"] {
            assert!(DpkgVersion::parse(bad).is_err(), "{bad}");
        }
    }

    fn dpkg_version() -> impl Strategy<Value = String> {
        (
            proptest::option::of(0u8..3),
            "[0-9][0-9a-z.+~]{0,8}",
            proptest::option::of("[0-9a-z.+~]{1,6}"),
        )
            .prop_map(|(epoch, upstream, revision)| {
                let mut s = epoch.map(|e| format!("{e}:")).unwrap_or_default();
                s.push_str(&upstream);
                if let Some(r) = revision {
                    s.push('-');
                    s.push_str(&r);
                }
                s
            })
    }

    proptest! {
        #[test]
        fn a_total_order(a in dpkg_version(), b in dpkg_version(), c in dpkg_version()) {
            let (a, b, c) = (v(&a), v(&b), v(&c));
            prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
            prop_assert_eq!(a.cmp(&a), Ordering::Equal);
            if a <= b && b <= c {
                prop_assert!(a <= c);
            }
        }

        #[test]
        fn any_text_is_parsed_or_refused(s in "\\PC{0,40}") {
            let _ = DpkgVersion::parse(&s);
        }
    }
}
