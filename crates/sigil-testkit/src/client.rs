//! An administrator's HTTPS client for a Sigil server: its root CA trusted, its token sent.

use std::path::Path;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[derive(Clone)]
pub struct AdminClient {
    pub http: reqwest::Client,
    /// `https://localhost:<port>`
    pub api: String,
    pub token: String,
}

/// A client that trusts only the root certificate of the data directory `data_dir`.
pub fn root_client(data_dir: &Path) -> Result<reqwest::Client, String> {
    let pem = std::fs::read(data_dir.join("ca/root.crt"))
        .map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let root = reqwest::Certificate::from_pem(&pem).map_err(|e| e.to_string())?;
    reqwest::Client::builder()
        .tls_certs_only([root])
        .build()
        .map_err(|e| e.to_string())
}

impl AdminClient {
    /// For the server whose data directory is `data_dir`, listening on `api_port`.
    pub fn new(data_dir: &Path, api_port: u16, token: &str) -> Result<Self, String> {
        Ok(Self {
            http: root_client(data_dir)?,
            api: format!("https://localhost:{api_port}"),
            token: token.to_owned(),
        })
    }

    /// `method path` with the token and `body` (JSON unless null): the status and the JSON
    /// answer (null if there is none).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Result<(StatusCode, Value), String> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(&self.token);
        if !body.is_null() {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| format!("{path}: {e}"))?;
        Ok(split(response).await)
    }

    /// The answer of a request that must succeed, or why it did not.
    pub async fn try_post(&self, path: &str, body: Value) -> Result<Value, String> {
        match self.call(Method::POST, path, &body).await? {
            (status, v) if status.is_success() => Ok(v),
            (status, v) => Err(format!("{path}: {status} {v}")),
        }
    }

    pub async fn try_get(&self, path: &str) -> Result<Value, String> {
        match self.call(Method::GET, path, &Value::Null).await? {
            (status, v) if status.is_success() => Ok(v),
            (status, v) => Err(format!("{path}: {status} {v}")),
        }
    }

    /// GET, for tests: panics if the request cannot be made.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, &Value::Null).await.unwrap()
    }

    /// POST, for tests: panics if the request cannot be made.
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, &body).await.unwrap()
    }

    pub async fn create_product(&self, name: &str) -> Result<String, String> {
        let p = self
            .try_post(
                "/api/v1/products",
                json!({"name": name, "manufacturer": "Acme", "support_end": "2031-12-31"}),
            )
            .await?;
        id_of(&p)
    }

    pub async fn create_device(&self, product: &str, serial: &str) -> Result<String, String> {
        let d = self
            .try_post(
                "/api/v1/devices",
                json!({"product_id": product, "serial_number": serial}),
            )
            .await?;
        id_of(&d)
    }

    /// A one-time EST enrolment token for `device`.
    pub async fn enrollment_token(&self, device: &str) -> Result<String, String> {
        let t = self
            .try_post(
                &format!("/api/v1/devices/{device}/enrollment-tokens"),
                json!({}),
            )
            .await?;
        t["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no token in {t}"))
    }
}

fn id_of(v: &Value) -> Result<String, String> {
    v["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no id in {v}"))
}

/// Status and JSON body; an error answer must be problem+json (every API error is).
pub async fn split(r: reqwest::Response) -> (StatusCode, Value) {
    let status = r.status();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        assert_eq!(
            ct, "application/problem+json",
            "errors are problem+json: {body}"
        );
    }
    (status, body)
}
