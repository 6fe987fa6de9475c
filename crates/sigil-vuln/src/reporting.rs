//! CRA Article 14 reporting clocks and drafts, pure.
//!
//! Regulation (EU) 2024/2847, Article 14(2): for an actively exploited vulnerability, the
//! manufacturer notifies its CSIRT (and ENISA, through the single reporting platform) with an
//! early warning within 24 hours of becoming aware, a vulnerability notification within 72
//! hours of becoming aware, and a final report within 14 days after a corrective or mitigating
//! measure is available. The clock here is exact: deadlines are instants, not dates, so a
//! case opened at 10:17 has its early warning due at 10:17 the next day.

use std::fmt::Write as _;

use serde::Serialize;
use time::{Duration, OffsetDateTime};

/// The three reports, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    EarlyWarning,
    Notification,
    FinalReport,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Self::EarlyWarning, Self::Notification, Self::FinalReport];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EarlyWarning => "early-warning",
            Self::Notification => "notification",
            Self::FinalReport => "final-report",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Article 14(2)(a), (b) and (c).
    pub fn article(self) -> &'static str {
        match self {
            Self::EarlyWarning => "Article 14(2)(a)",
            Self::Notification => "Article 14(2)(b)",
            Self::FinalReport => "Article 14(2)(c)",
        }
    }

    /// How long before its deadline a stage is announced as nearing: a quarter of the window
    /// for the short ones, three days for the final report.
    pub fn warn_before(self) -> Duration {
        match self {
            Self::EarlyWarning => Duration::hours(6),
            Self::Notification => Duration::hours(24),
            Self::FinalReport => Duration::days(3),
        }
    }
}

pub const EARLY_WARNING_WITHIN: Duration = Duration::hours(24);
pub const NOTIFICATION_WITHIN: Duration = Duration::hours(72);
pub const FINAL_REPORT_WITHIN: Duration = Duration::days(14);

/// The two instants every deadline follows from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaseClock {
    /// When the manufacturer became aware: the moment Sigil found the exploited
    /// vulnerability on a deployed product, or the operator said so.
    pub aware_at: OffsetDateTime,
    /// When a corrective measure (a release without the vulnerability) became available.
    pub fix_available_at: Option<OffsetDateTime>,
}

impl CaseClock {
    /// A stage's deadline; the final report has none until a fix is available.
    pub fn due(&self, stage: Stage) -> Option<OffsetDateTime> {
        match stage {
            Stage::EarlyWarning => Some(self.aware_at + EARLY_WARNING_WITHIN),
            Stage::Notification => Some(self.aware_at + NOTIFICATION_WITHIN),
            Stage::FinalReport => self.fix_available_at.map(|f| f + FINAL_REPORT_WITHIN),
        }
    }
}

/// What an alert about a stage says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Urgency {
    Nearing,
    Overdue,
}

impl Urgency {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nearing => "nearing",
            Self::Overdue => "overdue",
        }
    }
}

/// The alert a stage warrants at `now`: none once its report is submitted or while its
/// deadline is far; `Nearing` within `warn_before` of it; `Overdue` from the deadline on.
pub fn urgency(
    clock: &CaseClock,
    stage: Stage,
    submitted: bool,
    now: OffsetDateTime,
) -> Option<Urgency> {
    if submitted {
        return None;
    }
    let due = clock.due(stage)?;
    if now >= due {
        Some(Urgency::Overdue)
    } else if now >= due - stage.warn_before() {
        Some(Urgency::Nearing)
    } else {
        None
    }
}

/// The EU's 27 member states (ISO 3166-1 alpha-2; Greece is `GR` here, `EL` in EU usage).
pub const EU_MEMBER_STATES: [&str; 27] = [
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT",
    "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
];

/// ISO 3166-1 alpha-2, every officially assigned code.
const ISO_3166_ALPHA2: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG \
BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY \
CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ \
GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP \
KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU \
MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA \
RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK \
TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

/// A country code as sites are registered with: ISO 3166-1 alpha-2, upper case.
pub fn is_country_code(code: &str) -> bool {
    code.len() == 2 && ISO_3166_ALPHA2.split(' ').any(|c| c == code)
}

pub fn is_member_state(code: &str) -> bool {
    EU_MEMBER_STATES.contains(&code)
}

/// One affected device, as a report names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceLine {
    pub id: String,
    pub serial_number: String,
    pub firmware_version: String,
    pub site: Option<String>,
    pub country: Option<String>,
}

/// Where the product is affected.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Exposure {
    /// Every affected device (the list below may be shorter).
    pub devices: u64,
    pub firmware_versions: Vec<String>,
    /// Member states with affected devices (Article 14(2)(a)).
    pub member_states: Vec<String>,
    /// Countries outside the EU with affected devices.
    pub other_countries: Vec<String>,
    /// Affected devices whose site has no registered country.
    pub location_unknown: u64,
    pub listed: Vec<DeviceLine>,
}

impl Exposure {
    /// From every affected device: how many, where (`(country, devices)`, `None` for sites with
    /// no registered country), and the first of them by name.
    pub fn of(
        total: u64,
        firmware_versions: Vec<String>,
        countries: &[(Option<String>, u64)],
        listed: Vec<DeviceLine>,
    ) -> Self {
        let mut member_states = std::collections::BTreeSet::new();
        let mut other = std::collections::BTreeSet::new();
        let mut unknown = 0;
        for (country, devices) in countries {
            match country.as_deref() {
                Some(c) if is_member_state(c) => {
                    member_states.insert(c.to_owned());
                }
                Some(c) => {
                    other.insert(c.to_owned());
                }
                None => unknown += devices,
            }
        }
        Self {
            devices: total,
            firmware_versions,
            member_states: member_states.into_iter().collect(),
            other_countries: other.into_iter().collect(),
            location_unknown: unknown,
            listed,
        }
    }
}

/// The release that corrects it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CorrectiveMeasure {
    pub release: String,
    pub available_since: String,
}

/// A report's draft: what Article 14(2) asks each stage to say, from Sigil's own records.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Draft {
    pub regulation: &'static str,
    pub stage: Stage,
    pub article: &'static str,
    pub due: Option<String>,
    pub manufacturer: String,
    pub product: String,
    pub vulnerability: String,
    pub aliases: Vec<String>,
    pub summary: Option<String>,
    pub severity: String,
    pub cvss_score: Option<f64>,
    /// Why Sigil treats it as actively exploited: the KEV entry's date, or the operator's note.
    pub exploitation: String,
    pub aware_at: String,
    pub affected: Exposure,
    pub mitigations: Vec<String>,
    pub corrective_measure: Option<CorrectiveMeasure>,
}

pub const REGULATION: &str = "Regulation (EU) 2024/2847 (Cyber Resilience Act)";

impl Draft {
    /// The same draft as plain text, for a person to read and paste into the single reporting
    /// platform's form.
    pub fn to_text(&self) -> String {
        let mut t = String::new();
        let title = match self.stage {
            Stage::EarlyWarning => "Early warning of an actively exploited vulnerability",
            Stage::Notification => "Vulnerability notification",
            Stage::FinalReport => "Final report",
        };
        let _ = writeln!(t, "{title} ({}, {})", REGULATION, self.article);
        let _ = writeln!(t, "DRAFT: review before submitting.\n");
        let _ = writeln!(
            t,
            "Due:            {}",
            self.due
                .as_deref()
                .unwrap_or("when a corrective measure is available, plus 14 days")
        );
        let _ = writeln!(t, "Manufacturer:   {}", self.manufacturer);
        let _ = writeln!(t, "Product:        {}", self.product);
        let _ = writeln!(t, "Vulnerability:  {}", self.vulnerability);
        if !self.aliases.is_empty() {
            let _ = writeln!(t, "Also known as:  {}", self.aliases.join(", "));
        }
        if let Some(s) = &self.summary {
            let _ = writeln!(t, "Summary:        {s}");
        }
        let score = self
            .cvss_score
            .map(|s| format!(" (CVSS {s:.1})"))
            .unwrap_or_default();
        let _ = writeln!(t, "Severity:       {}{score}", self.severity);
        let _ = writeln!(t, "Exploitation:   {}", self.exploitation);
        let _ = writeln!(t, "Aware since:    {}", self.aware_at);
        let a = &self.affected;
        let _ = writeln!(
            t,
            "\nAffected devices: {} (firmware {})",
            a.devices,
            a.firmware_versions.join(", ")
        );
        let states = if a.member_states.is_empty() {
            "none known".to_owned()
        } else {
            a.member_states.join(", ")
        };
        let _ = writeln!(
            t,
            "Member states where the product is made available: {states}"
        );
        if !a.other_countries.is_empty() {
            let _ = writeln!(t, "Other countries: {}", a.other_countries.join(", "));
        }
        if a.location_unknown > 0 {
            let _ = writeln!(
                t,
                "Devices at a site with no registered country: {}",
                a.location_unknown
            );
        }
        for d in &a.listed {
            let site = d.site.as_deref().unwrap_or("-");
            let country = d.country.as_deref().unwrap_or("-");
            let _ = writeln!(
                t,
                "  {}  serial {}  firmware {}  site {site} ({country})",
                d.id, d.serial_number, d.firmware_version
            );
        }
        if (a.listed.len() as u64) < a.devices {
            let _ = writeln!(t, "  ... and {} more", a.devices - a.listed.len() as u64);
        }
        if self.stage != Stage::EarlyWarning {
            let _ = writeln!(t, "\nCorrective and mitigating measures:");
            for m in &self.mitigations {
                let _ = writeln!(t, "  - {m}");
            }
        }
        match &self.corrective_measure {
            Some(c) => {
                let _ = writeln!(
                    t,
                    "\nSecurity update: release {} (available since {})",
                    c.release, c.available_since
                );
            }
            None => {
                let _ = writeln!(t, "\nSecurity update: none available yet");
            }
        }
        t
    }
}
