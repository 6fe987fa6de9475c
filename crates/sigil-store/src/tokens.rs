//! API tokens: minted, listed, revoked, replaced, found by hash, their use recorded.

use serde_json::json;
use sqlx::Row;
use time::OffsetDateTime;

use sigil_audit::{Actor, AuditEvent, Outcome};
use sigil_domain::Fingerprint;

use crate::{Store, StoreError, TokenRecord, audit, rows};

impl Store {
    /// Store a token by the SHA-256 of its secret. Returns the token id.
    pub async fn insert_api_token(
        &self,
        actor: &Actor,
        token: &NewApiToken<'_>,
        token_hash: &Fingerprint,
        now: OffsetDateTime,
    ) -> Result<String, StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let scopes = token.scopes.join(",");
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO api_tokens (id, name, role, token_hash, created_at, expires_at, revoked_at, scopes) VALUES ($1, $2, $3, $4, $5, $6, NULL, $7)",
        )
        .bind(&id)
        .bind(token.name)
        .bind(token.role)
        .bind(token_hash.as_str())
        .bind(now.unix_timestamp())
        .bind(token.expires_at.map(|t| t.unix_timestamp()))
        .bind(&scopes)
        .execute(&mut *tx)
        .await?;
        let expires = token.expires_at.map(|t| t.unix_timestamp());
        let event = token_created(actor, &id, token, now, expires, 0);
        audit::append(&mut tx, vec![event]).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Every token (secrets are not stored), newest first.
    pub async fn list_api_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        sqlx::query("SELECT id, name, role, token_hash, expires_at, revoked_at, last_used_at, scopes FROM api_tokens ORDER BY id DESC")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(rows::token_from_row)
            .collect()
    }

    /// Revoke token `id` and log it. `NotFound` if there is none; revoking twice is a no-op.
    pub async fn revoke_api_token(
        &self,
        actor: &Actor,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query("SELECT revoked_at FROM api_tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                kind: "API token",
                id: id.to_owned(),
            })?;
        if exists.try_get::<Option<i64>, _>("revoked_at")?.is_some() {
            return Ok(());
        }
        sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2")
            .bind(now.unix_timestamp())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        audit::append(
            &mut tx,
            vec![AuditEvent::new(
                now,
                actor.clone(),
                "token.revoked",
                format!("token:{id}"),
                Outcome::Success,
                json!({}),
            )],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Revoke every live token called `name` and store a new one, atomically.
    pub async fn replace_api_token(
        &self,
        actor: &Actor,
        name: &str,
        role: &str,
        token_hash: &Fingerprint,
        now: OffsetDateTime,
    ) -> Result<String, StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.begin_write().await?;
        let revoked = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL",
        )
        .bind(now.unix_timestamp())
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(
            "INSERT INTO api_tokens (id, name, role, token_hash, created_at, expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, NULL, NULL)",
        )
        .bind(&id)
        .bind(name)
        .bind(role)
        .bind(token_hash.as_str())
        .bind(now.unix_timestamp())
        .execute(&mut *tx)
        .await?;
        audit::append(
            &mut tx,
            vec![token_created(
                actor,
                &id,
                &NewApiToken {
                    name,
                    role,
                    scopes: &["*".to_owned()],
                    expires_at: None,
                },
                now,
                None,
                revoked,
            )],
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Whether a token of this name was ever created, revoked or not.
    pub async fn token_name_used(&self, name: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query("SELECT 1 FROM api_tokens WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// The token whose secret hashes to `token_hash`, if any (revoked or expired ones included:
    /// the caller decides and reports why it refuses).
    pub async fn find_api_token(
        &self,
        token_hash: &Fingerprint,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query("SELECT id, name, role, token_hash, expires_at, revoked_at, last_used_at, scopes FROM api_tokens WHERE token_hash = $1")
            .bind(token_hash.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| rows::token_from_row(&r)).transpose()
    }

    /// Record that token `id` was used, unless its use was recorded within `interval` (another
    /// request may have just done so: the conditional update decides, once). Returns whether an
    /// entry was written.
    pub async fn record_token_use(
        &self,
        id: &str,
        now: OffsetDateTime,
        interval: time::Duration,
        details: serde_json::Value,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE api_tokens SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at <= $3)",
        )
        .bind(now.unix_timestamp())
        .bind(id)
        .bind((now - interval).unix_timestamp())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Ok(false);
        }
        let event = AuditEvent::new(
            now,
            Actor::operator(id),
            "token.used",
            format!("token:{id}"),
            Outcome::Success,
            details,
        );
        audit::append(&mut tx, vec![event]).await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// A token to store.
pub struct NewApiToken<'a> {
    pub name: &'a str,
    pub role: &'a str,
    /// What it may be used for (see the `token-scope` policy); `*` for everything its role allows.
    pub scopes: &'a [String],
    pub expires_at: Option<OffsetDateTime>,
}

/// The entry for a new API token. Never the secret, nor its hash.
fn token_created(
    actor: &Actor,
    id: &str,
    token: &NewApiToken<'_>,
    now: OffsetDateTime,
    expires_at: Option<i64>,
    replaced: u64,
) -> AuditEvent {
    AuditEvent::new(
        now,
        actor.clone(),
        "token.created",
        format!("token:{id}"),
        Outcome::Success,
        json!({"name": token.name, "role": token.role, "scopes": token.scopes, "expires_at": expires_at, "revoked_tokens_of_same_name": replaced}),
    )
}
