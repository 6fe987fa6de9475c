//! EST (RFC 7030) from the device's side, trusting the server only through the pinned root CA
//! fingerprint.

use std::time::Duration;

use base64::Engine;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::AgentError;

/// Largest clock difference from the server tolerated (certificates are backdated a minute;
/// beyond this a device would reject its own fresh certificate or accept expired ones).
pub const MAX_CLOCK_SKEW: time::Duration = time::Duration::minutes(5);
const TIMEOUT: Duration = Duration::from_secs(30);

/// How the device proves it may enrol.
pub enum Credential<'a> {
    /// A one-time token, sent as HTTP Basic (user = device id).
    Token { device_id: &'a str, token: &'a str },
    /// A client certificate (PEM key + certificate): a manufacturer bootstrap certificate for
    /// `simpleenroll`, or the current Sigil certificate for `simplereenroll`.
    Certificate { identity_pem: String },
}

fn sha256_hex(der: &[u8]) -> String {
    hex::encode(sigil_ca::sha256(der))
}

pub(crate) use sigil_ca::certificate_pem as pem_cert;

fn transport(e: reqwest::Error) -> AgentError {
    // A handshake the server aborted because our certificate is revoked is not an outage.
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    if text.contains("CertificateRevoked") {
        AgentError::Revoked(text)
    } else {
        AgentError::Unreachable(text)
    }
}

/// The root CA the server's EST `cacerts` offers whose SHA-256 is `fingerprint`, and the
/// issuing CA it signed, as a PEM chain (issuing, root). The download itself is unauthenticated
/// (RFC 7030 4.1.1, bootstrap distribution): the fingerprint is what authenticates it.
pub async fn fetch_pinned_chain(
    server: &str,
    fingerprint: &str,
) -> Result<(String, String), AgentError> {
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| AgentError::Usage(e.to_string()))?;
    let certs = get_cacerts(&http, server).await?;
    let root = certs
        .iter()
        .find(|c| sha256_hex(c) == fingerprint)
        .ok_or_else(|| AgentError::FingerprintMismatch {
            pinned: fingerprint.to_owned(),
            offered: certs.iter().map(|c| sha256_hex(c)).collect(),
        })?;
    let chain = chain_under(root, &certs)?;
    Ok((pem_cert(root), chain))
}

/// The issuing CA in `certs` that `root` signed, then the root: the chain a device presents.
fn chain_under(root: &[u8], certs: &[Vec<u8>]) -> Result<String, AgentError> {
    let issuing = certs
        .iter()
        .find(|c| c.as_slice() != root && sigil_ca::directly_issued_by(c, root))
        .ok_or_else(|| {
            AgentError::BadAnswer("cacerts holds no CA issued by the pinned root".into())
        })?;
    Ok(format!("{}{}", pem_cert(issuing), pem_cert(root)))
}

async fn get_cacerts(http: &reqwest::Client, server: &str) -> Result<Vec<Vec<u8>>, AgentError> {
    let r = http
        .get(format!("{server}/.well-known/est/cacerts"))
        .send()
        .await
        .map_err(transport)?;
    check_clock(&r)?;
    let status = r.status().as_u16();
    let body = r.bytes().await.map_err(transport)?;
    if status != 200 {
        return Err(AgentError::Server {
            status,
            detail: String::from_utf8_lossy(&body).chars().take(300).collect(),
        });
    }
    let der = decode_base64(&body)?;
    sigil_ca::est::parse_certs_only(&der).map_err(|e| AgentError::BadAnswer(e.to_string()))
}

fn decode_base64(body: &[u8]) -> Result<Vec<u8>, AgentError> {
    let compact: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| AgentError::BadAnswer(format!("body is not base64: {e}")))
}

/// Refuse to go on when the server's `Date` is more than [`MAX_CLOCK_SKEW`] from ours.
fn check_clock(r: &reqwest::Response) -> Result<(), AgentError> {
    match r
        .headers()
        .get(reqwest::header::DATE)
        .and_then(|d| d.to_str().ok())
    {
        Some(date) => check_skew(date, time::OffsetDateTime::now_utc()),
        None => Ok(()),
    }
}

/// The clock check on an HTTP `Date` value (RFC 9110 IMF-fixdate); an unreadable date is
/// ignored rather than trusted.
pub(crate) fn check_skew(date: &str, now: time::OffsetDateTime) -> Result<(), AgentError> {
    let format = time::format_description::well_known::Rfc2822;
    let Ok(server) = time::OffsetDateTime::parse(&date.replace("GMT", "+0000"), &format) else {
        return Ok(());
    };
    let skew = server - now;
    if skew.abs() > MAX_CLOCK_SKEW {
        return Err(AgentError::ClockSkew {
            skew_seconds: skew.whole_seconds(),
        });
    }
    Ok(())
}

/// An EST client that trusts only `root_pem`.
pub struct EstClient {
    server: String,
    http: reqwest::Client,
    root_der: Vec<u8>,
}

impl EstClient {
    pub fn new(
        server: &str,
        root_pem: &str,
        credential: &Credential<'_>,
    ) -> Result<Self, AgentError> {
        let root = reqwest::Certificate::from_pem(root_pem.as_bytes())
            .map_err(|e| AgentError::State(format!("ca.pem: {e}")))?;
        let mut builder = reqwest::Client::builder()
            .tls_certs_only([root])
            .timeout(TIMEOUT);
        if let Credential::Certificate { identity_pem } = credential {
            let identity = reqwest::Identity::from_pem(identity_pem.as_bytes())
                .map_err(|e| AgentError::State(format!("client certificate: {e}")))?;
            builder = builder.identity(identity);
        }
        let root_der = pem::parse(root_pem)
            .map_err(|e| AgentError::State(format!("ca.pem: {e}")))?
            .into_contents();
        Ok(Self {
            server: server.trim_end_matches('/').to_owned(),
            http: builder
                .build()
                .map_err(|e| AgentError::Usage(e.to_string()))?,
            root_der,
        })
    }

    /// The server's base URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The HTTPS client (pinned root, and the device's certificate where one was given).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// GET a JSON answer from a device route (mTLS); refusals become the matching error.
    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value, AgentError> {
        let r = self
            .http
            .get(format!("{}{path}", self.server))
            .send()
            .await
            .map_err(transport)?;
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.map_err(transport)?;
        answer(status, body)
    }

    /// GET a JSON answer, or `None` when the server answers 204 (nothing for this device).
    pub async fn get_optional_json(
        &self,
        path: &str,
    ) -> Result<Option<serde_json::Value>, AgentError> {
        let r = self
            .http
            .get(format!("{}{path}", self.server))
            .send()
            .await
            .map_err(transport)?;
        if r.status().as_u16() == 204 {
            return Ok(None);
        }
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.map_err(transport)?;
        answer(status, body).map(Some)
    }

    /// POST JSON; success is any 2xx.
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> Result<(), AgentError> {
        let r = self
            .http
            .post(format!("{}{path}", self.server))
            .json(body)
            .send()
            .await
            .map_err(transport)?;
        let status = r.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        answer(status, body).map(|_| ())
    }

    /// The current chain (issuing, root) under the pinned root, over the authenticated channel.
    pub async fn chain(&self) -> Result<String, AgentError> {
        let certs = get_cacerts(&self.http, &self.server).await?;
        chain_under(&self.root_der, &certs)
    }

    /// `simpleenroll` (first enrolment) or `simplereenroll` (renewal); the issued certificate,
    /// DER, checked to certify `spki_der`.
    pub async fn enroll(
        &self,
        renewal: bool,
        credential: &Credential<'_>,
        csr_der: &[u8],
        spki_der: &[u8],
    ) -> Result<Vec<u8>, AgentError> {
        let op = if renewal {
            "simplereenroll"
        } else {
            "simpleenroll"
        };
        let mut request = self
            .http
            .post(format!("{}/.well-known/est/{op}", self.server))
            .header("content-type", "application/pkcs10")
            .header("content-transfer-encoding", "base64")
            .body(base64::engine::general_purpose::STANDARD.encode(csr_der));
        if let Credential::Token { device_id, token } = credential {
            request = request.basic_auth(device_id, Some(token));
        }
        let r = request.send().await.map_err(transport)?;
        check_clock(&r)?;
        let status = r.status().as_u16();
        let body = r.bytes().await.map_err(transport)?;
        if status != 200 {
            let detail: String = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["detail"].as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(300).collect());
            return Err(match status {
                401 | 403 if detail.contains("revoked") => AgentError::Revoked(detail),
                401 | 403 => AgentError::CredentialRefused(detail),
                _ => AgentError::Server { status, detail },
            });
        }
        let p7 = decode_base64(&body)?;
        let certs = sigil_ca::est::parse_certs_only(&p7)
            .map_err(|e| AgentError::BadAnswer(e.to_string()))?;
        let cert = certs
            .into_iter()
            .find(|c| {
                X509Certificate::from_der(c).is_ok_and(|(_, x)| x.public_key().raw == spki_der)
            })
            .ok_or_else(|| {
                AgentError::BadAnswer("no certificate for this device's key in the answer".into())
            })?;
        Ok(cert)
    }

    /// POST `body` as JSON to one of the device's own routes (mTLS with the current identity):
    /// the answer's JSON when the status is `success`, else the refusal as an error.
    async fn post_as_device(
        &self,
        path: &str,
        body: &impl serde::Serialize,
        success: u16,
    ) -> Result<serde_json::Value, AgentError> {
        let r = self
            .http
            .post(format!("{}{path}", self.server))
            .json(body)
            .send()
            .await
            .map_err(transport)?;
        check_clock(&r)?;
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.map_err(transport)?;
        answer_for(success, status, body)
    }

    /// Send a metrics report; how many datapoints it made.
    pub async fn report_metrics(
        &self,
        report: &sigil_detect::MetricsReport,
    ) -> Result<u64, AgentError> {
        let body = self
            .post_as_device("/api/v1/device/metrics", report, 202)
            .await?;
        Ok(body["datapoints"].as_u64().unwrap_or_default())
    }

    /// Send a posture report; the server's id for it.
    pub async fn report_posture(
        &self,
        posture: &sigil_domain::Posture,
    ) -> Result<String, AgentError> {
        let body = self
            .post_as_device("/api/v1/device/posture", posture, 201)
            .await?;
        Ok(body["id"].as_str().unwrap_or_default().to_owned())
    }
}

/// A JSON answer for 200, or the error its status and detail say.
fn answer(status: u16, body: serde_json::Value) -> Result<serde_json::Value, AgentError> {
    answer_for(200, status, body)
}

/// A JSON answer for the `success` status, or the error its status and detail say.
fn answer_for(
    success: u16,
    status: u16,
    body: serde_json::Value,
) -> Result<serde_json::Value, AgentError> {
    let detail = body["detail"].as_str().unwrap_or_default().to_owned();
    match status {
        s if s == success => Ok(body),
        401 | 403 if detail.contains("revoked") => Err(AgentError::Revoked(detail)),
        401 | 403 => Err(AgentError::CredentialRefused(detail)),
        _ => Err(AgentError::Server { status, detail }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_far_from_the_servers_is_refused() {
        let now = time::macros::datetime!(2026-11-27 12:00 UTC);
        assert!(check_skew("Fri, 27 Nov 2026 12:03:00 GMT", now).is_ok());
        let e = check_skew("Fri, 27 Nov 2026 12:10:00 GMT", now).unwrap_err();
        assert_eq!(e.exit_code(), 80);
        assert!(e.to_string().contains("600 s"), "{e}");
        assert!(check_skew("Sat, 01 Jan 2000 00:00:00 GMT", now).is_err());
        assert!(check_skew("garbage", now).is_ok());
    }
}
