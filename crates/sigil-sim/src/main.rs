//! `sigil-sim`: run a simulated fleet against a Sigil server started here, print the summary.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use sigil_sim::{SimConfig, simulate};

#[derive(Parser)]
#[command(name = "sigil-sim", about)]
struct Args {
    #[arg(long, default_value_t = 200)]
    devices: usize,
    /// Renewals each device must complete.
    #[arg(long, default_value_t = 2)]
    rotations: u64,
    /// When in a certificate's life (5 minutes + 1 backdated) agents renew.
    #[arg(long, default_value_t = sigil_agent::DEFAULT_RENEW_FRACTION)]
    renew_fraction: f64,
    /// Do not restart the server half-way.
    #[arg(long)]
    no_restart: bool,
    #[arg(long, default_value_t = 0.02)]
    drop_rate: f64,
    #[arg(long, default_value_t = 0.02)]
    slow_rate: f64,
    #[arg(long, default_value_t = 500)]
    slow_ms: u64,
    /// Enrolments in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Database URL for the server (default: SQLite in a temporary directory).
    #[arg(long)]
    database_url: Option<String>,
}

fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SIGIL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = SimConfig {
        devices: args.devices,
        rotations: args.rotations,
        renew_fraction: args.renew_fraction,
        restart: !args.no_restart,
        drop_rate: args.drop_rate,
        slow_rate: args.slow_rate,
        slow_delay: Duration::from_millis(args.slow_ms),
        concurrency: args.concurrency,
        database_url: args.database_url,
        progress: true,
    };
    let work = tempfile::tempdir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let summary = runtime.block_on(simulate(&config, work.path()))?;
    println!("{summary}");
    Ok(if summary.ok() {
        ExitCode::SUCCESS
    } else {
        eprintln!("sigil-sim: identities lost or inconsistent with the server");
        ExitCode::FAILURE
    })
}
