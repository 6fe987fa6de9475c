//! CISA's Known Exploited Vulnerabilities catalogue (the JSON feed,
//! `known_exploited_vulnerabilities.json`): which CVEs are exploited in the wild, since when,
//! and the remediation due date CISA set.

use serde::{Deserialize, Serialize};

use crate::VulnError;

/// Largest catalogue accepted (the feed is about 1.5 MB for 1,400 entries).
pub const MAX_KEV_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KevCatalogue {
    #[serde(default)]
    pub title: String,
    pub catalog_version: String,
    #[serde(default)]
    pub date_released: String,
    pub vulnerabilities: Vec<KevEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KevEntry {
    #[serde(rename = "cveID")]
    pub cve_id: String,
    #[serde(default)]
    pub vendor_project: String,
    #[serde(default)]
    pub product: String,
    #[serde(default)]
    pub vulnerability_name: String,
    /// YYYY-MM-DD.
    pub date_added: String,
    #[serde(default)]
    pub due_date: Option<String>,
    /// `Known` or `Unknown`.
    #[serde(default)]
    pub known_ransomware_campaign_use: Option<String>,
    #[serde(default)]
    pub required_action: String,
}

/// Whether `text` is a CVE id (`CVE-YYYY-NNNN...`).
pub fn is_cve(text: &str) -> bool {
    let mut parts = text.splitn(3, '-');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some("CVE"), Some(year), Some(number))
            if year.len() == 4 && year.bytes().all(|b| b.is_ascii_digit())
                && (4..=19).contains(&number.len()) && number.bytes().all(|b| b.is_ascii_digit())
    )
}

fn is_date(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

impl KevCatalogue {
    pub fn parse(bytes: &[u8]) -> Result<Self, VulnError> {
        if bytes.len() > MAX_KEV_BYTES {
            return Err(VulnError::TooLarge {
                what: "KEV catalogue",
                limit: MAX_KEV_BYTES,
            });
        }
        let catalogue: KevCatalogue =
            serde_json::from_slice(bytes).map_err(|e| VulnError::Malformed {
                what: "KEV catalogue",
                line: e.line(),
                reason: e.to_string(),
            })?;
        for (i, e) in catalogue.vulnerabilities.iter().enumerate() {
            let bad = |why: &str| VulnError::Malformed {
                what: "KEV catalogue",
                line: 0,
                reason: format!("vulnerabilities[{i}]: {why}"),
            };
            if !is_cve(&e.cve_id) {
                return Err(bad("`cveID` is not a CVE id"));
            }
            if !is_date(&e.date_added) || e.due_date.as_deref().is_some_and(|d| !is_date(d)) {
                return Err(bad("dates are YYYY-MM-DD"));
            }
        }
        Ok(catalogue)
    }
}
