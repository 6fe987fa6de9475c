//! Recovering a lost administrator: the explicit, audited replacement for "restart and get a
//! new admin token". It needs what only the host's administrator has (the data directory, and
//! the server stopped, since it takes the same single-process lock), revokes any bootstrap
//! token still live, and leaves an `admin.recovered` entry in the audit log.

use sigil_audit::{Actor, AuditEvent, Outcome};
use sigil_store::Store;

use crate::datadir::DataDir;
use crate::{ADMIN_TOKEN_NAME, AuthorityError, exclusive, generate_token, token_hash};

/// Mint a new bootstrap admin token into `DIR/admin.token` (mode 0600), with the server stopped.
/// `reason` goes into the audit log.
pub async fn recover_admin_token(
    dir: &DataDir,
    database_url: Option<&str>,
    reason: &str,
    now: time::OffsetDateTime,
) -> Result<(), AuthorityError> {
    if !dir.is_initialised() {
        return Err(AuthorityError::Config(format!(
            "{} is not an initialised Sigil data directory",
            dir.root().display()
        )));
    }
    let reason = reason.trim();
    if reason.is_empty() || reason.len() > 1024 {
        return Err(AuthorityError::Config(
            "--reason: say why the administrator is recovered (1 to 1024 bytes)".into(),
        ));
    }
    let url = database_url.map_or_else(|| dir.default_database_url(), str::to_owned);
    let _lock = exclusive::lock(dir, &url).await?;
    let store = Store::open(&url).await?;
    let actor = Actor::system("sigil-admin-recover");
    let token = generate_token()?;
    let id = store
        .replace_api_token(&actor, ADMIN_TOKEN_NAME, "admin", &token_hash(&token), now)
        .await?;
    store
        .append_audit(vec![AuditEvent::new(
            now,
            actor,
            "admin.recovered",
            format!("token:{id}"),
            Outcome::Success,
            serde_json::json!({
                "reason": reason,
                "token_name": ADMIN_TOKEN_NAME,
                "host_user": std::env::var("USER").unwrap_or_default(),
            }),
        )])
        .await?;
    dir.write_admin_token(&token)?;
    store.close().await;
    Ok(())
}
