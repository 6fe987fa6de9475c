//! Request bodies that are read in time, and refusals that always reach the client.
//!
//! A handler that refuses a request before reading its body (a failed authentication, a body
//! over the limit) used to drop the body at once. Over HTTP/2 that resets the stream, often
//! before the refusal's headers are out ("Stream error in the HTTP/2 framing layer"); over
//! HTTP/1.1 the server closed a socket with unread data, and the kernel's reset destroyed the
//! answer. So every request body is wrapped: a body dropped unfinished is handed back to the
//! middleware, which, for an error answer, reads and discards what the client is still sending
//! (at most [`DRAIN_LIMIT`] bytes within [`DRAIN_TIME`]) before the answer goes out. A body must
//! be complete [`BODY_READ_TIMEOUT`] after the request began, or have delivered at least
//! [`MIN_BYTES_PER_WINDOW`] in that window, which earns it another window: a large upload
//! (a firmware image) proceeds at any reasonable speed, while a slow trickle holds no connection
//! for long.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::oneshot;

/// A request body must be complete this long after the request head arrived.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// What a body must deliver per [`BODY_READ_TIMEOUT`] window to be given another (64 KiB/s).
pub const MIN_BYTES_PER_WINDOW: u64 = 64 * 1024 * 30;
/// What a refused request may still send, discarded, before its answer.
pub const DRAIN_LIMIT: usize = 8 * 1024 * 1024;
pub const DRAIN_TIME: Duration = Duration::from_secs(5);

struct GuardedBody {
    inner: Option<Body>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// Bytes delivered since the current window began.
    window_bytes: u64,
    /// Where an unfinished body goes when dropped; `None` once it finished or failed.
    back: Option<oneshot::Sender<Body>>,
}

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.back = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                this.back = None;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(Ok(frame))) => {
                this.window_bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready()
                    && this.window_bytes >= MIN_BYTES_PER_WINDOW
                {
                    // Progress enough: another window, and a timer armed for it.
                    this.window_bytes = 0;
                    this.deadline
                        .as_mut()
                        .reset(tokio::time::Instant::now() + BODY_READ_TIMEOUT);
                    let _ = this.deadline.as_mut().poll(cx);
                    Poll::Pending
                } else if this.deadline.as_mut().poll(cx).is_ready() {
                    this.back = None;
                    Poll::Ready(Some(Err(axum::Error::new(format!(
                        "the request body was not complete within {} s (nor arriving at 64 KiB/s)",
                        BODY_READ_TIMEOUT.as_secs()
                    )))))
                } else {
                    Poll::Pending
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Drop for GuardedBody {
    fn drop(&mut self) {
        if let (Some(inner), Some(back)) = (self.inner.take(), self.back.take())
            && !inner.is_end_stream()
        {
            let _ = back.send(inner);
        }
    }
}

/// The middleware, outermost on both listeners.
pub async fn deliver_refusals(request: Request, next: Next) -> Response {
    let (back, mut returned) = oneshot::channel();
    let request = request.map(|inner| {
        Body::new(GuardedBody {
            inner: Some(inner),
            deadline: Box::pin(tokio::time::sleep(BODY_READ_TIMEOUT)),
            window_bytes: 0,
            back: Some(back),
        })
    });
    let mut response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    // Only a body its handler dropped unfinished comes back; one still held elsewhere, or
    // read to the end, does not.
    let Ok(rest) = returned.try_recv() else {
        return response;
    };
    if !drain(rest).await {
        // The client is still sending: the connection cannot be reused anyway.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Read and discard `body`; whether it ended within the limits.
async fn drain(mut body: Body) -> bool {
    let read = async {
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            seen += frame.data_ref().map_or(0, Bytes::len);
            if seen > DRAIN_LIMIT {
                return false;
            }
        }
        true
    };
    tokio::time::timeout(DRAIN_TIME, read)
        .await
        .unwrap_or(false)
}
