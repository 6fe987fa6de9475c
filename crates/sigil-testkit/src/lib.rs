//! The one harness of Sigil's tests, the fleet simulator and the benchmarks:
//!
//! - [`TestServer`]: the real server in-process (real TLS on ephemeral ports) on SQLite or on a
//!   fresh PostgreSQL database, with the bootstrap admin token and a client trusting its CA;
//! - [`AdminClient`]: that client, for whoever drives a server over its API;
//! - [`postgres`]: fresh databases next to `SIGIL_TEST_POSTGRES_URL`, and [`both_backends!`];
//! - [`csr`]: CSRs made in-process or by `openssl req`, and PEM of them.
//!
//! A failed set-up is a failed test: the test-facing helpers panic with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod client;
pub mod csr;
pub mod postgres;
mod server;

pub use client::{AdminClient, root_client, split};
pub use postgres::Db;
pub use server::TestServer;

/// Run an async test body once per backend: `both_backends!(name)` next to
/// `async fn name(db: Db)` makes `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::Db::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::Db::Postgres).await
            }
        }
    };
}
