//! The accept loop both listeners share: HTTPS for the API (rustls, aws-lc-rs provider, the
//! verified client certificate handed to handlers for EST and devices) and plain HTTP/1.1 for
//! the public PKI listener. Every connection is bounded: a handshake and a request head must
//! arrive in time, a request body must be complete in time (body.rs), and each listener holds at most
//! [`MAX_CONNECTIONS`] connections, [`MAX_CONNECTIONS_PER_ADDRESS`] of them from one address,
//! so that one client (or a slowloris crowd) cannot exhaust descriptors or starve the other
//! listener.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

use sigil_ca::ServerCertificate;

use crate::ServerError;
use crate::mtls::PeerCertificate;

/// A client that does not finish its handshake in this time is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that does not send a complete request head in this time is dropped (slowloris).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 connections are pinged at this interval and closed if the ping is not answered.
const H2_KEEPALIVE: Duration = Duration::from_secs(30);
/// Concurrent HTTP/2 streams per connection.
const H2_MAX_STREAMS: u32 = 64;
/// Connections one listener holds at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 8192;
/// Connections one address holds on one listener; more are closed at once.
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 256;

/// The API listener's TLS configuration: Sigil's server certificate, optional client
/// certificates checked by `client_verifier`.
pub fn server_config(
    cert: ServerCertificate,
    client_verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
) -> Result<Arc<ServerConfig>, ServerError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain: Vec<CertificateDer<'static>> = cert
        .chain_der
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pkcs8_der));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serve `app` over TLS on `listener` until the task is aborted. Connections are owned by this
/// task: aborting it closes them too, so nothing keeps serving with a stopped server's state.
pub async fn serve_tls(listener: TcpListener, config: Arc<ServerConfig>, app: Router) {
    let acceptor = TlsAcceptor::from(config);
    accept_loop(
        listener,
        "api",
        move |tcp, peer, app: Router| {
            let acceptor = acceptor.clone();
            async move {
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                // The verified client certificate, if any, for handlers (EST re-enrolment).
                let peer_cert = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map(|c| Arc::new(c.clone().into_owned()));
                // The protocol was negotiated by ALPN during the handshake, so no sniffing of the
                // first bytes (which would wait without any timeout) is needed.
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
                let app = app.layer(axum::Extension(PeerCertificate(peer_cert)));
                serve_connection(HalfClosable(tls), peer, app, h2).await;
            }
        },
        app,
    )
    .await;
}

/// Serve `app` over plain HTTP/1.1 on `listener` (the public PKI listener), with the same
/// bounds as the API listener.
pub async fn serve_plain(listener: TcpListener, app: Router) {
    accept_loop(
        listener,
        "pki",
        |tcp, peer, app| serve_connection(tcp, peer, app, false),
        app,
    )
    .await;
}

/// Connections held per address (an IPv4 address or an IPv6 /64, as failures are counted),
/// with the permit that counts them against the listener.
#[derive(Default)]
struct PerAddress(Mutex<HashMap<String, usize>>);

/// Releases an address's slot when the connection ends.
struct Slot {
    addresses: Arc<PerAddress>,
    key: String,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.addresses.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.key);
            }
        }
    }
}

impl PerAddress {
    fn take(self: &Arc<Self>, ip: IpAddr, permit: OwnedSemaphorePermit) -> Option<Slot> {
        let key = sigil_authority::failures::address_key(ip);
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(key.clone()).or_default();
        if *n >= MAX_CONNECTIONS_PER_ADDRESS {
            return None;
        }
        *n += 1;
        Some(Slot {
            addresses: self.clone(),
            key,
            _permit: permit,
        })
    }
}

async fn accept_loop<F, Fut>(listener: TcpListener, name: &'static str, handle: F, app: Router)
where
    F: Fn(TcpStream, SocketAddr, Router) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let capacity = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let addresses = Arc::new(PerAddress::default());
    let mut connections = tokio::task::JoinSet::new();
    loop {
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
        // Wait for a free slot before accepting: the rest queue in the kernel's backlog.
        let Ok(permit) = capacity.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(listener = name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = addresses.take(peer.ip(), permit) else {
            tracing::debug!(listener = name, %peer, "too many connections from one address");
            continue; // dropping `tcp` closes it
        };
        let _ = tcp.set_nodelay(true);
        let app = app
            .clone()
            .layer(axum::Extension(sigil_http::PeerAddr(peer)));
        let connection = handle(tcp, peer, app);
        connections.spawn(async move {
            let _slot = slot;
            connection.await;
        });
    }
}

/// A TLS stream whose peer may shut down its sending side (a TCP FIN) without a close_notify
/// once its request is out, and still read the answer. rustls reports that as an unexpected
/// EOF; here it is the end of input. HTTP's own framing still catches a truncated request.
struct HalfClosable<IO>(IO);

impl<IO: AsyncRead + Unpin> AsyncRead for HalfClosable<IO> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match std::pin::Pin::new(&mut self.0).poll_read(cx, buf) {
            std::task::Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                std::task::Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for HalfClosable<IO> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

async fn serve_connection<IO>(io: IO, peer: SocketAddr, app: Router, h2: bool)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app);
    let io = TokioIo::new(io);
    let result = if h2 {
        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(H2_KEEPALIVE))
            .max_concurrent_streams(H2_MAX_STREAMS)
            .serve_connection(io, service)
            .await
    } else {
        hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            // A client may shut down its sending side once its request is out, and still
            // wait for the answer.
            .half_close(true)
            .serve_connection(io, service)
            .await
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
