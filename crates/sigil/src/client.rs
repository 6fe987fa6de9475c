//! A small HTTPS client for the Sigil API, trusting only Sigil's own CA.

use anyhow::{Context, Result, anyhow, bail};
use std::path::Path;

use serde_json::Value;

use crate::cli::ClientArgs;

/// Whole-request limit for everything but streamed downloads.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    credential: Option<Credential>,
}

/// How the CLI proves who it is: an API token, or a person's session from `sigil login`.
enum Credential {
    Bearer(String),
    Session(String),
}

impl ApiClient {
    /// A client with the caller's credential: `--token` (or SIGIL_TOKEN), else the session
    /// `sigil login` keeps for this server, else DATA_DIR/admin.token.
    pub fn from_args(args: &ClientArgs) -> Result<Self> {
        let mut client = Self::anonymous(args)?;
        let credential = match &args.token {
            Some(t) => Credential::Bearer(t.clone()),
            None => match crate::session::load(&client.base) {
                Some(session) => Credential::Session(session.cookie),
                None => {
                    let path = args.data_dir.join("admin.token");
                    let token = std::fs::read_to_string(&path)
                        .with_context(|| format!("not logged in and no API token: run `sigil login`, pass --token, set SIGIL_TOKEN, or point --data-dir at a directory with admin.token ({})", path.display()))?;
                    Credential::Bearer(token.trim().to_owned())
                }
            },
        };
        client.credential = Some(credential);
        Ok(client)
    }

    /// A client that trusts the server but proves nothing yet (for logging in).
    pub fn anonymous(args: &ClientArgs) -> Result<Self> {
        let base = args
            .server
            .clone()
            .unwrap_or_else(|| "https://127.0.0.1:8443".to_owned());
        let base = base.trim_end_matches('/').to_owned();
        let ca_path = args
            .ca_file
            .clone()
            .unwrap_or_else(|| args.data_dir.join("ca/root.crt"));
        let ca_pem = std::fs::read(&ca_path).with_context(|| {
            format!(
                "no CA file to trust the server with: pass --ca-file or set SIGIL_CA_FILE ({})",
                ca_path.display()
            )
        })?;
        let ca = reqwest::Certificate::from_pem(&ca_pem)
            .with_context(|| format!("{} is not a PEM certificate", ca_path.display()))?;
        let http = reqwest::Client::builder()
            .tls_certs_only([ca])
            .connect_timeout(std::time::Duration::from_secs(10))
            // Per read, not per request: an export of millions of entries streams for minutes.
            // Ordinary requests get a whole-request limit in `checked`.
            .read_timeout(std::time::Duration::from_secs(60))
            .build()
            .context("building the HTTPS client")?;
        Ok(Self {
            http,
            base,
            credential: None,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn uses_session(&self) -> bool {
        matches!(self.credential, Some(Credential::Session(_)))
    }

    /// The request with the credential; a session also sends the API's CSRF header.
    fn authorised(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.credential {
            Some(Credential::Bearer(token)) => request.bearer_auth(token),
            Some(Credential::Session(cookie)) => request
                .header(reqwest::header::COOKIE, format!("sigil_session={cookie}"))
                .header("x-sigil-csrf", "1"),
            None => request,
        }
    }

    /// Log in: the session cookie's value and the API's account of the session.
    pub async fn login(&self, body: &Value) -> Result<(String, Value)> {
        let response = self
            .checked(
                self.http
                    .post(format!("{}/api/v1/auth/login", self.base))
                    .json(body)
                    .timeout(REQUEST_TIMEOUT),
            )
            .await?;
        let cookie = response
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix("sigil_session="))
            .and_then(|v| v.split(';').next())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .context("the server answered the login without a session cookie")?;
        let session = response.json().await.unwrap_or(Value::Null);
        Ok((cookie, session))
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Result<Value> {
        self.send(self.http.put(format!("{}{path}", self.base)).json(body))
            .await
    }

    /// PATCH with an RFC 7396 merge patch.
    pub async fn patch(&self, path: &str, body: &Value) -> Result<Value> {
        let request = self
            .http
            .patch(format!("{}{path}", self.base))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/merge-patch+json",
            )
            .body(body.to_string());
        self.send(request).await
    }

    /// POST a file as `application/octet-stream`, streamed from disk.
    pub async fn upload(&self, path: &str, file: &Path) -> Result<Value> {
        let handle = tokio::fs::File::open(file)
            .await
            .with_context(|| format!("reading {}", file.display()))?;
        let length = handle.metadata().await?.len();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(handle));
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, length)
            .body(body);
        let response = self.checked(request).await?;
        Ok(response.json().await.unwrap_or(Value::Null))
    }

    /// POST a file whose refusal is a report rather than a problem (a device import that
    /// found problems answers 422 with each row's): the status and the JSON answer.
    pub async fn upload_for_report(
        &self,
        path: &str,
        file: &Path,
        content_type: &str,
    ) -> Result<(u16, Value)> {
        let bytes = tokio::fs::read(file)
            .await
            .with_context(|| format!("reading {}", file.display()))?;
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes)
            .timeout(REQUEST_TIMEOUT * 4);
        let response = self
            .authorised(request)
            .send()
            .await
            .with_context(|| format!("cannot reach the Sigil API at {}", self.base))?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if (200..300).contains(&status) || body.get("errors").is_some() {
            return Ok((status, body));
        }
        match body.get("detail").and_then(Value::as_str) {
            Some(detail) => bail!("{detail} (HTTP {status})"),
            None => bail!("the server answered HTTP {status}"),
        }
    }

    /// A non-JSON answer (a signed note, say) as text.
    pub async fn text(&self, method: reqwest::Method, path: &str) -> Result<String> {
        let response = self
            .checked(
                self.http
                    .request(method, format!("{}{path}", self.base))
                    .timeout(REQUEST_TIMEOUT),
            )
            .await?;
        response.text().await.context("reading the answer")
    }

    /// Stream a (possibly large) answer into `out`: written to a temporary file next to it and
    /// renamed into place only when complete, so a cut transfer never leaves a plausible file.
    pub async fn download(&self, path: &str, out: &Path) -> Result<u64> {
        use std::io::Write;
        let mut response = self
            .checked(self.http.get(format!("{}{path}", self.base)))
            .await?;
        let dir = match out.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut tmp = tempfile::NamedTempFile::new_in(dir)
            .with_context(|| format!("creating a file in {}", dir.display()))?;
        let mut written = 0u64;
        while let Some(chunk) = response.chunk().await.context("reading the answer")? {
            tmp.write_all(&chunk)
                .with_context(|| format!("writing {}", out.display()))?;
            written += chunk.len() as u64;
        }
        tmp.as_file()
            .sync_all()
            .with_context(|| format!("writing {}", out.display()))?;
        tmp.persist(out)
            .with_context(|| format!("writing {}", out.display()))?;
        Ok(written)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value> {
        let response = self.checked(request.timeout(REQUEST_TIMEOUT)).await?;
        Ok(response.json().await.unwrap_or(Value::Null))
    }

    /// Send with the token; a non-2xx answer becomes an error carrying the problem's detail.
    async fn checked(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let response = self
            .authorised(request)
            .send()
            .await
            .with_context(|| format!("cannot reach the Sigil API at {}", self.base))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body: Value = response.json().await.unwrap_or(Value::Null);
        match body.get("detail").and_then(Value::as_str) {
            Some(detail) => {
                let code = body.get("code").and_then(Value::as_str).unwrap_or("error");
                bail!("{detail} ({code}, HTTP {})", status.as_u16())
            }
            None => Err(anyhow!("the server answered HTTP {}", status.as_u16())),
        }
    }
}
