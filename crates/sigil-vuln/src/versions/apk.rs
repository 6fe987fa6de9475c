//! Alpine's package version order (apk-tools), which OSV's `Alpine` ecosystem ranges use.
//! Hand-written: no Rust crate implements it. A version is
//! `DIGITS{.DIGITS}[letter]{_suffix[N]}[-rN]`; pre-release suffixes (`alpha`, `beta`, `pre`,
//! `rc`) sort before the bare version, post-release ones (`cvs`, `svn`, `git`, `hg`, `p`)
//! after; a component with a leading zero compares as a fraction (`1.01 < 1.1`).

use std::cmp::Ordering;

use crate::VulnError;

/// What comes next in a version, in the order apk ranks a version that continues with it
/// against one that does not (lower continues to be greater).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    DigitOrZero,
    Digit,
    Letter,
    Suffix,
    SuffixNumber,
    Revision,
    End,
}

/// One token's value: numbers as digits without leading zeros (compared by length, then
/// lexically: no overflow), letters and suffix ranks as small integers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Value {
    /// A component with leading zeros: more zeros sort lower (`-zeros`), then the digits.
    Fraction(std::cmp::Reverse<usize>, Number),
    Small(i32),
    Number(Number),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Number(String);

impl Ord for Number {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for Number {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

const PRE: [&str; 4] = ["alpha", "beta", "pre", "rc"];
const POST: [&str; 5] = ["cvs", "svn", "git", "hg", "p"];

/// A parsed, valid apk version.
#[derive(Debug, Clone)]
pub struct ApkVersion {
    tokens: Vec<(Kind, Value)>,
}

fn digits(s: &[u8]) -> usize {
    s.iter().take_while(|b| b.is_ascii_digit()).count()
}

fn number(s: &[u8]) -> Number {
    let text: String = s.iter().map(|b| char::from(*b)).collect();
    Number(text.trim_start_matches('0').to_owned())
}

impl ApkVersion {
    pub fn parse(version: &str) -> Result<Self, VulnError> {
        let invalid = |why: &str| VulnError::InvalidVersion {
            ecosystem: "Alpine",
            version: version.chars().take(64).collect(),
            reason: why.to_owned(),
        };
        let mut s = version.as_bytes();
        if s.is_empty() || !s[0].is_ascii_digit() {
            return Err(invalid("must start with a digit"));
        }
        let mut kind = Kind::Digit;
        let mut tokens = Vec::new();
        loop {
            let (value, used) = match kind {
                Kind::DigitOrZero if s.first() == Some(&b'0') => {
                    let zeros = s.iter().take_while(|b| **b == b'0').count();
                    let n = digits(&s[zeros..]);
                    (
                        Value::Fraction(std::cmp::Reverse(zeros), number(&s[zeros..zeros + n])),
                        zeros + n,
                    )
                }
                // An empty run of digits counts as 0, as apk-tools has it (`1..2`, `1.0-r`).
                Kind::DigitOrZero | Kind::Digit | Kind::SuffixNumber | Kind::Revision => {
                    let n = digits(s);
                    (Value::Number(number(&s[..n])), n)
                }
                Kind::Letter => (Value::Small(i32::from(s[0])), 1),
                Kind::Suffix => {
                    let text = std::str::from_utf8(s).unwrap_or("");
                    if let Some(i) = PRE.iter().position(|p| text.starts_with(p)) {
                        (Value::Small(i as i32 - PRE.len() as i32), PRE[i].len())
                    } else if let Some(i) = POST.iter().position(|p| text.starts_with(p)) {
                        (Value::Small(i as i32), POST[i].len())
                    } else {
                        return Err(invalid("unknown suffix"));
                    }
                }
                Kind::End => break,
            };
            tokens.push((kind, value));
            s = &s[used..];
            // What may follow what, as apk-tools' tokenizer has it.
            kind = match s.first() {
                None => Kind::End,
                Some(c)
                    if matches!(kind, Kind::DigitOrZero | Kind::Digit)
                        && c.is_ascii_lowercase() =>
                {
                    Kind::Letter
                }
                Some(c) if kind == Kind::Letter && c.is_ascii_digit() => Kind::Digit,
                Some(c) if kind == Kind::Suffix && c.is_ascii_digit() => Kind::SuffixNumber,
                Some(b'.') => {
                    s = &s[1..];
                    Kind::DigitOrZero
                }
                Some(b'_') => {
                    s = &s[1..];
                    Kind::Suffix
                }
                Some(b'-') if s.get(1) == Some(&b'r') => {
                    s = &s[2..];
                    Kind::Revision
                }
                _ => return Err(invalid("unexpected character")),
            };
        }
        Ok(Self { tokens })
    }
}

impl Ord for ApkVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        let mut i = 0;
        loop {
            match (self.tokens.get(i), other.tokens.get(i)) {
                (Some((ka, va)), Some((kb, vb))) if ka == kb => match va.cmp(vb) {
                    Ordering::Equal => i += 1,
                    unequal => return unequal,
                },
                (a, b) => {
                    // The versions agree up to here; one continues differently or ends.
                    // Continuing is greater, unless with a pre-release suffix.
                    let pre = |t: Option<&(Kind, Value)>| matches!(t, Some((Kind::Suffix, Value::Small(v))) if *v < 0);
                    if pre(a) {
                        return Ordering::Less;
                    }
                    if pre(b) {
                        return Ordering::Greater;
                    }
                    let kind = |t: Option<&(Kind, Value)>| t.map_or(Kind::End, |(k, _)| *k);
                    return kind(b).cmp(&kind(a));
                }
            }
        }
    }
}

// Equal means equal in the order ("1.0" and "1.00" are one version), as the ranges need.
impl PartialEq for ApkVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for ApkVersion {}

impl PartialOrd for ApkVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> ApkVersion {
        ApkVersion::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    /// Vectors from apk-tools' own test suite (`test/version.data`).
    #[test]
    fn apk_tools_published_orders() {
        let cases = "2.34 > 0.1.0_alpha
            0.1.0_alpha2 > 0.1.0_alpha
            0.1.0_alpha < 2.2.39-r1
            1.0.4-r3 < 1.0.4-r4
            1.1 > 1.1_alpha1
            1.2.1 > 1.2
            1.2 < 1.3_alpha
            0.7.0 < 0.8_beta1
            2.3.0b-r1 < 2.3.0b-r2
            2.3.0b-r4 > 0.12.1
            0.12.3 > 0.12
            3.1_p16 < 3.1_p17
            1.06-r6 < 006
            006 > 1.0.0
            1.2.2-r1 > 1.2.2
            2.59 < 20050718-r1
            3.9.8-r5 > 2.01.01_alpha10
            1.0 > 0.99.3.20040818
            1.00_beta2 > 0.9.2
            4.2.52_p2-r1 < 4.2.52_p4-r2
            2.18.3-r10 > 1.05-r18
            20060720 > 3.0.20060720
            2.1.9.200602141850 > 1.6
            2.5.1-r8 < 2.5.1a-r1
            1.3.5-r10 > 1.3.5-r8
            2.0.0_rc3-r1 > 1.5
            3.0.0-r2 < 021109-r3
            0.9.16-r1 < 3.9_pre20060124
            6b-r7 > 1.12-r7
            0.10.0 < 0.10.1_rc1
            1.1a < 1.3a
            0.15.1b-r2 > 0.15.1b
            22.7.3-r1 > 22.7
            2.1_pre20 < 2.1_pre26
            02.08.01b < 4.77
            8.1.2.20050715-r1 < 20030215
            1.6d > 1.2.07.8
            1.2.07.8 < 1.2.12.04
            0.59s-r11 < 0.65
            0.20070118 < 0.20070207_rc1
            4.5_p1-r1 > 4.5_p1
            0.9.8c-r1 < 0.9.8d
            2.2.3-r2 < 013
            1.7 < 1.7b
            1.8.5 < 1.8.5_p2
            1.6.8_p12-r1 > 1.6.8_p9-r2
            0.9.28-r2 < 0.9.28.1
            0.9.28.1 < 087-r1
            104-r11 > 104-r9
            2.12r-r4 < 2.12r-r5
            7.0.17 < 7.0.174
            1.3-r0 < 1.3.1-r0
            1.3_pre1-r1 < 1.3.2
            1.0_p10-r0 > 1.0_p9-r0
            0.1.0_alpha_pre2 < 0.1.0_alpha
            1.0.0_pre20191002222144-r0 < 1.0.0_pre20210530193627-r0
            2.16.1-r3 = 2.16.1-r3
            1.0.0 = 1.0.0";
        for line in cases.lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let (a, op, b) = (parts[0], parts[1], parts[2]);
            let want = match op {
                "<" => Ordering::Less,
                ">" => Ordering::Greater,
                _ => Ordering::Equal,
            };
            assert_eq!(v(a).cmp(&v(b)), want, "{line}");
            assert_eq!(v(b).cmp(&v(a)), want.reverse(), "{line} (reversed)");
        }
    }

    #[test]
    fn invalid_versions_say_why() {
        for bad in ["", "x1", "1_zzz", "1 0", "1.0-", "1.0-x", "1A"] {
            assert!(ApkVersion::parse(bad).is_err(), "{bad}");
        }
    }

    fn apk_version() -> impl Strategy<Value = String> {
        (
            proptest::collection::vec("0{0,2}[0-9]{1,3}", 1..4),
            proptest::option::of("[a-z]"),
            proptest::collection::vec(
                (
                    "(alpha|beta|pre|rc|cvs|svn|git|hg|p)",
                    proptest::option::of("[0-9]{1,3}"),
                ),
                0..3,
            ),
            proptest::option::of("[0-9]{1,2}"),
        )
            .prop_map(|(nums, letter, suffixes, rev)| {
                let mut s = nums.join(".");
                s.push_str(&letter.unwrap_or_default());
                for (suffix, n) in suffixes {
                    s.push('_');
                    s.push_str(&suffix);
                    s.push_str(&n.unwrap_or_default());
                }
                if let Some(r) = rev {
                    s.push_str("-r");
                    s.push_str(&r);
                }
                s
            })
    }

    proptest! {
        #[test]
        fn a_total_order(a in apk_version(), b in apk_version(), c in apk_version()) {
            let (a, b, c) = (v(&a), v(&b), v(&c));
            prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
            prop_assert_eq!(a.cmp(&a), Ordering::Equal);
            if a <= b && b <= c {
                prop_assert!(a <= c);
            }
        }

        #[test]
        fn any_text_is_parsed_or_refused(s in "\\PC{0,40}") {
            let _ = ApkVersion::parse(&s);
        }
    }
}
