//! Operator helpers for the integration tests: accounts, TOTP codes, sessions and bearer calls.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{TestServer, split};

/// RFC 6238 code for `seed` (base32) at step offset `ahead` from now.
pub fn totp_code(seed: &str, ahead: u64) -> String {
    let totp = totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_secret(totp_rs::Secret::try_from_base32(seed).unwrap())
        .build_noncompliant();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    totp.generate(now + 30 * ahead).to_string()
}

pub struct Session {
    pub cookie: String,
    pub body: Value,
}

pub async fn login(s: &TestServer, body: Value) -> Result<Session, (StatusCode, Value)> {
    let r = s
        .http
        .post(format!("{}/api/v1/auth/login", s.api))
        .json(&body)
        .send()
        .await
        .unwrap();
    let cookie = r
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned());
    let (st, body) = split(r).await;
    match (st, cookie) {
        (StatusCode::OK, Some(cookie)) => Ok(Session { cookie, body }),
        (st, _) => Err((st, body)),
    }
}

impl Session {
    pub fn cookie_pair(&self) -> String {
        self.cookie.split(';').next().unwrap().to_owned()
    }

    pub async fn call(
        &self,
        s: &TestServer,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = format!("{}{path}", s.api);
        let mut req = match method {
            "GET" => s.http.get(url),
            _ => s.http.post(url).header("x-sigil-csrf", "1"),
        }
        .header("cookie", self.cookie_pair());
        if let Some(b) = body {
            req = req.json(&b);
        }
        split(req.send().await.unwrap()).await
    }
}

pub async fn bearer(
    s: &TestServer,
    token: &str,
    method: &str,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let url = format!("{}{path}", s.api);
    let req = match method {
        "GET" => s.http.get(url),
        _ => s.http.post(url).json(&body),
    };
    split(req.bearer_auth(token).send().await.unwrap()).await
}

/// Audit entries for `action`, newest first.
pub async fn audit(s: &TestServer, action: &str) -> Vec<Value> {
    let (st, page) = s
        .get(&format!(
            "/api/v1/audit/entries?action={action}&order=desc&limit=50"
        ))
        .await;
    assert_eq!(st, StatusCode::OK, "{page}");
    page["items"].as_array().unwrap().clone()
}

pub async fn create_operator(s: &TestServer, username: &str, role: &str) -> Value {
    let (st, op) = s
        .post(
            "/api/v1/operators",
            json!({"username": username, "role": role, "password": format!("{username}-correct-horse")}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{op}");
    op
}

pub fn password(username: &str) -> String {
    format!("{username}-correct-horse")
}
