//! Products and devices: the inventory records and the rules their fields obey.

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

use crate::ids::{DeviceId, ProductId};
use crate::lifecycle::LifecycleState;

/// A device may carry at most this many tags.
pub const MAX_TAGS: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InventoryError {
    #[error("`{field}` must not be empty")]
    Empty { field: &'static str },
    #[error("`{field}` is too long ({len} characters, at most {max})")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("`{field}` contains a control character")]
    ControlCharacter { field: &'static str },
    #[error("`{field}`: `{value}` is not a date in YYYY-MM-DD form")]
    BadDate { field: &'static str, value: String },
    #[error("tag `{0}` is invalid: tags are 1 to 64 characters of letters, digits and . _ - : / =")]
    BadTag(String),
    #[error("too many tags ({0}, at most {MAX_TAGS})")]
    TooManyTags(usize),
    #[error("remediation_days {0} is out of range: 1 to {MAX_REMEDIATION_DAYS} days")]
    RemediationDays(u32),
    #[error("`{field}` has too many entries ({len}, at most {max})")]
    TooMany {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("service `{0}` is not `tcp/PORT` or `udp/PORT` with a port from 1 to 65535")]
    BadService(String),
    #[error("sort `{0}` is not created or serial (either may start with `-` for descending)")]
    BadSort(String),
    #[error("`current_firmware` must list at least one version")]
    NoCurrentFirmware,
    #[error(
        "`{0}` cannot be edited: only hardware_id, owner, site and tags can (the serial number and product identify the device; its state and firmware change through their own operations)"
    )]
    NotEditable(String),
    #[error("`{field}` must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("the change is empty: name at least one of hardware_id, owner, site, tags")]
    NothingToChange,
}

/// Most entries in each list of a product declaration.
pub const MAX_DECLARED: usize = 256;

/// What a product's maker declares for compliance: the firmware versions that are current (a
/// device running anything else is out of date), the network services a device may expose, and
/// the SBOM of each firmware version (CRA Annex I Part II (1), EN 303 645 5.6, 5.3).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductDeclaration {
    pub current_firmware: Vec<String>,
    /// `tcp/8883`, `udp/5683`, ...
    pub allowed_services: Vec<String>,
    /// SBOM reference (URI or digest) per firmware version.
    #[serde(default)]
    pub sboms: std::collections::BTreeMap<String, String>,
    /// Days a device may run without a security release once it is published (CRA Annex I
    /// Part II (2): remediate without delay; the maker states what that means for the product).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation_days: Option<u32>,
}

/// Longest remediation deadline a declaration may state: ten years, a support period.
pub const MAX_REMEDIATION_DAYS: u32 = 3650;

impl ProductDeclaration {
    /// Checked and normalised (trimmed; services in lower case; duplicates removed).
    pub fn parse(
        current_firmware: &[String],
        allowed_services: &[String],
        sboms: &std::collections::BTreeMap<String, String>,
        remediation_days: Option<u32>,
    ) -> Result<Self, InventoryError> {
        if let Some(days) = remediation_days
            && !(1..=MAX_REMEDIATION_DAYS).contains(&days)
        {
            return Err(InventoryError::RemediationDays(days));
        }
        let bounded = |field: &'static str, len: usize| {
            if len > MAX_DECLARED {
                Err(InventoryError::TooMany {
                    field,
                    len,
                    max: MAX_DECLARED,
                })
            } else {
                Ok(())
            }
        };
        bounded("current_firmware", current_firmware.len())?;
        bounded("allowed_services", allowed_services.len())?;
        bounded("sboms", sboms.len())?;
        if current_firmware.is_empty() {
            return Err(InventoryError::NoCurrentFirmware);
        }
        let mut firmware = current_firmware
            .iter()
            .map(|v| text("current_firmware", v, 64))
            .collect::<Result<Vec<_>, _>>()?;
        firmware.sort();
        firmware.dedup();
        let mut services = allowed_services
            .iter()
            .map(|s| parse_service(s))
            .collect::<Result<Vec<_>, _>>()?;
        services.sort();
        services.dedup();
        let sboms = sboms
            .iter()
            .map(|(v, r)| {
                Ok((
                    text("sboms (version)", v, 64)?,
                    text("sboms (reference)", r, 512)?,
                ))
            })
            .collect::<Result<_, InventoryError>>()?;
        Ok(Self {
            current_firmware: firmware,
            allowed_services: services,
            sboms,
            remediation_days,
        })
    }
}

/// `tcp/8883` (or `UDP/5683`, with spaces around): the canonical `protocol/port` form.
pub fn parse_service(s: &str) -> Result<String, InventoryError> {
    let bad = || InventoryError::BadService(s.chars().take(32).collect());
    let (protocol, port) = s.trim().split_once('/').ok_or_else(bad)?;
    let protocol = protocol.to_ascii_lowercase();
    if protocol != "tcp" && protocol != "udp" {
        return Err(bad());
    }
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(format!("{protocol}/{p}")),
        _ => Err(bad()),
    }
}

/// A product line: the thing a manufacturer declares a security-support period for (CRA Art. 13(8)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub id: ProductId,
    pub name: String,
    pub manufacturer: String,
    /// Last day the manufacturer commits to ship security updates.
    pub support_end: Date,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A validated request to create a product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProduct {
    pub name: String,
    pub manufacturer: String,
    pub support_end: Date,
}

impl NewProduct {
    pub fn parse(
        name: &str,
        manufacturer: &str,
        support_end: &str,
    ) -> Result<Self, InventoryError> {
        Ok(Self {
            name: text("name", name, 200)?,
            manufacturer: text("manufacturer", manufacturer, 200)?,
            support_end: parse_date("support_end", support_end)?,
        })
    }
}

/// A device tag, e.g. `line-3` or `region=eu-west`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Tag(String);

impl Tag {
    pub fn parse(s: &str) -> Result<Self, InventoryError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-:/=".contains(&b));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InventoryError::BadTag(s.chars().take(64).collect()))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Tag {
    type Error = InventoryError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Tag::parse(&s)
    }
}

impl From<Tag> for String {
    fn from(t: Tag) -> Self {
        t.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub id: DeviceId,
    pub product_id: ProductId,
    pub serial_number: String,
    pub hardware_id: Option<String>,
    pub owner: Option<String>,
    pub site: Option<String>,
    pub tags: Vec<Tag>,
    pub firmware_version: Option<String>,
    pub state: LifecycleState,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A validated request to register a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDevice {
    pub product_id: ProductId,
    pub serial_number: String,
    pub hardware_id: Option<String>,
    pub owner: Option<String>,
    pub site: Option<String>,
    pub tags: Vec<Tag>,
    pub firmware_version: Option<String>,
}

/// Unvalidated device fields as they arrive from a caller.
#[derive(Debug, Clone, Default)]
pub struct DeviceFields<'a> {
    pub serial_number: &'a str,
    pub hardware_id: Option<&'a str>,
    pub owner: Option<&'a str>,
    pub site: Option<&'a str>,
    pub tags: &'a [String],
    pub firmware_version: Option<&'a str>,
}

impl NewDevice {
    pub fn parse(product_id: ProductId, f: DeviceFields<'_>) -> Result<Self, InventoryError> {
        if f.tags.len() > MAX_TAGS {
            return Err(InventoryError::TooManyTags(f.tags.len()));
        }
        let mut tags = f
            .tags
            .iter()
            .map(|t| Tag::parse(t))
            .collect::<Result<Vec<_>, _>>()?;
        tags.sort();
        tags.dedup();
        Ok(Self {
            product_id,
            serial_number: text("serial_number", f.serial_number, 128)?,
            hardware_id: f
                .hardware_id
                .map(|v| text("hardware_id", v, 256))
                .transpose()?,
            owner: f.owner.map(|v| text("owner", v, 200)).transpose()?,
            site: f.site.map(|v| text("site", v, 200)).transpose()?,
            tags,
            firmware_version: f
                .firmware_version
                .map(|v| text("firmware_version", v, 64))
                .transpose()?,
        })
    }
}

/// Which devices a listing returns, in which order. Pagination is by device: a page starts
/// after the `after` device's position in the order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceFilter {
    pub state: Option<LifecycleState>,
    pub product: Option<ProductId>,
    pub tag: Option<Tag>,
    /// Only devices at this site (exactly as recorded).
    pub site: Option<String>,
    /// Only the device with this id, or those whose serial number or hardware id starts so.
    pub search: Option<crate::DeviceSearch>,
    /// Only these devices (a set another index chose, such as a compliance status).
    pub ids: Option<Vec<DeviceId>>,
    pub sort: crate::DeviceSort,
    /// Return devices that come after this one in the order.
    pub after: Option<DeviceId>,
    pub limit: u32,
}

/// Trimmed, non-empty, bounded, free of control characters.
pub(crate) fn text(field: &'static str, value: &str, max: usize) -> Result<String, InventoryError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(InventoryError::Empty { field });
    }
    let len = v.chars().count();
    if len > max {
        return Err(InventoryError::TooLong { field, len, max });
    }
    if v.chars().any(char::is_control) {
        return Err(InventoryError::ControlCharacter { field });
    }
    Ok(v.to_owned())
}

fn parse_date(field: &'static str, value: &str) -> Result<Date, InventoryError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(value.trim(), &format).map_err(|_| InventoryError::BadDate {
        field,
        value: value.chars().take(32).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn product_fields_are_validated() {
        let p = NewProduct::parse(" Thermostat ", "Acme", "2031-12-31")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.name, "Thermostat");
        assert_eq!(
            NewProduct::parse("", "Acme", "2031-12-31"),
            Err(InventoryError::Empty { field: "name" })
        );
        assert!(matches!(
            NewProduct::parse("T", "Acme", "31/12/2031"),
            Err(InventoryError::BadDate { .. })
        ));
        assert!(matches!(
            NewProduct::parse("T", "Acme", "2031-02-30"),
            Err(InventoryError::BadDate { .. })
        ));
        // Storage and the API rely on Date's Display being the YYYY-MM-DD form parsed here.
        let early = NewProduct::parse("T", "Acme", "0999-01-05").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(early.support_end.to_string(), "0999-01-05");
        assert_eq!(p.support_end.to_string(), "2031-12-31");
        assert_eq!(
            NewProduct::parse("a\u{7}b", "Acme", "2031-12-31"),
            Err(InventoryError::ControlCharacter { field: "name" })
        );
    }

    #[test]
    fn tags_are_validated_sorted_and_deduplicated() {
        let tags = vec!["b".to_owned(), "a".to_owned(), "b".to_owned()];
        let d = NewDevice::parse(
            ProductId::generate(),
            DeviceFields {
                serial_number: "SN1",
                tags: &tags,
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            d.tags.iter().map(Tag::as_str).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(Tag::parse("has space").is_err());
        assert!(Tag::parse("").is_err());
        let many: Vec<String> = (0..33).map(|i| format!("t{i}")).collect();
        assert_eq!(
            NewDevice::parse(
                ProductId::generate(),
                DeviceFields {
                    serial_number: "SN1",
                    tags: &many,
                    ..Default::default()
                }
            ),
            Err(InventoryError::TooManyTags(33))
        );
    }

    proptest! {
        #[test]
        fn validation_never_panics(name in ".{0,300}", date in ".{0,20}", tag in ".{0,80}") {
            let _ = NewProduct::parse(&name, &name, &date);
            let _ = Tag::parse(&tag);
            let tags = vec![tag.clone()];
            let _ = NewDevice::parse(ProductId::generate(), DeviceFields { serial_number: &name, hardware_id: Some(&tag), tags: &tags, ..Default::default() });
        }
    }

    #[test]
    fn declarations_are_checked_and_normalised() {
        let map = std::collections::BTreeMap::new();
        let d = ProductDeclaration::parse(
            &["2.1.0".into(), " 2.1.0 ".into(), "2.0.9".into()],
            &["TCP/8883".into(), " udp/5683 ".into(), "tcp/8883".into()],
            &map,
            Some(30),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.current_firmware, vec!["2.0.9", "2.1.0"]);
        assert_eq!(d.remediation_days, Some(30));
        assert_eq!(d.allowed_services, vec!["tcp/8883", "udp/5683"]);
        for bad in [
            "tcp",
            "tcp/0",
            "tcp/65536",
            "sctp/1",
            "tcp/+1",
            "tcp/80/1",
            "/80",
            "tcp/",
        ] {
            assert!(
                matches!(
                    ProductDeclaration::parse(&["1".into()], &[bad.into()], &map, None),
                    Err(InventoryError::BadService(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            ProductDeclaration::parse(&[], &[], &map, None),
            Err(InventoryError::NoCurrentFirmware)
        );
        for days in [0, MAX_REMEDIATION_DAYS + 1] {
            assert_eq!(
                ProductDeclaration::parse(&["1".into()], &[], &map, Some(days)),
                Err(InventoryError::RemediationDays(days))
            );
        }
        let many: Vec<String> = (0..=MAX_DECLARED).map(|i| i.to_string()).collect();
        assert!(matches!(
            ProductDeclaration::parse(&many, &[], &map, None),
            Err(InventoryError::TooMany {
                field: "current_firmware",
                ..
            })
        ));
    }

    proptest! {
        /// Any text: a service name is refused or is exactly `tcp|udp/N` with N in 1..=65535,
        /// and parsing the canonical form gives it back.
        #[test]
        fn service_names_parse_to_a_canonical_form(s in "\\PC{0,12}|(tcp|udp|TCP)/[0-9]{0,6}") {
            if let Ok(canonical) = parse_service(&s) {
                let (protocol, port) = canonical.split_once('/').unwrap_or_default();
                prop_assert!(protocol == "tcp" || protocol == "udp");
                let port: u32 = port.parse().unwrap_or(0);
                prop_assert!((1..=65535).contains(&port));
                prop_assert_eq!(parse_service(&canonical), Ok(canonical.clone()));
            }
        }
    }
}
