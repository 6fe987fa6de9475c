//! Operators' login: password (Argon2id) and TOTP code for a session cookie, with a per-address
//! limit and a per-account lockout.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use sigil_audit::{Actor, AuditEvent, Outcome};
use sigil_authority::{generate_secret, rfc3339, token_hash};
use sigil_http::PeerAddr;
use sigil_store::{NewSession, OperatorRecord, StoreError};

use super::auth::{
    LOCK_AFTER, LOCK_FOR, LOGINS_PER_MINUTE, MFA_ROLES, SESSION_COOKIE, SESSION_LIFETIME,
};
use super::{ApiError, ApiJson, AppState, Problem};

/// Login attempts per source address in the current minute: a password-guessing client is
/// slowed whatever accounts it tries (the per-account lockout covers a distributed one).
#[derive(Default)]
pub struct LoginLimiter {
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl LoginLimiter {
    /// `Ok` to go on, or the seconds to wait.
    fn check(&self, ip: IpAddr) -> Result<(), u64> {
        let now = Instant::now();
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if windows.len() > 100_000 {
            windows.retain(|_, (start, _)| now.duration_since(*start).as_secs() < 60);
        }
        let entry = windows.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0).as_secs() >= 60 {
            *entry = (now, 0);
        }
        entry.1 += 1;
        if entry.1 > LOGINS_PER_MINUTE {
            Err(60u64
                .saturating_sub(now.duration_since(entry.0).as_secs())
                .max(1))
        } else {
            Ok(())
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    /// The current 6-digit TOTP code (required for accounts with a second factor).
    #[serde(default)]
    pub totp: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SessionView {
    pub operator_id: String,
    pub username: String,
    pub role: String,
    /// Whether this session was opened with a second factor (trust changes need it).
    pub mfa: bool,
    pub expires_at: Option<String>,
}

/// A hash to verify against when the username is unknown, so that the answer takes as long
/// as for a wrong password and does not reveal which usernames exist.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password("sigil-dummy-password").unwrap_or_default())
}

pub fn hash_password(password: &str) -> Result<String, ApiError> {
    use argon2::password_hash::PasswordHasher;
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| ApiError::internal(format!("password hashing failed: {e}")))
}

fn verify_password(password: &str, phc: &str) -> bool {
    use argon2::password_hash::PasswordVerifier;
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), phc)
        .is_ok()
}

/// Argon2 takes tens of milliseconds of CPU: off the async workers.
async fn verify_password_blocking(password: String, phc: String) -> bool {
    tokio::task::spawn_blocking(move || verify_password(&password, &phc))
        .await
        .unwrap_or(false)
}

/// The TOTP for a seed (RFC 6238: HMAC-SHA1, 6 digits, 30 s steps, one step of skew).
pub fn totp(seed: Vec<u8>, username: &str) -> Result<totp_rs::Totp, ApiError> {
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(seed)
        .with_issuer(Some("Sigil"))
        .with_account_name(username)
        .build()
        .map_err(|e| ApiError::internal(format!("TOTP: {e}")))
}

/// Log in with a password (and TOTP code) and receive a session cookie.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = SessionView), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 429, body = Problem)))]
pub async fn login(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let ip = request.extensions().get::<PeerAddr>().map(|p| p.0.ip());
    if let Some(ip) = ip
        && let Err(wait) = state.login_limiter.check(ip)
    {
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many login attempts",
            format!("too many login attempts from {ip}; retry in {wait} s"),
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return Ok(response);
    }
    let ApiJson(req) = ApiJson::<LoginRequest>::from_request(request, &state).await?;
    if req.username.is_empty()
        || req.username.chars().count() > 128
        || req.password.chars().count() > 1024
    {
        return Err(ApiError::invalid(
            "username: 1 to 128 characters; password: at most 1024 characters",
        ));
    }
    let Some(operator) = state.store().find_operator(&req.username).await? else {
        verify_password_blocking(req.password, dummy_hash().to_owned()).await;
        let actor = Actor::operator("unknown");
        let subject = format!(
            "operator:{}",
            req.username.chars().take(64).collect::<String>()
        );
        let refusal = Err::<(), _>(invalid_credentials());
        state
            .audit_refusal(&actor, "auth.login", subject, refusal)
            .await?;
        return Err(invalid_credentials());
    };
    let attempt = Attempt {
        state: &state,
        operator: &operator,
        ip: ip.map_or_else(|| "unknown".to_owned(), |i| i.to_string()),
        now: state.now(),
    };
    attempt.check_account(req.password).await?;
    let step = attempt.second_factor(req.totp.as_deref()).await?;
    attempt.open_session(step).await
}

/// The one answer to every refused login, whatever the reason (no such account, wrong
/// password, disabled, locked): telling them apart would confirm which accounts exist and,
/// for a locked one, which password is right while the lock should hold. The reason is in
/// the audit log, and an administrator sees the lock on the account.
fn invalid_credentials() -> ApiError {
    ApiError::unauthenticated(format!(
        "invalid username or password (after {LOCK_AFTER} failed logins an account is locked for {} minutes)",
        LOCK_FOR.whole_minutes()
    ))
}

/// One login attempt for a known account.
struct Attempt<'a> {
    state: &'a AppState,
    operator: &'a OperatorRecord,
    ip: String,
    now: OffsetDateTime,
}

impl Attempt<'_> {
    /// The account may log in and the password is its own.
    async fn check_account(&self, password: String) -> Result<(), ApiError> {
        let operator = self.operator;
        if operator.disabled_at.is_some() {
            return Err(self.refuse("account disabled", invalid_credentials()).await);
        }
        // The password is checked even for a locked account: the answer takes as long.
        let right = verify_password_blocking(password, operator.password_hash.clone()).await;
        if let Some(until) = operator.locked_until.filter(|t| *t > self.now) {
            let reason = format!("account locked until {}", rfc3339(until));
            return Err(self.refuse(&reason, invalid_credentials()).await);
        }
        if !right {
            return Err(self.failure("wrong password", invalid_credentials()).await);
        }
        Ok(())
    }

    /// The TOTP time step the code matched (`None`: the account has no second factor, which
    /// only roles outside [`MFA_ROLES`] may lack).
    async fn second_factor(&self, code: Option<&str>) -> Result<Option<i64>, ApiError> {
        let operator = self.operator;
        let step = match (&operator.totp_secret, code) {
            (None, _) => None,
            (Some(_), None) => {
                let missing = ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "totp-required",
                    "Second factor required",
                    "this account needs a TOTP code: send `totp` with the password",
                );
                return Err(self.refuse("TOTP code missing", missing).await);
            }
            (Some(sealed), Some(code)) => {
                let seed = self
                    .state
                    .secrets()
                    .open(sealed, &operator.username)
                    .ok_or_else(|| ApiError::internal("this account's TOTP seed does not open"))?;
                let unix = u64::try_from(self.now.unix_timestamp()).unwrap_or(0);
                match totp(seed, &operator.username)?.check(code.trim(), unix) {
                    Some(step) => Some(i64::try_from(step).unwrap_or(i64::MAX)),
                    None => {
                        let e = ApiError::unauthenticated("invalid TOTP code");
                        return Err(self.failure("wrong TOTP code", e).await);
                    }
                }
            }
        };
        if operator.totp_secret.is_none() && MFA_ROLES.contains(&operator.role.as_str()) {
            // Accounts of these roles are created with a second factor; one without is
            // refused rather than let in with less.
            let refusal = ApiError::new(
                StatusCode::FORBIDDEN,
                "mfa-required",
                "Second factor required",
                format!(
                    "role `{}` requires a TOTP second factor, and this account has none",
                    operator.role
                ),
            );
            return Err(self.refuse("role requires a second factor", refusal).await);
        }
        Ok(step)
    }

    /// Record the login (spending the TOTP step: a replayed code fails here) and answer with
    /// the session cookie.
    async fn open_session(&self, step: Option<i64>) -> Result<Response, ApiError> {
        let operator = self.operator;
        let secret = generate_secret("sigil_s_")?;
        let expires_at = self.now + SESSION_LIFETIME;
        let session_hash = token_hash(&secret);
        let session = NewSession {
            id_hash: session_hash.as_str(),
            mfa: step.is_some(),
            source_ip: &self.ip,
            expires_at,
        };
        match self
            .state
            .store()
            .login_succeeded(operator, step, &session, self.now)
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                let e = ApiError::unauthenticated(
                    "this TOTP code has already been used; wait for the next one",
                );
                return Err(self.failure("replayed TOTP code", e).await);
            }
            Err(e) => return Err(e.into()),
        }
        let cookie = format!(
            "{SESSION_COOKIE}={secret}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
            SESSION_LIFETIME.whole_seconds()
        );
        let mut response = Json(SessionView {
            operator_id: operator.id.clone(),
            username: operator.username.clone(),
            role: operator.role.clone(),
            mfa: step.is_some(),
            expires_at: Some(rfc3339(expires_at)),
        })
        .into_response();
        response.headers_mut().insert(
            header::SET_COOKIE,
            HeaderValue::from_str(&cookie).map_err(|e| ApiError::internal(e.to_string()))?,
        );
        Ok(response)
    }

    /// Record a refused login that does not count towards the lockout, and return the refusal.
    async fn refuse(&self, reason: &str, refusal: ApiError) -> ApiError {
        let operator = self.operator;
        let event = AuditEvent::new(
            self.now,
            Actor::operator(&operator.id),
            "auth.login",
            format!("operator:{}", operator.id),
            Outcome::Denied,
            serde_json::json!({"username": operator.username, "reason": reason, "source_ip": self.ip}),
        );
        if let Err(e) = self.state.store().append_audit(vec![event]).await {
            tracing::error!(error = %e, "could not record a refused login");
        }
        refusal
    }

    /// Count a failure (which may lock the account) and return the refusal to send.
    async fn failure(&self, reason: &str, refusal: ApiError) -> ApiError {
        match self
            .state
            .store()
            .record_login_failure(
                self.operator,
                reason,
                &self.ip,
                LOCK_AFTER,
                LOCK_FOR,
                self.now,
            )
            .await
        {
            // Locked now or not, the caller is told the same (see `invalid_credentials`).
            Ok(_) => refusal,
            Err(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_limiter_counts_per_address() {
        let limiter = LoginLimiter::default();
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        for _ in 0..LOGINS_PER_MINUTE {
            assert!(limiter.check(a).is_ok());
        }
        assert!(limiter.check(a).is_err());
        assert!(limiter.check(b).is_ok());
    }
}
