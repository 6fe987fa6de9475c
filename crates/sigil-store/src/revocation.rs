//! Revoking certificates, and the CRLs that publish it. A revocation and its audit entries
//! commit together; the CRL is re-signed afterwards by the server (the store does not sign).

use serde_json::json;
use sqlx::Row;
use time::OffsetDateTime;

use sigil_audit::{Actor, AuditEvent, Outcome};
use sigil_domain::{DeviceId, RevocationReason, Serial};

use crate::rows::{revocation_reason, ts};
use crate::{Store, StoreError, WriteTx, audit, batch};

/// A revoked certificate that has not expired yet: what a CRL must list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedCertificate {
    pub serial: Serial,
    pub revoked_at: OffsetDateTime,
    pub reason: RevocationReason,
}

/// A signed CRL as stored.
#[derive(Debug, Clone)]
pub struct StoredCrl {
    pub number: u64,
    pub this_update: OffsetDateTime,
    pub next_update: OffsetDateTime,
    pub der: Vec<u8>,
}

/// Revoke every unrevoked, unexpired certificate of `device` within `tx`, with one
/// `certificate.revoked` entry each. Returns the serials revoked (possibly none).
pub(crate) async fn revoke_in_tx(
    tx: &mut WriteTx,
    actor: &Actor,
    device: DeviceId,
    reason: RevocationReason,
    now: OffsetDateTime,
) -> Result<Vec<Serial>, StoreError> {
    let rows = sqlx::query(
        "SELECT serial FROM certificates WHERE device_id = $1 AND revoked_at IS NULL AND not_after > $2 ORDER BY serial",
    )
    .bind(device.to_string())
    .bind(now.unix_timestamp())
    .fetch_all(&mut **tx)
    .await?;
    let serials = rows
        .iter()
        .map(|r| {
            r.try_get::<String, _>("serial")?
                .parse::<Serial>()
                .map_err(|e| StoreError::Corrupt(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let revoked: Vec<(Serial, DeviceId)> = serials.iter().map(|s| (s.clone(), device)).collect();
    mark_revoked(tx, actor, &revoked, reason, now).await?;
    Ok(serials)
}

/// Record `certificates` as revoked now for `reason`, with one `certificate.revoked` entry each.
async fn mark_revoked(
    tx: &mut WriteTx,
    actor: &Actor,
    certificates: &[(Serial, DeviceId)],
    reason: RevocationReason,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    if certificates.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "UPDATE certificates SET status = 'revoked', revoked_at = $1, revocation_reason = $2 WHERE serial IN ({})",
        batch::placeholders_from(3, certificates.len())
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now.unix_timestamp())
        .bind(i64::from(reason.code()));
    for (s, _) in certificates {
        query = query.bind(s.as_str().to_owned());
    }
    query.execute(&mut **tx).await?;
    let events = certificates
        .iter()
        .map(|(s, device)| {
            AuditEvent::new(
                now,
                actor.clone(),
                "certificate.revoked",
                format!("certificate:{}", s.as_str()),
                Outcome::Success,
                json!({"device": device.to_string(), "reason": reason.as_str(), "reason_code": reason.code()}),
            )
        })
        .collect();
    audit::append(tx, events).await?;
    Ok(())
}

/// Most superseded certificates revoked in one sweep (the rest wait for the next).
const SUPERSEDED_SWEEP_LIMIT: i64 = 500;

pub(crate) fn hex_sha256(data: &[u8]) -> String {
    sigil_domain::Fingerprint::from_digest(&sha256(data)).to_string()
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

impl Store {
    /// Revoke every certificate of `device` that is neither revoked nor expired. Refused
    /// (changing nothing) when there is none.
    pub async fn revoke_device_certificates(
        &self,
        actor: &Actor,
        device: DeviceId,
        reason: RevocationReason,
        now: OffsetDateTime,
    ) -> Result<Vec<Serial>, StoreError> {
        let mut tx = self.begin_write().await?;
        // Lock the device row (PostgreSQL) so that a concurrent issuance cannot slip between.
        self.locked_state(&mut tx, device).await?;
        let serials = revoke_in_tx(&mut tx, actor, device, reason, now).await?;
        if serials.is_empty() {
            return Err(StoreError::Conflict(format!(
                "device {device} has no certificate that is valid and unrevoked"
            )));
        }
        tx.commit().await?;
        Ok(serials)
    }

    /// Revoke (reason superseded) every unexpired certificate that a newer certificate of the
    /// same device replaced at or before `replaced_before`: the end of the overlap a renewing
    /// device is given to switch to its new certificate. Returns the serials revoked.
    pub async fn revoke_superseded(
        &self,
        actor: &Actor,
        replaced_before: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Vec<Serial>, StoreError> {
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(
            "SELECT c.serial, c.device_id FROM certificates c \
             WHERE c.status = 'superseded' AND c.revoked_at IS NULL AND c.not_after > $1 \
             AND EXISTS (SELECT 1 FROM certificates n WHERE n.device_id = c.device_id \
                 AND n.serial <> c.serial AND n.issued_at >= c.issued_at AND n.issued_at <= $2) \
             ORDER BY c.serial LIMIT $3",
        )
        .bind(now.unix_timestamp())
        .bind(replaced_before.unix_timestamp())
        .bind(SUPERSEDED_SWEEP_LIMIT)
        .fetch_all(&mut *tx)
        .await?;
        let certificates = rows
            .iter()
            .map(|r| {
                let serial = r
                    .try_get::<String, _>("serial")?
                    .parse::<Serial>()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let device = r
                    .try_get::<String, _>("device_id")?
                    .parse::<DeviceId>()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok((serial, device))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        mark_revoked(
            &mut tx,
            actor,
            &certificates,
            RevocationReason::Superseded,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(certificates.into_iter().map(|(s, _)| s).collect())
    }

    /// Revoked certificates that have not expired at `now` (expired ones may leave the CRL,
    /// RFC 5280 section 3.3), oldest revocation first.
    pub async fn revoked_certificates(
        &self,
        now: OffsetDateTime,
    ) -> Result<Vec<RevokedCertificate>, StoreError> {
        let rows = sqlx::query(
            "SELECT serial, revoked_at, revocation_reason FROM certificates \
             WHERE revoked_at IS NOT NULL AND not_after > $1 ORDER BY revoked_at, serial",
        )
        .bind(now.unix_timestamp())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let reason = revocation_reason(r.try_get("revocation_reason")?)?;
                Ok(RevokedCertificate {
                    serial: r
                        .try_get::<String, _>("serial")?
                        .parse()
                        .map_err(|e: sigil_domain::IdError| StoreError::Corrupt(e.to_string()))?,
                    revoked_at: ts(r.try_get("revoked_at")?)?,
                    reason,
                })
            })
            .collect()
    }

    /// Revocation status of certificate `serial`: `None` if this CA never issued it, else
    /// `Some(None)` if valid as far as revocation goes, `Some(Some(..))` if revoked. (Expiry is
    /// the relying party's check; OCSP answers about expired certificates too.)
    pub async fn certificate_revocation(
        &self,
        serial: &Serial,
    ) -> Result<Option<Option<RevokedCertificate>>, StoreError> {
        let row =
            sqlx::query("SELECT revoked_at, revocation_reason FROM certificates WHERE serial = $1")
                .bind(serial.as_str())
                .fetch_optional(&self.pool)
                .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let (Some(at), Some(code)) = (
            row.try_get::<Option<i64>, _>("revoked_at")?,
            row.try_get::<Option<i64>, _>("revocation_reason")?,
        ) else {
            return Ok(Some(None));
        };
        let reason = revocation_reason(code)?;
        Ok(Some(Some(RevokedCertificate {
            serial: serial.clone(),
            revoked_at: ts(at)?,
            reason,
        })))
    }

    /// The newest CRL, if one was signed.
    pub async fn latest_crl(&self) -> Result<Option<StoredCrl>, StoreError> {
        let row = sqlx::query(
            "SELECT number, this_update, next_update, der FROM crls ORDER BY number DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(StoredCrl {
                number: u64::try_from(r.try_get::<i64, _>("number")?)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                this_update: ts(r.try_get("this_update")?)?,
                next_update: ts(r.try_get("next_update")?)?,
                der: r.try_get("der")?,
            })
        })
        .transpose()
    }

    /// Record a CRL. Its number must be new: the primary key refuses a reused one (another
    /// instance signed it first), and the caller re-signs with a fresh number.
    pub async fn insert_crl(
        &self,
        actor: &Actor,
        crl: &StoredCrl,
        revoked: usize,
    ) -> Result<(), StoreError> {
        let number = i64::try_from(crl.number).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.begin_write().await?;
        let taken = sqlx::query("SELECT 1 FROM crls WHERE number >= $1")
            .bind(number)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if taken {
            return Err(StoreError::Conflict(format!(
                "CRL number {} is not above every number used before",
                crl.number
            )));
        }
        sqlx::query(
            "INSERT INTO crls (number, this_update, next_update, der) VALUES ($1, $2, $3, $4)",
        )
        .bind(number)
        .bind(crl.this_update.unix_timestamp())
        .bind(crl.next_update.unix_timestamp())
        .bind(crl.der.clone())
        .execute(&mut *tx)
        .await?;
        let event = AuditEvent::new(
            crl.this_update,
            actor.clone(),
            "crl.published",
            format!("crl:{}", crl.number),
            Outcome::Success,
            json!({
                "number": crl.number,
                "revoked_certificates": revoked,
                "next_update": crl.next_update.unix_timestamp(),
                "sha256": hex_sha256(&crl.der),
            }),
        );
        audit::append(&mut tx, vec![event]).await?;
        tx.commit().await?;
        Ok(())
    }
}
