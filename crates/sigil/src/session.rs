//! `sigil login` and `sigil logout`: a person's session for the CLI, so that an operator keeps
//! no long-lived token on a laptop. The login is the API's (password and TOTP code); the
//! session cookie is kept in the user's configuration directory (mode 0600, one file per
//! server) until it ends: at logout, or after the API's session lifetime (eight hours).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::cli::ClientArgs;
use crate::client::ApiClient;

#[derive(Debug, Args)]
pub struct LoginArgs {
    #[arg(long)]
    pub username: String,
    /// The current code of the account's authenticator (for roles that change trust). The
    /// password is read from SIGIL_OPERATOR_PASSWORD or standard input, never the command line.
    #[arg(long, env = "SIGIL_TOTP", hide_env_values = true)]
    pub totp: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// A session as kept on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredSession {
    pub server: String,
    pub username: String,
    /// The session cookie's value (a secret: the file is the user's alone).
    pub cookie: String,
    /// Unix time after which the server no longer honours it.
    pub expires_at: i64,
}

/// Where sessions are kept: SIGIL_CONFIG_DIR, else $XDG_CONFIG_HOME/sigil, else
/// ~/.config/sigil.
fn config_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("SIGIL_CONFIG_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(dir).join("sigil"));
    }
    let home =
        std::env::var_os("HOME").context("no HOME to keep the session in: set SIGIL_CONFIG_DIR")?;
    Ok(PathBuf::from(home).join(".config/sigil"))
}

/// One file per server, named by a hash of its URL.
fn session_file(server: &str) -> Result<PathBuf> {
    let name = hex::encode(&sigil_ca::sha256(server.as_bytes())[..12]);
    Ok(config_dir()?.join("sessions").join(format!("{name}.json")))
}

/// The live session for `server`, if there is one.
pub fn load(server: &str) -> Option<StoredSession> {
    let path = session_file(server).ok()?;
    let text = std::fs::read_to_string(path).ok()?;
    let session: StoredSession = serde_json::from_str(&text).ok()?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    (session.server == server && session.expires_at > now).then_some(session)
}

fn save(session: &StoredSession) -> Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let path = session_file(&session.server)?;
    let dir = path.parent().context("session directory")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(serde_json::to_string(session)?.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn read_password() -> Result<String> {
    if let Ok(p) = std::env::var("SIGIL_OPERATOR_PASSWORD") {
        return Ok(p);
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

pub async fn login(args: LoginArgs) -> Result<()> {
    let password = read_password()?;
    let api = ApiClient::anonymous(&args.client)?;
    let body = json!({"username": args.username, "password": password, "totp": args.totp});
    let (cookie, session) = api.login(&body).await?;
    let expires_at = session["expires_at"]
        .as_str()
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .map_or_else(
            || time::OffsetDateTime::now_utc().unix_timestamp() + 8 * 3600,
            time::OffsetDateTime::unix_timestamp,
        );
    let path = save(&StoredSession {
        server: api.base().to_owned(),
        username: args.username.clone(),
        cookie,
        expires_at,
    })?;
    let mfa = if session["mfa"] == true {
        ", with a second factor"
    } else {
        ""
    };
    eprintln!(
        "logged in to {} as {} ({}{mfa}) until {}; session kept in {}",
        api.base(),
        args.username,
        session["role"].as_str().unwrap_or("?"),
        session["expires_at"].as_str().unwrap_or("?"),
        path.display()
    );
    Ok(())
}

pub async fn logout(client: ClientArgs) -> Result<()> {
    let api = ApiClient::from_args(&client)?;
    let path = session_file(api.base())?;
    if !api.uses_session() {
        bail!("no session for {} to end (sigil login first)", api.base());
    }
    let ended = api.post("/api/v1/auth/logout", &json!({})).await;
    // Forget it whatever the server said: an ended or expired session is useless anyway.
    let _ = std::fs::remove_file(&path);
    ended?;
    eprintln!("logged out of {}", api.base());
    Ok(())
}
