//! Compliance alerts by webhook: a drop is POSTed as JSON to `--compliance-webhook`.

use sigil_authority::AlertSink;

use crate::ServerError;

/// A compliance alert receiver.
pub struct Webhook {
    url: reqwest::Url,
    http: reqwest::Client,
}

impl Webhook {
    /// Refuse anything but https, or http to a loopback address (a local relay).
    pub fn new(url: &str) -> Result<Self, ServerError> {
        let parsed = crate::feeds::checked_url("compliance webhook", url)?;
        let bad = |why: &str| ServerError::Config(format!("compliance webhook `{url}`: {why}"));
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| bad(&e.to_string()))?;
        Ok(Self { url: parsed, http })
    }

    async fn send(&self, body: &serde_json::Value) {
        match self.http.post(self.url.clone()).json(body).send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                tracing::error!(status = %r.status(), url = %self.url, "compliance webhook refused the alert")
            }
            Err(e) => {
                tracing::error!(error = %e, url = %self.url, "compliance webhook unreachable")
            }
        }
    }
}

impl AlertSink for Webhook {
    fn deliver(&self, alert: serde_json::Value) {
        // Delivery must not hold up the evaluation; a failure is logged.
        let hook = Self {
            url: self.url.clone(),
            http: self.http.clone(),
        };
        tokio::spawn(async move { hook.send(&alert).await });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhooks_must_be_https_except_to_loopback() {
        assert!(Webhook::new("https://alerts.example.com/sigil").is_ok());
        assert!(Webhook::new("http://127.0.0.1:9000/hook").is_ok());
        assert!(Webhook::new("http://[::1]/hook").is_ok());
        assert!(Webhook::new("http://localhost/hook").is_ok());
        for bad in [
            "http://alerts.example.com/hook",
            "http://10.0.0.1/hook",
            "ftp://x/y",
            "not a url",
        ] {
            assert!(Webhook::new(bad).is_err(), "{bad}");
        }
    }
}
