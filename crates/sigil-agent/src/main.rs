//! `sigil-agent`: enrol this device with Sigil and keep its identity fresh.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use sigil_agent::{
    AgentError, EnrollCredential, EnrollOptions, FileProvider, LinuxProvider, PostureProvider,
    RunOptions, StateDir,
};

#[derive(Parser)]
#[command(name = "sigil-agent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Enrol over EST: generate the key here, obtain the device certificate, store both.
    Enroll {
        /// Sigil's API base URL, e.g. https://sigil.example:8443
        #[arg(long)]
        server: String,
        /// SHA-256 of Sigil's root CA certificate (`sha256:HEX`), obtained out of band.
        #[arg(long)]
        ca_fingerprint: String,
        #[arg(long)]
        device_id: String,
        /// One-time enrolment token.
        #[arg(long, conflicts_with_all = ["bootstrap_cert", "bootstrap_key"], env = "SIGIL_ENROLLMENT_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Manufacturer bootstrap certificate (PEM).
        #[arg(long, requires = "bootstrap_key")]
        bootstrap_cert: Option<PathBuf>,
        /// Its private key (PEM).
        #[arg(long, requires = "bootstrap_cert")]
        bootstrap_key: Option<PathBuf>,
        #[arg(long)]
        state_dir: PathBuf,
    },
    /// Renew the certificate in its renewal window, forever; retry through outages; report
    /// posture hourly and on change, and network metrics every --metrics-interval.
    Run {
        #[arg(long)]
        state_dir: PathBuf,
        /// Report network metrics (from PROC_ROOT/net) this often, in seconds; 0: never. At
        /// most 600: the server counts a device's metrics fresh for 15 minutes.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(0..=600))]
        metrics_interval: u64,
        #[arg(long, default_value = "/proc")]
        proc_root: PathBuf,
        /// Read posture from this JSON file instead of the running Linux system.
        #[arg(long)]
        posture_file: Option<PathBuf>,
        /// Follow the server's rollouts into these A/B slots (checked every minute).
        #[arg(long)]
        install_dir: Option<PathBuf>,
        #[command(flatten)]
        install: InstallArgs,
    },
    /// Send one network metrics report now (listening ports and connections; counters zero).
    Metrics {
        #[arg(long)]
        state_dir: PathBuf,
        #[arg(long, default_value = "/proc")]
        proc_root: PathBuf,
    },
    /// Send one posture report now.
    Report {
        #[arg(long)]
        state_dir: PathBuf,
        #[arg(long)]
        posture_file: Option<PathBuf>,
        /// Report the release in these A/B slots (or the --installer-command's record) as
        /// what the device runs.
        #[arg(long)]
        install_dir: Option<PathBuf>,
        /// With --install-dir: the slots are the command installer's.
        #[arg(long)]
        installer_command: Option<PathBuf>,
    },
    /// Install a release: refresh the product's signed update metadata (TUF, from the root
    /// pinned at enrolment), download and verify the target, switch the A/B slots in
    /// INSTALL_DIR atomically (or run --installer-command), and roll back if the health
    /// command does not pass within the deadline.
    Update {
        #[arg(long)]
        state_dir: PathBuf,
        /// The target to install, e.g. `1.4.2/firmware.bin`. Without it, the agent asks the
        /// server for its rollout assignment, installs that, and reports the outcome.
        #[arg(long)]
        target: Option<String>,
        #[arg(long)]
        install_dir: PathBuf,
        #[command(flatten)]
        install: InstallArgs,
        /// Install even if the target is not newer than the installed release (with
        /// --target only; an assignment says itself whether it is a rollback).
        #[arg(long, requires = "target")]
        allow_downgrade: bool,
    },
    /// Renew once, now.
    Renew {
        #[arg(long)]
        state_dir: PathBuf,
    },
    /// Print the current identity.
    Status {
        #[arg(long)]
        state_dir: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct InstallArgs {
    /// `CMD FILE VERSION` installs instead of the A/B slots.
    #[arg(long)]
    installer_command: Option<PathBuf>,
    /// `CMD SLOT_DIR` must succeed after the switch, or the previous slot comes back.
    #[arg(long)]
    health_command: Option<PathBuf>,
    #[arg(long, default_value_t = 300)]
    health_deadline_seconds: u64,
}

impl InstallArgs {
    fn options(self, dir: PathBuf) -> sigil_agent::update::InstallOptions {
        sigil_agent::update::InstallOptions {
            dir,
            command: self.installer_command,
            health_command: self.health_command,
            health_deadline: Duration::from_secs(self.health_deadline_seconds),
        }
    }
}

fn print_installed(installed: &sigil_agent::update::Installed) {
    println!(
        "installed {} (version {}, sha256 {})",
        installed.target,
        installed.version.as_deref().unwrap_or("-"),
        installed.sha256
    );
}

fn provider(file: Option<PathBuf>) -> std::sync::Arc<dyn PostureProvider> {
    match file {
        Some(f) => std::sync::Arc::new(FileProvider(f)),
        None => std::sync::Arc::new(LinuxProvider::default()),
    }
}

/// Run options reporting metrics every `interval` seconds (0: never), waking at least as often.
fn metrics_options(interval: u64, proc_root: PathBuf) -> RunOptions {
    RunOptions {
        poll: Duration::from_secs(interval.clamp(1, 60)),
        metrics: (interval > 0).then(|| sigil_agent::MetricsOptions {
            proc_root,
            interval: Duration::from_secs(interval),
        }),
        ..RunOptions::default()
    }
}

/// One metrics report now: what listens and what is connected (counters zero).
async fn send_metrics(state_dir: PathBuf, proc_root: &std::path::Path) -> Result<(), AgentError> {
    let state = StateDir::open(state_dir)?;
    let snapshot = sigil_agent::netstat::read(proc_root)
        .map_err(|e| AgentError::State(format!("reading {}/net: {e}", proc_root.display())))?;
    let report = sigil_agent::netstat::report(&snapshot, &snapshot);
    let n = sigil_agent::report_metrics(&state, &report).await?;
    println!("metrics report accepted: {n} datapoints");
    Ok(())
}

fn read(path: &PathBuf) -> Result<String, AgentError> {
    std::fs::read_to_string(path).map_err(|e| AgentError::Usage(format!("{}: {e}", path.display())))
}

fn print_identity(id: &sigil_agent::Identity) -> Result<(), AgentError> {
    let (nb, na) = sigil_agent::validity(&id.cert_der()?)?;
    println!("generation {}: valid {nb} to {na}", id.generation);
    Ok(())
}

async fn execute(cli: Cli) -> Result<(), AgentError> {
    match cli.command {
        Command::Enroll {
            server,
            ca_fingerprint,
            device_id,
            token,
            bootstrap_cert,
            bootstrap_key,
            state_dir,
        } => {
            let credential = match (token, bootstrap_cert, bootstrap_key) {
                (Some(t), None, None) => EnrollCredential::Token(t),
                (None, Some(c), Some(k)) => EnrollCredential::Bootstrap {
                    cert_pem: read(&c)?,
                    key_pem: read(&k)?,
                },
                _ => {
                    return Err(AgentError::Usage(
                        "give --token, or --bootstrap-cert with --bootstrap-key".into(),
                    ));
                }
            };
            let state = StateDir::open(state_dir)?;
            let id = sigil_agent::enroll(
                &state,
                &EnrollOptions {
                    server,
                    ca_fingerprint,
                    device_id,
                    credential,
                },
            )
            .await?;
            print_identity(&id)
        }
        Command::Run {
            state_dir,
            metrics_interval,
            proc_root,
            posture_file,
            install_dir,
            install,
        } => {
            let state = StateDir::open(state_dir)?;
            let options = RunOptions {
                posture: Some(provider(posture_file)),
                updates: install_dir.map(|dir| install.options(dir)),
                ..metrics_options(metrics_interval, proc_root)
            };
            sigil_agent::run(&state, &options).await.map(|_| ())
        }
        Command::Metrics {
            state_dir,
            proc_root,
        } => send_metrics(state_dir, &proc_root).await,
        Command::Report {
            state_dir,
            posture_file,
            install_dir,
            installer_command,
        } => {
            let state = StateDir::open(state_dir)?;
            let mut posture = provider(posture_file).collect()?;
            if let Some(dir) = install_dir {
                let install = InstallArgs {
                    installer_command,
                    health_command: None,
                    health_deadline_seconds: 0,
                }
                .options(dir);
                sigil_agent::update::describe_installed(&mut posture, &install).await?;
            }
            let id = sigil_agent::report_posture(&state, &posture).await?;
            println!("posture report {id} accepted");
            Ok(())
        }
        Command::Update {
            state_dir,
            target,
            install_dir,
            install,
            allow_downgrade,
        } => {
            let state = StateDir::open(state_dir)?;
            let install = install.options(install_dir);
            let Some(target) = target else {
                return match sigil_agent::update::follow_assignment(&state, &install).await? {
                    sigil_agent::update::Followed::Nothing => {
                        println!("no update is assigned to this device");
                        Ok(())
                    }
                    sigil_agent::update::Followed::Installed(i) => {
                        print_installed(&i);
                        Ok(())
                    }
                    sigil_agent::update::Followed::Refused(e) => Err(e),
                };
            };
            let options = sigil_agent::update::UpdateOptions {
                target,
                install,
                allow_downgrade,
            };
            print_installed(&sigil_agent::update::update(&state, &options).await?);
            Ok(())
        }
        Command::Renew { state_dir } => {
            let id = sigil_agent::renew(&StateDir::open(state_dir)?).await?;
            print_identity(&id)
        }
        Command::Status { state_dir } => {
            let state = StateDir::open(state_dir)?;
            let id = state.current()?.ok_or(AgentError::NotEnrolled)?;
            print_identity(&id)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SIGIL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sigil-agent: cannot start: {e}");
            return ExitCode::from(71);
        }
    };
    match runtime.block_on(execute(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sigil-agent: {e}");
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
}
