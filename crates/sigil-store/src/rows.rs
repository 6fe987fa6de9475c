//! Row <-> domain conversions. Stored values are re-parsed through the domain types, so a
//! tampered or corrupted row surfaces as `StoreError::Corrupt` rather than as a wrong answer.

use std::str::FromStr;

use sqlx::Row;
use sqlx::any::AnyRow;
use time::{Date, OffsetDateTime};

use sigil_domain::{
    Device, DeviceId, Fingerprint, LifecycleState, Product, ProductId, RevocationReason, Serial,
    Tag,
};

use crate::StoreError;

pub(crate) const DEVICE_COLUMNS: &str = "d.id, d.product_id, d.serial_number, d.hardware_id, d.owner, d.site, \
     d.firmware_version, d.state, d.created_at, d.updated_at";

pub(crate) const CERT_COLUMNS: &str = "serial, device_id, profile, not_before, not_after, sha256, spki_sha256, status, der, issued_at, revoked_at, revocation_reason";

/// A certificate as the signer produced it, before it is recorded.
#[derive(Debug, Clone)]
pub struct NewCertificate {
    pub serial: Serial,
    pub profile: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub sha256: Fingerprint,
    pub spki_sha256: Fingerprint,
    pub der: Vec<u8>,
    /// The certified key's algorithm as the CA names it (`ECDSA P-256`, `RSA-3072`, ...).
    pub key_algorithm: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CertificateStatus {
    Active,
    Superseded,
    Revoked,
}

impl CertificateStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Superseded => "superseded",
            Self::Revoked => "revoked",
        }
    }
}

impl FromStr for CertificateStatus {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(Self::Active),
            "superseded" => Ok(Self::Superseded),
            "revoked" => Ok(Self::Revoked),
            other => Err(StoreError::Corrupt(format!(
                "unknown certificate status `{other}`"
            ))),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CertificateRecord {
    pub serial: Serial,
    pub device_id: DeviceId,
    pub profile: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub sha256: Fingerprint,
    pub spki_sha256: Fingerprint,
    pub status: CertificateStatus,
    pub issued_at: OffsetDateTime,
    pub der: Vec<u8>,
    pub revoked_at: Option<OffsetDateTime>,
    pub revocation_reason: Option<RevocationReason>,
}

#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    pub role: String,
    pub token_hash: Fingerprint,
    pub expires_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    /// When its use was last recorded in the audit log.
    pub last_used_at: Option<OffsetDateTime>,
    pub scopes: Vec<String>,
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// A stored RFC 5280 reason code.
pub(crate) fn revocation_reason(code: i64) -> Result<RevocationReason, StoreError> {
    u8::try_from(code)
        .ok()
        .and_then(RevocationReason::from_code)
        .ok_or_else(|| corrupt(format!("revocation reason code {code}")))
}

pub(crate) fn ts(secs: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp(secs).map_err(corrupt)
}

fn parse_date(s: &str) -> Result<Date, StoreError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s, &format).map_err(corrupt)
}

pub(crate) fn product_from_row(row: &AnyRow) -> Result<Product, StoreError> {
    Ok(Product {
        id: ProductId::from_str(&row.try_get::<String, _>("id")?).map_err(corrupt)?,
        name: row.try_get("name")?,
        manufacturer: row.try_get("manufacturer")?,
        support_end: parse_date(&row.try_get::<String, _>("support_end")?)?,
        created_at: ts(row.try_get("created_at")?)?,
    })
}

pub(crate) fn device_from_row(row: &AnyRow) -> Result<Device, StoreError> {
    let tags: Option<String> = row.try_get("tags")?;
    let mut tags = match tags {
        Some(joined) if !joined.is_empty() => joined
            .split(',')
            .map(Tag::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(corrupt)?,
        _ => Vec::new(),
    };
    tags.sort();
    Ok(Device {
        id: DeviceId::from_str(&row.try_get::<String, _>("id")?).map_err(corrupt)?,
        product_id: ProductId::from_str(&row.try_get::<String, _>("product_id")?)
            .map_err(corrupt)?,
        serial_number: row.try_get("serial_number")?,
        hardware_id: row.try_get("hardware_id")?,
        owner: row.try_get("owner")?,
        site: row.try_get("site")?,
        tags,
        firmware_version: row.try_get("firmware_version")?,
        state: LifecycleState::from_str(&row.try_get::<String, _>("state")?).map_err(corrupt)?,
        created_at: ts(row.try_get("created_at")?)?,
        updated_at: ts(row.try_get("updated_at")?)?,
    })
}

pub(crate) fn certificate_from_row(row: &AnyRow) -> Result<CertificateRecord, StoreError> {
    Ok(CertificateRecord {
        serial: Serial::from_str(&row.try_get::<String, _>("serial")?).map_err(corrupt)?,
        device_id: DeviceId::from_str(&row.try_get::<String, _>("device_id")?).map_err(corrupt)?,
        profile: row.try_get("profile")?,
        not_before: ts(row.try_get("not_before")?)?,
        not_after: ts(row.try_get("not_after")?)?,
        sha256: Fingerprint::from_str(&row.try_get::<String, _>("sha256")?).map_err(corrupt)?,
        spki_sha256: Fingerprint::from_str(&row.try_get::<String, _>("spki_sha256")?)
            .map_err(corrupt)?,
        status: row.try_get::<String, _>("status")?.parse()?,
        issued_at: ts(row.try_get("issued_at")?)?,
        der: row.try_get("der")?,
        revoked_at: row
            .try_get::<Option<i64>, _>("revoked_at")?
            .map(ts)
            .transpose()?,
        revocation_reason: row
            .try_get::<Option<i64>, _>("revocation_reason")?
            .map(revocation_reason)
            .transpose()?,
    })
}

pub(crate) fn token_from_row(row: &AnyRow) -> Result<TokenRecord, StoreError> {
    Ok(TokenRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        role: row.try_get("role")?,
        token_hash: Fingerprint::from_str(&row.try_get::<String, _>("token_hash")?)
            .map_err(corrupt)?,
        expires_at: row
            .try_get::<Option<i64>, _>("expires_at")?
            .map(ts)
            .transpose()?,
        revoked_at: row
            .try_get::<Option<i64>, _>("revoked_at")?
            .map(ts)
            .transpose()?,
        last_used_at: row
            .try_get::<Option<i64>, _>("last_used_at")?
            .map(ts)
            .transpose()?,
        scopes: row
            .try_get::<String, _>("scopes")?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}
