//! How a device listing is searched and ordered: a search text (a device id, or the start of
//! a serial number or hardware id) and a sort order that pages exactly (every order ends with
//! the device id, so "after this device" is one position in it).

use std::fmt;
use std::str::FromStr;

use crate::DeviceId;
use crate::inventory::{InventoryError, text};

/// Longest search text: the longest hardware id.
pub const MAX_SEARCH: usize = 256;

/// What a person types in the search box, checked: trimmed, 1 to 256 printable characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSearch {
    text: String,
}

impl DeviceSearch {
    pub fn parse(value: &str) -> Result<Self, InventoryError> {
        Ok(Self {
            text: text("q", value, MAX_SEARCH)?,
        })
    }

    /// The prefix serial numbers and hardware ids are matched with (case-sensitive: serial
    /// numbers are what the maker printed).
    pub fn prefix(&self) -> &str {
        &self.text
    }

    /// The first string after every string that starts with the prefix, in code point order
    /// (the prefix followed by the last code point), so a range scan on an index finds them.
    pub fn upper_bound(&self) -> String {
        format!("{}{}", self.text, char::MAX)
    }

    /// The device id the text names, if it is one.
    pub fn device_id(&self) -> Option<DeviceId> {
        self.text.parse().ok()
    }
}

/// The column a device listing is ordered by: keys that never change, so a cursor (a device)
/// keeps its place in the order between pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeviceSortKey {
    /// Registration order (device ids are time-ordered UUIDv7).
    #[default]
    Created,
    Serial,
}

/// A listing's order: a key and a direction, written `serial` or `-serial`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceSort {
    pub key: DeviceSortKey,
    pub descending: bool,
}

impl DeviceSort {
    pub const ALL: [&'static str; 4] = ["created", "-created", "serial", "-serial"];

    /// The same key in the other direction (what a column header's link offers).
    pub fn reversed(self) -> Self {
        Self {
            descending: !self.descending,
            ..self
        }
    }
}

impl FromStr for DeviceSort {
    type Err = InventoryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (descending, key) = match s.strip_prefix('-') {
            Some(k) => (true, k),
            None => (false, s),
        };
        let key = match key {
            "created" => DeviceSortKey::Created,
            "serial" => DeviceSortKey::Serial,
            _ => return Err(InventoryError::BadSort(s.chars().take(32).collect())),
        };
        Ok(Self { key, descending })
    }
}

impl fmt::Display for DeviceSort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = match self.key {
            DeviceSortKey::Created => "created",
            DeviceSortKey::Serial => "serial",
        };
        write!(f, "{}{key}", if self.descending { "-" } else { "" })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sorts_parse_and_print_back() {
        for s in DeviceSort::ALL {
            assert_eq!(s.parse::<DeviceSort>().unwrap().to_string(), s);
        }
        assert_eq!(
            "-serial"
                .parse::<DeviceSort>()
                .unwrap()
                .reversed()
                .to_string(),
            "serial"
        );
        for bad in [
            "",
            "-",
            "--serial",
            "Serial",
            "owner",
            "state",
            "serial;drop",
        ] {
            assert!(bad.parse::<DeviceSort>().is_err(), "{bad}");
        }
    }

    #[test]
    fn search_text_is_checked() {
        assert_eq!(DeviceSearch::parse("  GW-1 ").unwrap().prefix(), "GW-1");
        assert!(DeviceSearch::parse("   ").is_err());
        assert!(DeviceSearch::parse("a\u{7}").is_err());
        assert!(DeviceSearch::parse(&"x".repeat(MAX_SEARCH + 1)).is_err());
        let id = "0190f1a8-7a3c-7cc4-8f00-000000000001";
        assert_eq!(
            DeviceSearch::parse(id)
                .unwrap()
                .device_id()
                .unwrap()
                .to_string(),
            id
        );
        assert_eq!(DeviceSearch::parse("GW-1").unwrap().device_id(), None);
    }

    proptest! {
        /// Every string that starts with the prefix lies in [prefix, upper bound); in byte
        /// order, which is code point order for UTF-8 (what the indexes compare by).
        #[test]
        fn prefixed_strings_fall_in_the_range(prefix in "[ -~é]{1,20}", rest in "[^\u{10FFFF}]{0,20}") {
            let search = DeviceSearch::parse(&prefix).unwrap_or_else(|_| DeviceSearch::parse("x").unwrap());
            let value = format!("{}{rest}", search.prefix());
            prop_assert!(value.as_bytes() >= search.prefix().as_bytes());
            prop_assert!(value.as_bytes() < search.upper_bound().as_bytes());
        }
    }
}
