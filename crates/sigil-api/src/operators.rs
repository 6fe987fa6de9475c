//! Operator accounts and API tokens: created by those the policy lets manage operators, every
//! secret shown once and stored only hashed (or sealed, for TOTP seeds).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use sigil_store::{NewApiToken, NewOperator, OperatorRecord, TokenRecord};

use super::auth::{Caller, MFA_ROLES, ROLES};
use super::{ApiError, ApiJson, AppState, Problem};
use sigil_authority::rfc3339;

/// Scopes a token may carry (see the `token-scope` policy).
pub const SCOPES: [&str; 6] = ["*", "inventory", "enrollment", "audit", "broker", "trust"];
/// Longest token lifetime: automation credentials expire and are rotated.
pub const MAX_TOKEN_LIFETIME: time::Duration = time::Duration::days(366);
const MIN_PASSWORD: usize = 12;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOperator {
    pub username: String,
    pub role: String,
    /// At least 12 characters. Sent once, stored only as an Argon2id hash.
    pub password: String,
    /// Give the account a TOTP second factor. Always on for roles that change trust.
    #[serde(default)]
    pub totp: bool,
}

#[derive(Serialize, ToSchema)]
pub struct OperatorView {
    pub id: String,
    pub username: String,
    pub role: String,
    pub totp: bool,
    pub locked_until: Option<String>,
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedOperator {
    #[serde(flatten)]
    pub operator: OperatorView,
    /// The TOTP seed, base32, shown only now: give it to the person over a trusted channel.
    pub totp_secret: Option<String>,
    /// `otpauth://` URI for authenticator apps, shown only now.
    pub totp_uri: Option<String>,
}

fn view(o: &OperatorRecord) -> OperatorView {
    OperatorView {
        id: o.id.clone(),
        username: o.username.clone(),
        role: o.role.clone(),
        totp: o.totp_secret.is_some(),
        locked_until: o.locked_until.map(rfc3339),
        created_at: rfc3339(o.created_at),
    }
}

fn known_role(role: &str) -> Result<(), ApiError> {
    if ROLES.contains(&role) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "role: unknown role `{role}`; use one of {}",
            ROLES.join(", ")
        )))
    }
}

/// Create an operator account.
#[utoipa::path(post, path = "/api/v1/operators", tag = "auth", request_body = CreateOperator,
    responses((status = 201, body = CreatedOperator), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_operator(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<CreateOperator>,
) -> Result<(StatusCode, Json<CreatedOperator>), ApiError> {
    let username = req.username.trim();
    let valid_name = !username.is_empty()
        && username.len() <= 128
        && username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
    if !valid_name {
        return Err(ApiError::invalid(
            "username: 1 to 128 characters of letters, digits, `.`, `_`, `@` and `-`",
        ));
    }
    known_role(&req.role)?;
    let grant = super::grants::check_grant(&state.policy(), &caller, &req.role, None);
    state
        .audit_refusal(
            &caller.actor(),
            "access.denied",
            format!("operator:{username}"),
            grant,
        )
        .await?;
    if req.password.chars().count() < MIN_PASSWORD || req.password.chars().count() > 1024 {
        return Err(ApiError::invalid(format!(
            "password: {MIN_PASSWORD} to 1024 characters"
        )));
    }
    let password = req.password;
    let password_hash = tokio::task::spawn_blocking(move || super::login::hash_password(&password))
        .await
        .map_err(ApiError::internal)??;
    let with_totp = req.totp || MFA_ROLES.contains(&req.role.as_str());
    let seed = if with_totp {
        let mut seed = vec![0u8; 20];
        aws_lc_rs::rand::fill(&mut seed).map_err(ApiError::internal)?;
        Some(seed)
    } else {
        None
    };
    let sealed = seed
        .as_deref()
        .map(|s| state.secrets().seal(s, username))
        .transpose()?;
    let operator = state
        .store()
        .create_operator(
            &caller.actor(),
            &NewOperator {
                username,
                role: &req.role,
                password_hash: &password_hash,
                totp_secret: sealed.as_deref(),
            },
            state.now(),
        )
        .await?;
    let (totp_secret, totp_uri) = match seed {
        Some(seed) => {
            let totp = super::login::totp(seed, username)?;
            (
                Some(totp.secret().to_base32()),
                Some(totp.to_url().map_err(ApiError::internal)?),
            )
        }
        None => (None, None),
    };
    Ok((
        StatusCode::CREATED,
        Json(CreatedOperator {
            operator: view(&operator),
            totp_secret,
            totp_uri,
        }),
    ))
}

/// Every operator account (no secrets).
#[utoipa::path(get, path = "/api/v1/operators", tag = "auth",
    responses((status = 200, body = [OperatorView]), (status = 403, body = Problem)))]
pub async fn list_operators(
    State(state): State<AppState>,
) -> Result<Json<Vec<OperatorView>>, ApiError> {
    Ok(Json(
        state
            .store()
            .list_operators()
            .await?
            .iter()
            .map(view)
            .collect(),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub name: String,
    pub role: String,
    /// What the token may be used for: `inventory`, `enrollment`, `audit`, `broker`, `trust`,
    /// or `*` (everything its role allows).
    pub scopes: Vec<String>,
    /// Lifetime in seconds (60 s to 366 days). Tokens always expire.
    pub expires_in_seconds: i64,
}

#[derive(Serialize, ToSchema)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub role: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub token_info: TokenView,
    /// The secret, shown only now; Sigil keeps its SHA-256.
    pub token: String,
}

fn token_view(t: &TokenRecord) -> TokenView {
    TokenView {
        id: t.id.clone(),
        name: t.name.clone(),
        role: t.role.clone(),
        scopes: t.scopes.clone(),
        expires_at: t.expires_at.map(rfc3339),
        revoked_at: t.revoked_at.map(rfc3339),
        last_used_at: t.last_used_at.map(rfc3339),
    }
}

/// Create a scoped, expiring API token for automation.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "auth", request_body = CreateToken,
    responses((status = 201, body = CreatedToken), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn create_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid("name: 1 to 128 printable characters"));
    }
    known_role(&req.role)?;
    if req.scopes.is_empty() {
        return Err(ApiError::invalid("scopes: at least one"));
    }
    if let Some(bad) = req.scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
        return Err(ApiError::invalid(format!(
            "scopes: unknown scope `{bad}`; use {}",
            SCOPES.join(", ")
        )));
    }
    let grant = super::grants::check_grant(&state.policy(), &caller, &req.role, Some(&req.scopes));
    state
        .audit_refusal(
            &caller.actor(),
            "access.denied",
            format!("token:{name}"),
            grant,
        )
        .await?;
    let lifetime = time::Duration::seconds(req.expires_in_seconds);
    if lifetime < time::Duration::minutes(1) || lifetime > MAX_TOKEN_LIFETIME {
        return Err(ApiError::invalid(
            "expires_in_seconds: from 60 s to 366 days",
        ));
    }
    let now = state.now();
    let secret = sigil_authority::generate_token()?;
    let id = state
        .store()
        .insert_api_token(
            &caller.actor(),
            &NewApiToken {
                name,
                role: &req.role,
                scopes: &req.scopes,
                expires_at: Some(now + lifetime),
            },
            &sigil_authority::token_hash(&secret),
            now,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token_info: TokenView {
                id,
                name: name.to_owned(),
                role: req.role,
                scopes: req.scopes,
                expires_at: Some(rfc3339(now + lifetime)),
                revoked_at: None,
                last_used_at: None,
            },
            token: secret,
        }),
    ))
}

/// Every API token (no secrets).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "auth",
    responses((status = 200, body = [TokenView]), (status = 403, body = Problem)))]
pub async fn list_tokens(State(state): State<AppState>) -> Result<Json<Vec<TokenView>>, ApiError> {
    Ok(Json(
        state
            .store()
            .list_api_tokens()
            .await?
            .iter()
            .map(token_view)
            .collect(),
    ))
}

/// Revoke an API token at once.
#[utoipa::path(post, path = "/api/v1/tokens/{id}/revoke", tag = "auth",
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .store()
        .revoke_api_token(&caller.actor(), &id, state.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
