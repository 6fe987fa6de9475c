//! Operator accounts, their login state (failures, lockout, the last TOTP step used) and their
//! sessions. Secrets are stored only as hashes (passwords: Argon2id; session cookies: SHA-256)
//! or encrypted (TOTP seeds, by the caller); this module never sees a plaintext secret.

use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;
use time::OffsetDateTime;

use sigil_audit::{Actor, AuditEvent, Outcome};

use crate::rows::ts;
use crate::{Store, StoreError, audit};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRecord {
    pub id: String,
    pub username: String,
    pub role: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Encrypted TOTP seed, when the account has a second factor.
    pub totp_secret: Option<Vec<u8>>,
    pub totp_last_step: Option<i64>,
    pub failed_logins: i64,
    pub locked_until: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub disabled_at: Option<OffsetDateTime>,
}

/// A new account, its secrets already hashed or encrypted.
pub struct NewOperator<'a> {
    pub username: &'a str,
    pub role: &'a str,
    pub password_hash: &'a str,
    pub totp_secret: Option<&'a [u8]>,
}

/// A live or past session, with its operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub operator_id: String,
    pub username: String,
    pub role: String,
    pub mfa: bool,
    pub expires_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
    pub operator_disabled: bool,
}

/// A session to open at login.
pub struct NewSession<'a> {
    pub id_hash: &'a str,
    pub mfa: bool,
    pub source_ip: &'a str,
    pub expires_at: OffsetDateTime,
}

/// What a failed login did to the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureOutcome {
    pub failed_logins: i64,
    /// Set when this failure locked the account.
    pub locked_until: Option<OffsetDateTime>,
}

const COLUMNS: &str = "id, username, role, password_hash, totp_secret, totp_last_step, failed_logins, locked_until, created_at, disabled_at";

fn operator_from_row(row: &AnyRow) -> Result<OperatorRecord, StoreError> {
    Ok(OperatorRecord {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        role: row.try_get("role")?,
        password_hash: row.try_get("password_hash")?,
        totp_secret: row.try_get("totp_secret")?,
        totp_last_step: row.try_get("totp_last_step")?,
        failed_logins: row.try_get("failed_logins")?,
        locked_until: row
            .try_get::<Option<i64>, _>("locked_until")?
            .map(ts)
            .transpose()?,
        created_at: ts(row.try_get("created_at")?)?,
        disabled_at: row
            .try_get::<Option<i64>, _>("disabled_at")?
            .map(ts)
            .transpose()?,
    })
}

impl Store {
    /// Create an account (usernames are unique) and log it.
    pub async fn create_operator(
        &self,
        actor: &Actor,
        new: &NewOperator<'_>,
        now: OffsetDateTime,
    ) -> Result<OperatorRecord, StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query("SELECT 1 FROM operators WHERE username = $1")
            .bind(new.username)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if exists {
            return Err(StoreError::Conflict(format!(
                "an operator called `{}` already exists",
                new.username
            )));
        }
        sqlx::query(
            "INSERT INTO operators (id, username, role, password_hash, totp_secret, totp_last_step, failed_logins, locked_until, created_at, disabled_at) \
             VALUES ($1, $2, $3, $4, $5, NULL, 0, NULL, $6, NULL)",
        )
        .bind(&id)
        .bind(new.username)
        .bind(new.role)
        .bind(new.password_hash)
        .bind(new.totp_secret.map(<[u8]>::to_vec))
        .bind(now.unix_timestamp())
        .execute(&mut *tx)
        .await?;
        audit::append(
            &mut tx,
            vec![AuditEvent::new(
                now,
                actor.clone(),
                "operator.created",
                format!("operator:{id}"),
                Outcome::Success,
                json!({"username": new.username, "role": new.role, "totp": new.totp_secret.is_some()}),
            )],
        )
        .await?;
        tx.commit().await?;
        self.get_operator(&id).await
    }

    pub async fn get_operator(&self, id: &str) -> Result<OperatorRecord, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM operators WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                kind: "operator",
                id: id.to_owned(),
            })?;
        operator_from_row(&row)
    }

    pub async fn find_operator(
        &self,
        username: &str,
    ) -> Result<Option<OperatorRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM operators WHERE username = $1");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(username)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| operator_from_row(&r))
            .transpose()
    }

    pub async fn list_operators(&self) -> Result<Vec<OperatorRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM operators ORDER BY username");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(operator_from_row)
            .collect()
    }

    /// Count a failed login (and log it, with `reason`); the `lock_after`-th consecutive
    /// failure locks the account until `now + lock_for`.
    pub async fn record_login_failure(
        &self,
        operator: &OperatorRecord,
        reason: &str,
        source_ip: &str,
        lock_after: i64,
        lock_for: time::Duration,
        now: OffsetDateTime,
    ) -> Result<FailureOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE operators SET failed_logins = failed_logins + 1 WHERE id = $1 RETURNING failed_logins",
        )
        .bind(&operator.id)
        .fetch_one(&mut *tx)
        .await?;
        let failed_logins: i64 = row.try_get("failed_logins")?;
        let locked_until = (failed_logins >= lock_after).then(|| now + lock_for);
        if let Some(until) = locked_until {
            sqlx::query("UPDATE operators SET locked_until = $1, failed_logins = 0 WHERE id = $2")
                .bind(until.unix_timestamp())
                .bind(&operator.id)
                .execute(&mut *tx)
                .await?;
        }
        let mut events = vec![AuditEvent::new(
            now,
            Actor::operator(&operator.id),
            "auth.login",
            format!("operator:{}", operator.id),
            Outcome::Denied,
            json!({"username": operator.username, "reason": reason, "source_ip": source_ip, "consecutive_failures": failed_logins}),
        )];
        if let Some(until) = locked_until {
            events.push(AuditEvent::new(
                now,
                Actor::system("sigil"),
                "operator.locked",
                format!("operator:{}", operator.id),
                Outcome::Success,
                json!({"username": operator.username, "until": until.unix_timestamp(), "after_failures": failed_logins}),
            ));
        }
        audit::append(&mut tx, events).await?;
        tx.commit().await?;
        Ok(FailureOutcome {
            failed_logins,
            locked_until,
        })
    }

    /// A successful login: reset the failure count, record the TOTP step used (refusing a step
    /// at or before the last one: a code is good once, even under concurrent logins) and open
    /// the session, all in one transaction. `Conflict` when the step was already used.
    pub async fn login_succeeded(
        &self,
        operator: &OperatorRecord,
        totp_step: Option<i64>,
        session: &NewSession<'_>,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let updated = match totp_step {
            Some(step) => sqlx::query(
                "UPDATE operators SET failed_logins = 0, locked_until = NULL, totp_last_step = $1 \
                 WHERE id = $2 AND (totp_last_step IS NULL OR totp_last_step < $1)",
            )
            .bind(step)
            .bind(&operator.id),
            None => sqlx::query(
                "UPDATE operators SET failed_logins = 0, locked_until = NULL WHERE id = $1",
            )
            .bind(&operator.id),
        }
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::Conflict(
                "this TOTP code has already been used".into(),
            ));
        }
        sqlx::query(
            "INSERT INTO operator_sessions (id_hash, operator_id, mfa, source_ip, created_at, expires_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL)",
        )
        .bind(session.id_hash)
        .bind(&operator.id)
        .bind(i64::from(session.mfa))
        .bind(session.source_ip)
        .bind(now.unix_timestamp())
        .bind(session.expires_at.unix_timestamp())
        .execute(&mut *tx)
        .await?;
        audit::append(
            &mut tx,
            vec![AuditEvent::new(
                now,
                Actor::operator(&operator.id),
                "auth.login",
                format!("operator:{}", operator.id),
                Outcome::Success,
                json!({"username": operator.username, "mfa": session.mfa, "source_ip": session.source_ip,
                       "session_expires_at": session.expires_at.unix_timestamp()}),
            )],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn find_session(&self, id_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT s.operator_id, s.mfa, s.expires_at, s.revoked_at, o.username, o.role, o.disabled_at \
             FROM operator_sessions s JOIN operators o ON o.id = s.operator_id WHERE s.id_hash = $1",
        )
        .bind(id_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| -> Result<SessionRecord, StoreError> {
            Ok(SessionRecord {
                operator_id: r.try_get("operator_id")?,
                username: r.try_get("username")?,
                role: r.try_get("role")?,
                mfa: r.try_get::<i64, _>("mfa")? != 0,
                expires_at: ts(r.try_get("expires_at")?)?,
                revoked_at: r
                    .try_get::<Option<i64>, _>("revoked_at")?
                    .map(ts)
                    .transpose()?,
                operator_disabled: r.try_get::<Option<i64>, _>("disabled_at")?.is_some(),
            })
        })
        .transpose()
    }

    /// End a session (logout) and log it.
    pub async fn revoke_session(
        &self,
        id_hash: &str,
        operator_id: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE operator_sessions SET revoked_at = $1 WHERE id_hash = $2 AND revoked_at IS NULL",
        )
        .bind(now.unix_timestamp())
        .bind(id_hash)
        .execute(&mut *tx)
        .await?;
        audit::append(
            &mut tx,
            vec![AuditEvent::new(
                now,
                Actor::operator(operator_id),
                "auth.logout",
                format!("operator:{operator_id}"),
                Outcome::Success,
                json!({}),
            )],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
