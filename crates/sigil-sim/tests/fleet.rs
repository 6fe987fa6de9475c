//! A small fleet in the test suite: 200 devices, two rotations each, a server restart half-way,
//! dropped and slowed connections; every device must end with a valid identity the server
//! knows, and none lost.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use sigil_sim::{SimConfig, simulate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_devices_rotate_twice_through_a_restart_and_faults() {
    let work = tempfile::tempdir().unwrap();
    let config = SimConfig {
        devices: 200,
        rotations: 2,
        // Renew at 20% of a 6-minute life (backdated 1 minute): ~12 s after issue.
        renew_fraction: 0.2,
        restart: true,
        drop_rate: 0.05,
        slow_rate: 0.05,
        slow_delay: Duration::from_millis(300),
        concurrency: 32,
        database_url: None,
        progress: false,
    };
    let summary = simulate(&config, work.path()).await.unwrap();
    println!("{summary}");
    assert_eq!(summary.enrolled, 200, "{summary}");
    assert_eq!(summary.rotations, 400, "{summary}");
    assert_eq!(summary.restarts, 1, "{summary}");
    assert!(
        summary.dropped_connections > 0,
        "the fault injection ran: {summary}"
    );
    assert_eq!(summary.identities_lost, 0, "{summary}");
    assert!(summary.inconsistent.is_empty(), "{summary}");
    assert!(summary.ok());
}
