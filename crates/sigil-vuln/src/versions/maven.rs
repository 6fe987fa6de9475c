//! Maven's version order (`ComparableVersion` of Maven 3), which OSV's `Maven` ecosystem
//! ranges use. Hand-written: no Rust crate implements it. A version is a list of items split
//! at `.` and `-` and at every switch between digits and letters; a `-` (or such a switch)
//! opens a nested list. Items compare numbers numerically and qualifiers in the order
//! `alpha < beta < milestone < rc = cr < snapshot < "" = ga = final = release < sp < others`
//! (others lexically); trailing "null" items (0, "", an empty list) are dropped.

use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    /// Digits without leading zeros (compared by length, then lexically: no overflow).
    Int(String),
    /// A qualifier, with its aliases resolved (`ga` -> ``, `cr` -> `rc`, `a1` -> `alpha`).
    Str(String),
    List(Vec<Item>),
}

/// A parsed Maven version. Every string parses: Maven has no invalid versions.
#[derive(Debug, Clone)]
pub struct MavenVersion {
    items: Vec<Item>,
}

const QUALIFIERS: [&str; 7] = ["alpha", "beta", "milestone", "rc", "snapshot", "", "sp"];

/// Where a qualifier sorts: its index among the known ones, or after all of them, lexically.
fn qualifier_rank(q: &str) -> (usize, &str) {
    match QUALIFIERS.iter().position(|k| *k == q) {
        Some(i) => (i, ""),
        None => (QUALIFIERS.len(), q),
    }
}

/// Deepest nesting of lists a version gets (one per `-` or digit/letter switch).
const MAX_DEPTH: usize = 64;

/// The rank of the empty qualifier (a release).
const RELEASE: usize = 5;

fn int_item(digits: &str) -> Item {
    let trimmed = digits.trim_start_matches('0');
    Item::Int(trimmed.to_owned())
}

fn str_item(value: &str, followed_by_digit: bool) -> Item {
    let value = match value {
        "a" if followed_by_digit => "alpha",
        "b" if followed_by_digit => "beta",
        "m" if followed_by_digit => "milestone",
        "ga" | "final" | "release" => "",
        "cr" => "rc",
        other => other,
    };
    Item::Str(value.to_owned())
}

fn parse_item(text: &str) -> Item {
    if text.bytes().all(|b| b.is_ascii_digit()) {
        int_item(text)
    } else {
        str_item(text, false)
    }
}

impl Item {
    fn is_null(&self) -> bool {
        match self {
            Item::Int(v) => v.is_empty(),
            Item::Str(v) => v.is_empty(),
            Item::List(l) => l.is_empty(),
        }
    }

    /// Compare with `other`, `None` standing for a missing item (the shorter list's end).
    fn compare(&self, other: Option<&Item>) -> Ordering {
        match (self, other) {
            // 1.0 == 1; 1.1 > 1
            (Item::Int(v), None) => {
                if v.is_empty() {
                    Ordering::Equal
                } else {
                    Ordering::Greater
                }
            }
            (Item::Int(a), Some(Item::Int(b))) => a.len().cmp(&b.len()).then_with(|| a.cmp(b)),
            // 1.1 > 1-sp, 1.1 > 1-1
            (Item::Int(_), Some(Item::Str(_) | Item::List(_))) => Ordering::Greater,
            // 1-rc < 1, 1-sp > 1
            (Item::Str(v), None) => qualifier_rank(v).0.cmp(&RELEASE),
            (Item::Str(_), Some(Item::Int(_) | Item::List(_))) => Ordering::Less,
            (Item::Str(a), Some(Item::Str(b))) => qualifier_rank(a).cmp(&qualifier_rank(b)),
            (Item::List(l), None) => match l.first() {
                None => Ordering::Equal,
                Some(first) => first.compare(None),
            },
            // 1-1 < 1.0.x
            (Item::List(_), Some(Item::Int(_))) => Ordering::Less,
            // 1-1 > 1-sp
            (Item::List(_), Some(Item::Str(_))) => Ordering::Greater,
            (Item::List(a), Some(Item::List(b))) => compare_lists(a, b),
        }
    }
}

fn compare_lists(a: &[Item], b: &[Item]) -> Ordering {
    let longest = a.len().max(b.len());
    for i in 0..longest {
        let result = match (a.get(i), b.get(i)) {
            (Some(l), r) => l.compare(r),
            (None, Some(r)) => r.compare(None).reverse(),
            (None, None) => Ordering::Equal,
        };
        if result != Ordering::Equal {
            return result;
        }
    }
    Ordering::Equal
}

/// Drop trailing null items, stopping at the first item that is neither null nor a list.
fn normalize(list: &mut Vec<Item>) {
    let mut i = list.len();
    while i > 0 {
        i -= 1;
        if list[i].is_null() {
            list.remove(i);
        } else if !matches!(list[i], Item::List(_)) {
            break;
        }
    }
}

/// A list being built, and the lists it is nested in.
struct Builder {
    stack: Vec<Vec<Item>>,
}

impl Builder {
    fn current(&mut self) -> &mut Vec<Item> {
        // The stack always holds the outermost list.
        let last = self.stack.len() - 1;
        &mut self.stack[last]
    }

    fn push(&mut self, item: Item) {
        self.current().push(item);
    }

    /// Start a nested list inside the current one. Past `MAX_DEPTH` the items stay in the
    /// deepest list: comparisons and drops recurse per level, and a crafted version must not
    /// exhaust the stack (no real version comes near).
    fn open(&mut self) {
        if self.stack.len() < MAX_DEPTH {
            self.stack.push(Vec::new());
        }
    }

    fn finish(mut self) -> Vec<Item> {
        while self.stack.len() > 1 {
            let mut inner = self.stack.pop().unwrap_or_default();
            normalize(&mut inner);
            self.current().push(Item::List(inner));
        }
        let mut outer = self.stack.pop().unwrap_or_default();
        normalize(&mut outer);
        outer
    }
}

impl MavenVersion {
    pub fn parse(version: &str) -> Self {
        let version = version.to_ascii_lowercase();
        let bytes = version.as_bytes();
        let mut b = Builder {
            stack: vec![Vec::new()],
        };
        let mut is_digit = false;
        let mut start = 0;
        for (i, &c) in bytes.iter().enumerate() {
            if c == b'.' || c == b'-' {
                if i == start {
                    b.push(Item::Int(String::new()));
                } else {
                    b.push(parse_item(&version[start..i]));
                }
                start = i + 1;
                if c == b'-' {
                    b.open();
                }
            } else if c.is_ascii_digit() {
                if !is_digit && i > start {
                    b.push(str_item(&version[start..i], true));
                    start = i;
                    b.open();
                }
                is_digit = true;
            } else {
                if is_digit && i > start {
                    b.push(parse_item(&version[start..i]));
                    start = i;
                    b.open();
                }
                is_digit = false;
            }
        }
        if bytes.len() > start {
            b.push(parse_item(&version[start..]));
        }
        Self { items: b.finish() }
    }
}

impl Ord for MavenVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_lists(&self.items, &other.items)
    }
}

// Equal means equal in the order ("1.0" and "1.00" are one version), as the ranges need.
impl PartialEq for MavenVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for MavenVersion {}

impl PartialOrd for MavenVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> MavenVersion {
        MavenVersion::parse(s)
    }

    fn increasing(list: &[&str]) {
        for (i, low) in list.iter().enumerate() {
            for high in &list[i + 1..] {
                assert_eq!(v(low).cmp(&v(high)), Ordering::Less, "{low} < {high}");
                assert_eq!(v(high).cmp(&v(low)), Ordering::Greater, "{high} > {low}");
            }
        }
    }

    /// The orders and equalities of Maven's own `ComparableVersionTest`.
    #[test]
    fn maven_published_orders() {
        increasing(&[
            "1-alpha2snapshot",
            "1-alpha2",
            "1-alpha-123",
            "1-beta-2",
            "1-beta123",
            "1-m2",
            "1-m11",
            "1-rc",
            "1-cr2",
            "1-rc123",
            "1-SNAPSHOT",
            "1",
            "1-sp",
            "1-sp2",
            "1-sp123",
            "1-abc",
            "1-def",
            "1-pom-1",
            "1-1-snapshot",
            "1-1",
            "1-2",
            "1-123",
        ]);
        increasing(&[
            "2.0", "2-1", "2.0.a", "2.0.0.a", "2.0.2", "2.0.123", "2.1.0", "2.1-a", "2.1b",
            "2.1-c", "2.1-1", "2.1.0.1", "2.2", "2.123", "11.a2", "11.a11", "11.b2", "11.b11",
            "11.m2", "11.m11", "11", "11.a", "11b", "11c", "11m",
        ]);
        for (low, high) in [
            ("1", "2"),
            ("1.5", "2"),
            ("1.0.1", "1.1"),
            ("1.0-alpha-1", "1.0"),
            ("1.0-beta-1", "1.0-SNAPSHOT"),
            ("1.0-alpha-1-SNAPSHOT", "1.0-alpha-1"),
            ("1.0", "1.0-1"),
            ("1.0.0", "1.0-1"),
            ("2.0-1", "2.0.1"),
            ("2.0.1-klm", "2.0.1-lmn"),
            ("2.0.1", "2.0.1-xyz"),
            ("2.0.1-xyz", "2.0.1-123"),
            // Numbers beyond 64 bits still compare.
            ("1.18446744073709551616", "1.18446744073709551617"),
        ] {
            increasing(&[low, high]);
        }
        for (a, b) in [
            ("1", "1.0"),
            ("1", "1.0.0"),
            ("1", "1-0"),
            ("1.0", "1.0-0"),
            ("1a", "1-a"),
            ("1a", "1.0.0-a"),
            ("1x", "1.0-x"),
            ("1ga", "1"),
            ("1final", "1"),
            ("1cr", "1rc"),
            ("1a1", "1alpha1"),
            ("1b2", "1beta2"),
            ("1m3", "1MILESTONE3"),
            ("1FinaL", "1"),
            ("1.007", "1.7"),
        ] {
            assert_eq!(v(a).cmp(&v(b)), Ordering::Equal, "{a} == {b}");
        }
    }

    /// Versions as projects write them: dotted numbers, then qualifiers after `-`, or after
    /// `.` when they sort at or before a release. Maven's order is not transitive on every
    /// string, and Sigil keeps Maven's order rather than a tidier one (OSV's ranges mean
    /// Maven's): see `maven_itself_is_not_transitive`. Matching never relies on transitivity
    /// (see `matching`).
    fn maven_version() -> impl Strategy<Value = String> {
        let qualifier = prop_oneof![
            Just(("-", "alpha")),
            Just(("-", "beta")),
            Just(("-", "rc")),
            Just(("-", "SNAPSHOT")),
            Just(("-", "sp")),
            Just(("-", "ga")),
            Just(("-", "jre")),
            Just((".", "alpha")),
            Just((".", "beta")),
            Just((".", "rc")),
            Just((".", "SNAPSHOT")),
            Just((".", "ga")),
        ];
        (
            proptest::collection::vec("[0-9]{1,3}", 1..4),
            proptest::collection::vec((qualifier, proptest::option::of("[0-9]{1,2}")), 0..3),
        )
            .prop_map(|(numbers, qualifiers)| {
                let mut s = numbers.join(".");
                for ((sep, q), n) in qualifiers {
                    s.push_str(sep);
                    s.push_str(q);
                    s.push_str(&n.unwrap_or_default());
                }
                s
            })
    }

    proptest! {
        /// A total order: antisymmetric and transitive, whatever the input.
        #[test]
        fn a_total_order(a in maven_version(), b in maven_version(), c in maven_version()) {
            let (a, b, c) = (v(&a), v(&b), v(&c));
            prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
            prop_assert_eq!(a.cmp(&a), Ordering::Equal);
            if a <= b && b <= c {
                prop_assert!(a <= c);
            }
        }

        #[test]
        fn any_text_parses(s in "\\PC{0,40}") {
            let _ = MavenVersion::parse(&s);
        }

        #[test]
        fn versions_of_any_shape_compare_without_panicking(a in "\\PC{0,40}", b in "\\PC{0,40}") {
            let _ = v(&a).cmp(&v(&b));
        }
    }

    /// Maven's `ComparableVersion` puts a qualifier after `.` below any `-` list, yet a
    /// service pack (or unknown qualifier) above the release: `5.sp` < `5-alpha` < `5` while
    /// `5.sp` > `5`. Maven answers each pair so, and so does Sigil.
    #[test]
    fn maven_itself_is_not_transitive() {
        for dotted in ["5.sp", "5.jre"] {
            assert_eq!(v(dotted).cmp(&v("5-alpha")), Ordering::Less, "{dotted}");
            assert_eq!(v("5-alpha").cmp(&v("5")), Ordering::Less);
            assert_eq!(v(dotted).cmp(&v("5")), Ordering::Greater, "{dotted}");
        }
    }

    /// A version of a hundred thousand `-1` levels: parsed, compared and dropped without
    /// exhausting the stack.
    #[test]
    fn deep_versions_are_flattened() {
        let deep = "1-".repeat(100_000);
        let (a, b) = (v(&deep), v(&format!("{deep}2")));
        assert_ne!(a.cmp(&b), Ordering::Equal);
    }
}
