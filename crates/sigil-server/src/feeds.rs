//! The scheduled refresh of vulnerability feeds (`--vuln-feed URL`, repeated): for sites that
//! have the network, OSV archives, the KEV catalogue and EPSS scores are fetched from their
//! publishers (or a mirror) on a schedule and imported exactly as `sigil vulndb import` does:
//! all or nothing, audited with the URL and the file's digest.
//!
//! Each pass fetches every URL in turn with the validators of its last answer
//! (`If-None-Match`, `If-Modified-Since`), so an unchanged feed costs a 304; a body that is the
//! same file as last time is not imported again. Bodies are bounded in size and time. A failed
//! fetch or import is logged and changes nothing; the next pass tries again, and the other
//! feeds are refreshed regardless.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use reqwest::{StatusCode, Url};

use sigil_audit::Actor;
use sigil_authority::Authority;

use crate::ServerError;

/// The largest feed fetched (OSV's largest ecosystem archive is a few hundred MB).
pub const MAX_FEED_BYTES: usize = 512 * 1024 * 1024;
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(600);

/// Refuse anything but https, or http to a loopback address (a local mirror); `what` names
/// the setting in the message.
pub fn checked_url(what: &str, url: &str) -> Result<Url, ServerError> {
    let bad = |why: &str| ServerError::Config(format!("{what} `{url}`: {why}"));
    let parsed = Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    let loopback = parsed.host_str().is_some_and(|h| {
        h == "localhost"
            || h.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if loopback => Ok(parsed),
        _ => Err(bad("must be https (http only to a loopback address)")),
    }
}

/// What the last answer for one URL said, to ask only for a change.
#[derive(Debug, Default)]
struct Validators {
    etag: Option<reqwest::header::HeaderValue>,
    last_modified: Option<reqwest::header::HeaderValue>,
    sha256: Option<[u8; 32]>,
}

/// The configured feeds, checked.
pub struct FeedRefresh {
    urls: Vec<Url>,
    interval: Duration,
    http: reqwest::Client,
}

impl FeedRefresh {
    pub fn new(urls: &[String], interval: Duration) -> Result<Self, ServerError> {
        let urls = urls
            .iter()
            .map(|u| checked_url("vulnerability feed", u))
            .collect::<Result<Vec<_>, _>>()?;
        // A redirect is held to the same rule as the configured URL: a mirror must not send
        // the fetch to cleartext, where anyone on the path could write vulnerability data.
        let redirects = reqwest::redirect::Policy::custom(|attempt| {
            if attempt.previous().len() >= 5 {
                attempt.error("more than 5 redirects")
            } else if checked_url("redirect", attempt.url().as_str()).is_err() {
                attempt.error("a redirect to a URL that is not https (nor http to loopback)")
            } else {
                attempt.follow()
            }
        });
        let http = reqwest::Client::builder()
            .redirect(redirects)
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ServerError::Config(format!("vulnerability feeds: {e}")))?;
        Ok(Self {
            urls,
            interval,
            http,
        })
    }

    /// Refresh every feed now and then every interval.
    pub fn spawn(self, authority: Arc<Authority>) -> Option<tokio::task::JoinHandle<()>> {
        if self.urls.is_empty() {
            return None;
        }
        Some(tokio::spawn(async move {
            let mut last: Vec<Validators> =
                self.urls.iter().map(|_| Validators::default()).collect();
            let mut tick = tokio::time::interval(self.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                for (url, validators) in self.urls.iter().zip(last.iter_mut()) {
                    if let Err(e) = self.refresh(&authority, url, validators).await {
                        tracing::error!(%url, error = %e, "vulnerability feed not refreshed");
                    }
                }
            }
        }))
    }

    async fn refresh(
        &self,
        authority: &Authority,
        url: &Url,
        last: &mut Validators,
    ) -> Result<(), String> {
        let mut request = self.http.get(url.clone());
        if let Some(etag) = &last.etag {
            request = request.header(IF_NONE_MATCH, etag.clone());
        }
        if let Some(modified) = &last.last_modified {
            request = request.header(IF_MODIFIED_SINCE, modified.clone());
        }
        let mut response = request.send().await.map_err(|e| e.to_string())?;
        if response.status() == StatusCode::NOT_MODIFIED {
            tracing::debug!(%url, "vulnerability feed unchanged");
            return Ok(());
        }
        if !response.status().is_success() {
            return Err(format!("the server answered {}", response.status()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_FEED_BYTES as u64)
        {
            return Err(format!("larger than {MAX_FEED_BYTES} bytes"));
        }
        if response.url() != url {
            tracing::info!(%url, to = %response.url(), "vulnerability feed redirected");
        }
        let etag = response.headers().get(ETAG).cloned();
        let last_modified = response.headers().get(LAST_MODIFIED).cloned();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > MAX_FEED_BYTES {
                return Err(format!("larger than {MAX_FEED_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let sha256 = sigil_ca::sha256(&body);
        if last.sha256 != Some(sha256) {
            let actor = Actor::system("vuln-feed-refresh");
            let imported = authority
                .import_feed(&actor, url.as_str(), None, &body)
                .await
                .map_err(|e| format!("import refused: {e}"))?;
            tracing::info!(%url, kind = imported.kind, added = imported.added,
                updated = imported.updated, "vulnerability feed refreshed");
        }
        // Only an imported (or identical) body moves the validators on: a refused one is
        // fetched whole again next time.
        *last = Validators {
            etag,
            last_modified,
            sha256: Some(sha256),
        };
        Ok(())
    }
}
