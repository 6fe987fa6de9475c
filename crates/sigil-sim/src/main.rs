//! `sigil-sim`: run a simulated fleet against a Sigil server started here, print the summary.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use sigil_sim::{SimConfig, simulate};

#[derive(Parser)]
#[command(name = "sigil-sim", about, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
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

#[derive(clap::Subcommand)]
enum Command {
    /// A staged rollout over the fleet: four groups, failures injected after the first advance
    /// (unless --no-failures), the halt, the fix, and completion; prints the time to 100%
    /// and the server's CPU per device update.
    Rollout {
        #[arg(long, default_value_t = 40)]
        devices: usize,
        #[arg(long, default_value = "10%,25%,50%,100%")]
        groups: String,
        /// A group advances when this share of it installed.
        #[arg(long, default_value = "95%")]
        success_threshold: String,
        /// Run without injected failures (the benchmark).
        #[arg(long)]
        no_failures: bool,
        /// How often each agent asks for its assignment.
        #[arg(long, default_value_t = 300)]
        poll_ms: u64,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Behaviour monitoring: agents report metrics from simulated /proc/net tables; after
    /// they learn, one scans ports, one opens a new listening port, one's broker asks for a
    /// burst of refused topics. Prints each alarm and how long it took, whether the scanner
    /// was quarantined, and any alarm on the devices that behaved (none expected).
    Monitor {
        #[arg(long, default_value_t = 24)]
        devices: usize,
        /// How often every agent reports, in milliseconds (100 to 5000: the alarms have 10 s).
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(100..=5000))]
        report_ms: u64,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long)]
        database_url: Option<String>,
    },
}

fn monitor(command: Command, runtime: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let Command::Monitor {
        devices,
        report_ms,
        concurrency,
        database_url,
    } = command
    else {
        anyhow::bail!("not the monitor command");
    };
    let config = sigil_sim::monitor::MonitorConfig {
        devices,
        report_every: Duration::from_millis(report_ms),
        concurrency,
        database_url,
    };
    let work = tempfile::tempdir()?;
    let summary = runtime.block_on(sigil_sim::monitor::simulate_monitoring(
        &config,
        work.path(),
    ))?;
    println!("{summary}");
    Ok(if summary.ok() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "sigil-sim: a misbehaviour went unseen, or a device that behaved raised an alarm"
        );
        ExitCode::FAILURE
    })
}

fn rollout(command: Command, runtime: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let Command::Rollout {
        devices,
        groups,
        success_threshold,
        no_failures,
        poll_ms,
        concurrency,
        database_url,
    } = command
    else {
        anyhow::bail!("not the rollout command");
    };
    let config = sigil_sim::rollout::RolloutConfig {
        devices,
        groups: groups.split(',').map(|g| g.trim().to_owned()).collect(),
        success_threshold,
        inject_failures: !no_failures,
        poll: Duration::from_millis(poll_ms),
        concurrency,
        database_url,
        progress: true,
        ..sigil_sim::rollout::RolloutConfig::default()
    };
    let work = tempfile::tempdir()?;
    let summary = runtime.block_on(sigil_sim::rollout::simulate_rollout(&config, work.path()))?;
    eprintln!();
    println!("{summary}");
    Ok(
        if summary.final_state == "completed" && summary.updated_in_inventory == devices {
            ExitCode::SUCCESS
        } else {
            eprintln!("sigil-sim: the rollout did not complete on every device");
            ExitCode::FAILURE
        },
    )
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Some(command) = args.command {
        return match command {
            Command::Monitor { .. } => monitor(command, &runtime),
            Command::Rollout { .. } => rollout(command, &runtime),
        };
    }
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
    let summary = runtime.block_on(simulate(&config, work.path()))?;
    println!("{summary}");
    Ok(if summary.ok() {
        ExitCode::SUCCESS
    } else {
        eprintln!("sigil-sim: identities lost or inconsistent with the server");
        ExitCode::FAILURE
    })
}
