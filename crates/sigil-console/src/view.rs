//! What every page template shares: the frame around it, times for people, small helpers.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::viewer::Viewer;

/// The frame of a page: its title, the section highlighted in the navigation, and who is
/// logged in (absent on the login and error pages).
pub struct Layout {
    pub title: String,
    pub section: &'static str,
    pub user: Option<User>,
}

pub struct User {
    pub username: String,
    pub role: String,
    pub mfa: bool,
    /// Whether the role may read alarms (the navigation offers the page only then).
    pub alarms: bool,
}

impl Layout {
    pub fn new(title: impl Into<String>, section: &'static str, viewer: &Viewer) -> Self {
        Self {
            title: title.into(),
            section,
            user: Some(User {
                username: viewer.username.clone(),
                role: viewer.role.clone(),
                mfa: viewer.mfa,
                alarms: viewer.can("GET /api/v1/alarms"),
            }),
        }
    }

    pub fn anonymous(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            section: "",
            user: None,
        }
    }

    /// `aria-current` for the navigation link of `section`.
    pub fn current(&self, section: &str) -> &'static str {
        if self.section == section {
            "page"
        } else {
            "false"
        }
    }
}

/// A time as the API gives it (RFC 3339, UTC). Pages show it in UTC; the console's script
/// rewrites it into the reader's own time zone and keeps UTC in the title (on hover).
#[derive(Debug, Clone)]
pub struct Time {
    /// The machine-readable form, for `<time datetime>`.
    pub iso: String,
    /// `2026-12-05 08:30 UTC`.
    pub utc: String,
}

impl Time {
    pub fn parse(value: &str) -> Option<Self> {
        let t = OffsetDateTime::parse(value, &Rfc3339).ok()?;
        let t = t.to_offset(time::UtcOffset::UTC);
        Some(Self {
            iso: t.format(&Rfc3339).ok()?,
            utc: format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            ),
        })
    }

    /// The same, or an empty time for a value that is not RFC 3339 (shown as given).
    pub fn or_raw(value: &str) -> Self {
        Self::parse(value).unwrap_or_else(|| Self {
            iso: String::new(),
            utc: value.to_owned(),
        })
    }
}

/// A query string from pairs, leaving out empty values (`?a=1&b=2`, or empty).
pub fn query(pairs: &[(&str, &str)]) -> String {
    let kept: Vec<(&str, &str)> = pairs
        .iter()
        .copied()
        .filter(|(_, v)| !v.is_empty())
        .collect();
    if kept.is_empty() {
        String::new()
    } else {
        format!("?{}", serde_urlencoded::to_string(kept).unwrap_or_default())
    }
}

/// Percent-encode one path segment (an id from the API is already safe; a name may not be).
pub fn segment(value: &str) -> String {
    serde_urlencoded::to_string([("", value)])
        .unwrap_or_default()
        .trim_start_matches('=')
        .replace('+', "%20")
}
