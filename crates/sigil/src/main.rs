//! `sigil`: the Sigil server and its operator CLI.

/// `println!` for a CLI whose output may go to a pipe that closes early (`sigil ... | head`):
/// std's panics on the write error; this one ends quietly when the reader has gone, and with
/// status 1 on any other failed write. Declared before the modules, so it is theirs too.
macro_rules! println {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            eprintln!("error: writing the output: {e}");
            std::process::exit(1);
        }
    }};
}

mod audit;
mod cases;
mod cli;
mod client;
mod commands;
mod compliance;
mod device;
mod disclosure;
mod foreign;
mod monitor;
mod policy;
mod release;
mod rollout;
mod session;
mod vuln;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_tracing(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(cli: &cli::Cli) {
    let default = if matches!(cli.command, cli::Command::Serve(_) | cli::Command::Init(_)) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SIGIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
