//! `cargo run --release -p sigil-bench --bin sigil-policy-bench -- [--devices N] [--seconds S]`
//!
//! Cedar decisions per second and latency for the device decision (may device D publish to
//! topic T?) with the default policy set, over N distinct devices (default 10^5) in a mix of
//! states, on one thread and on every core. Each decision builds the request's entities from the
//! device's facts, as the broker hook does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Parser;

use sigil_policy::{DeviceFacts, OperatorContext, PolicyEngine, Principal, Target};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 100_000)]
    devices: usize,
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
}

fn fleet(n: usize) -> Vec<(Principal, Target, bool)> {
    (0..n)
        .map(|i| {
            let id = format!("0191f2c0-0000-7000-8000-{i:012}");
            let (state, cert) = match i % 20 {
                0 => ("suspended", "valid"),
                1 => ("active", "revoked"),
                _ => ("active", "valid"),
            };
            // Every fifth request is for another device's topic.
            let owner = if i % 5 == 0 {
                format!("other-{i}")
            } else {
                id.clone()
            };
            let allowed = i % 5 != 0 && state == "active" && cert == "valid";
            (
                Principal::Device(DeviceFacts {
                    id,
                    product: format!("product-{}", i % 50),
                    state: state.into(),
                    certificate_status: cert.into(),
                    compliance: "compliant".into(),
                    quarantined: false,
                }),
                Target::Topic(format!("devices/{owner}/telemetry/temperature")),
                allowed,
            )
        })
        .collect()
}

fn run(
    engine: &PolicyEngine,
    cases: &[(Principal, Target, bool)],
    secs: Duration,
    offset: usize,
) -> Result<(u64, Vec<Duration>)> {
    let ctx = OperatorContext::default();
    let start = Instant::now();
    let mut n = 0u64;
    let mut samples = Vec::new();
    let mut i = offset;
    while start.elapsed() < secs {
        let (p, t, want) = &cases[i % cases.len()];
        let t0 = Instant::now();
        let d = engine.decide(p, "publish", t, &ctx)?;
        if n.is_multiple_of(16) {
            samples.push(t0.elapsed());
        }
        anyhow::ensure!(d.allowed == *want, "wrong decision for case {i}: {d:?}");
        n += 1;
        i += 7919; // a prime stride: every device in turn, not in order
    }
    Ok((n, samples))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let secs = Duration::from_secs_f64(args.seconds);
    let engine = Arc::new(PolicyEngine::with_defaults()?);
    let cases = Arc::new(fleet(args.devices));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{} devices (5% suspended, 5% revoked; 20% of requests for another device's topic), {} default policies\n",
        args.devices,
        engine.policy_count()
    );
    println!("| threads | decisions/s | p50 µs | p99 µs |\n|---:|---:|---:|---:|");
    for threads in [1, cores] {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (engine, cases) = (engine.clone(), cases.clone());
                std::thread::spawn(move || run(&engine, &cases, secs, t * 104_729))
            })
            .collect();
        let mut total = 0;
        let mut samples = Vec::new();
        for h in handles {
            let (n, s) = h.join().map_err(|_| anyhow::anyhow!("thread panicked"))??;
            total += n;
            samples.extend(s);
        }
        samples.sort();
        let pct = |p: f64| {
            samples
                .get(((samples.len() as f64 * p) as usize).min(samples.len().saturating_sub(1)))
                .map_or(0.0, |d| d.as_secs_f64() * 1e6)
        };
        println!(
            "| {threads} | {:.0} | {:.1} | {:.1} |",
            total as f64 / secs.as_secs_f64(),
            pct(0.5),
            pct(0.99)
        );
    }
    Ok(())
}
