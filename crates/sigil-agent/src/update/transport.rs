//! tough's `Transport` over the agent's HTTPS client: the pinned Sigil CA, the device's own
//! certificate (mTLS). The body is streamed, never buffered whole, so tough's size limits
//! stop an endless download early.

use bytes::Bytes;
use tough::{Transport, TransportError, TransportErrorKind, TransportStream};
use url::Url;

#[derive(Debug, Clone)]
pub struct HttpsTransport {
    pub http: reqwest::Client,
}

#[async_trait::async_trait]
impl Transport for HttpsTransport {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        if url.scheme() != "https" {
            return Err(TransportError::new(
                TransportErrorKind::UnsupportedUrlScheme,
                url,
            ));
        }
        let mut response = self.http.get(url.clone()).send().await.map_err(|e| {
            TransportError::new_with_cause(TransportErrorKind::Other, url.clone(), e)
        })?;
        let status = response.status();
        // TUF ends the root chain at the first version the repository does not have.
        if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::FORBIDDEN {
            return Err(TransportError::new(TransportErrorKind::FileNotFound, url));
        }
        if !status.is_success() {
            let cause = format!("HTTP {}", status.as_u16());
            return Err(TransportError::new_with_cause(
                TransportErrorKind::Other,
                url,
                cause,
            ));
        }
        // A task reads the body; the stream tough consumes is the receiving end of a small
        // channel (Send + Sync, as tough requires). Dropping the stream stops the download.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, TransportError>>(4);
        tokio::spawn(async move {
            loop {
                let item = match response.chunk().await {
                    Ok(Some(chunk)) => Ok(chunk),
                    Ok(None) => break,
                    Err(e) => Err(TransportError::new_with_cause(
                        TransportErrorKind::Other,
                        url.clone(),
                        e,
                    )),
                };
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Box::pin(futures_util::stream::poll_fn(move |cx| {
            rx.poll_recv(cx)
        })))
    }
}
