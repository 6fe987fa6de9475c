//! One-time enrolment tokens for EST (RFC 7030 3.2.3 HTTP Basic): bound to one device,
//! expiring, single use, stored as the SHA-256 of the secret.

use serde_json::json;
use sqlx::Row;
use time::OffsetDateTime;

use sigil_audit::{Actor, AuditEvent, Outcome};
use sigil_domain::{DeviceId, Fingerprint};

use crate::{Store, StoreError, audit};

/// Why a presented token was refused. Deliberately coarse towards the client (all are "not
/// authorised"); precise in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error("no such enrolment token")]
    Unknown,
    #[error("the enrolment token is for another device")]
    OtherDevice,
    #[error("the enrolment token has already been used")]
    Used,
    #[error("the enrolment token has expired")]
    Expired,
}

impl Store {
    /// Store a new token for `device` (which must exist). Returns its id.
    pub async fn create_enrollment_token(
        &self,
        actor: &Actor,
        device: DeviceId,
        token_hash: &Fingerprint,
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<String, StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.begin_write().await?;
        self.locked_state(&mut tx, device).await?;
        sqlx::query(
            "INSERT INTO enrollment_tokens (id, device_id, token_hash, created_at, expires_at, used_at) VALUES ($1, $2, $3, $4, $5, NULL)",
        )
        .bind(&id)
        .bind(device.to_string())
        .bind(token_hash.as_str())
        .bind(now.unix_timestamp())
        .bind(expires_at.unix_timestamp())
        .execute(&mut *tx)
        .await?;
        audit::append(
            &mut tx,
            vec![AuditEvent::new(
                now,
                actor.clone(),
                "enrollment_token.created",
                format!("device:{device}"),
                Outcome::Success,
                json!({"token": id, "expires_at": expires_at.unix_timestamp()}),
            )],
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Mark the token with `token_hash` used by `device`, if it is that device's, unused and
    /// unexpired. The conditional update makes concurrent presentations race safely: one wins.
    pub async fn consume_enrollment_token(
        &self,
        device: DeviceId,
        token_hash: &Fingerprint,
        now: OffsetDateTime,
    ) -> Result<Result<String, TokenRefusal>, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT id, device_id, token_hash, expires_at, used_at FROM enrollment_tokens WHERE token_hash = $1",
        )
        .bind(token_hash.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(Err(TokenRefusal::Unknown));
        };
        // The lookup was by hash; compare again in constant time, as for API tokens.
        let stored: String = row.try_get("token_hash")?;
        if aws_lc_rs::constant_time::verify_slices_are_equal(
            stored.as_bytes(),
            token_hash.as_str().as_bytes(),
        )
        .is_err()
        {
            return Ok(Err(TokenRefusal::Unknown));
        }
        let id: String = row.try_get("id")?;
        if row.try_get::<String, _>("device_id")? != device.to_string() {
            return Ok(Err(TokenRefusal::OtherDevice));
        }
        if row.try_get::<Option<i64>, _>("used_at")?.is_some() {
            return Ok(Err(TokenRefusal::Used));
        }
        if row.try_get::<i64, _>("expires_at")? <= now.unix_timestamp() {
            return Ok(Err(TokenRefusal::Expired));
        }
        let updated = sqlx::query(
            "UPDATE enrollment_tokens SET used_at = $1 WHERE id = $2 AND used_at IS NULL",
        )
        .bind(now.unix_timestamp())
        .bind(&id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated != 1 {
            return Ok(Err(TokenRefusal::Used));
        }
        audit::append(
            &mut tx,
            vec![AuditEvent::new(
                now,
                Actor::device(&device.to_string()),
                "enrollment_token.used",
                format!("device:{device}"),
                Outcome::Success,
                json!({"token": id}),
            )],
        )
        .await?;
        tx.commit().await?;
        Ok(Ok(id))
    }

    /// Give a consumed token back when the enrolment it authorised failed (nothing was issued).
    pub async fn release_enrollment_token(
        &self,
        device: DeviceId,
        id: &str,
        why: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE enrollment_tokens SET used_at = NULL WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        audit::append(
            &mut tx,
            vec![AuditEvent::new(
                now,
                Actor::system("sigil"),
                "enrollment_token.released",
                format!("device:{device}"),
                Outcome::Success,
                json!({"token": id, "reason": why}),
            )],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
