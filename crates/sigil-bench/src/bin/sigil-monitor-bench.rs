//! `cargo run --release -p sigil-bench --bin sigil-monitor-bench -- [--devices N] [--nats URL]`
//!
//! Behaviour monitoring: datapoints ingested per second by the detector with Sigil's default
//! profiles over N devices (default 10^5), side by side with the raw limit (a hash map counter
//! per device and metric: the least any per-device state costs); the same through the metrics
//! bus in process (sealed envelopes of 1000 datapoints, HMAC verified) and through NATS
//! JetStream (published with acknowledgement, consumed through a durable consumer, acknowledged
//! after applying), beside JetStream carrying the same bytes with no sealing or detection;
//! alarm latency (a flood published to its alarm out of the detector) p50 and p99; memory per
//! device once every device has state for its behaviours.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;

use sigil_authority::monitoring::{Batch, Envelope, Sealer};
use sigil_detect::{Datapoint, Detector, Metric, MetricsReport, ProfileSet};
use sigil_nats::{QueueConfig, WorkQueue};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 100_000)]
    devices: usize,
    /// Datapoints per device in the throughput runs.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// Floods whose alarm latency is measured.
    #[arg(long, default_value_t = 500)]
    floods: usize,
}

fn device(i: usize) -> String {
    format!("0191f2c0-0000-7000-8000-{i:012}")
}

/// A fleet's traffic: each device's messages each second, its report every tenth round.
fn traffic(devices: usize, rounds: usize) -> Vec<Datapoint> {
    let mut out = Vec::with_capacity(devices * rounds * 2);
    for r in 0..rounds {
        let at = 1_800_000_000_000 + r as i64 * 1000;
        for i in 0..devices {
            let d = device(i);
            out.push(Datapoint::number(&d, Metric::MessagesSent, at, 2.0));
            out.push(Datapoint::number(&d, Metric::MessageBytes, at, 180.0));
            if r % 10 == 0 {
                let report = MetricsReport {
                    bytes_out: 20_000,
                    listening_tcp_ports: vec![22, 8443],
                    destination_endpoints: vec![std::net::SocketAddr::from(([10, 0, 0, 5], 8883))],
                    ..MetricsReport::default()
                };
                out.extend(report.datapoints(&d, at));
            }
        }
    }
    out
}

fn resident_bytes() -> u64 {
    // /proc/self/statm: size resident ... (pages)
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

fn detector() -> Result<Detector> {
    Ok(Detector::new(ProfileSet::default_set()?))
}

fn ingest_all(d: &mut Detector, points: &[Datapoint]) -> usize {
    points
        .iter()
        .map(|p| d.ingest(p, "product-1", "site-1").len())
        .sum()
}

fn raw_limit(points: &[Datapoint]) -> f64 {
    let mut counters: HashMap<(String, Metric), f64> = HashMap::new();
    let started = Instant::now();
    for p in points {
        if let sigil_detect::Value::Number(n) = p.value {
            *counters.entry((p.device.clone(), p.metric)).or_default() += n;
        }
    }
    points.len() as f64 / started.elapsed().as_secs_f64()
}

fn batches(sealer: &Sealer, points: &[Datapoint]) -> Vec<Envelope> {
    points
        .chunks(1000)
        .map(|c| sealer.seal(&Batch::new("bench", 0, c.to_vec())))
        .collect()
}

/// Open and apply envelopes as the detector task does.
fn apply(sealer: &Sealer, d: &mut Detector, envelope: &Envelope) -> usize {
    match sealer.open(envelope) {
        Ok(batch) => ingest_all(d, &batch.points),
        Err(_) => 0,
    }
}

async fn jetstream(args: &Args, sealer: &Sealer, points: &[Datapoint], seal: bool) -> Result<f64> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut config = QueueConfig::new(&args.nats);
    config.stream = format!("SIGIL_BENCH_{run}");
    config.subject_prefix = format!("sigil-bench.{run}");
    let queue = WorkQueue::connect(config).await?;
    let envelopes = if seal {
        batches(sealer, points)
    } else {
        points
            .chunks(1000)
            .map(|c| Envelope {
                body: serde_json::to_vec(c).unwrap_or_default(),
                tag: Vec::new(),
            })
            .collect()
    };
    let mut d = detector()?;
    let started = Instant::now();
    let mut rx = queue.consume().await?;
    let publisher = async {
        for (i, e) in envelopes.iter().enumerate() {
            let tag = hex_tag(&e.tag);
            queue
                .publish(&device(i % 1000), &[("Sigil-Tag", &tag)], e.body.clone())
                .await?;
        }
        anyhow::Ok(())
    };
    let consumer = async {
        for _ in 0..envelopes.len() {
            let Some(m) = rx.recv().await else { break };
            if seal {
                let tag = m.header("Sigil-Tag").map(decode_hex).unwrap_or_default();
                apply(
                    sealer,
                    &mut d,
                    &Envelope {
                        body: m.payload.clone(),
                        tag,
                    },
                );
            }
            m.ack().await?;
        }
        anyhow::Ok(())
    };
    let (p, c) = tokio::join!(publisher, consumer);
    p?;
    c?;
    let rate = points.len() as f64 / started.elapsed().as_secs_f64();
    queue.delete_stream().await?;
    Ok(rate)
}

fn hex_tag(tag: &[u8]) -> String {
    tag.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(h: &str) -> Vec<u8> {
    (0..h.len() / 2)
        .filter_map(|i| u8::from_str_radix(h.get(i * 2..i * 2 + 2)?, 16).ok())
        .collect()
}

/// Each flood, published alone, to the moment the detector raises its alarm.
async fn latencies(args: &Args, sealer: &Sealer, via_nats: bool) -> Result<Vec<f64>> {
    let mut d = detector()?;
    let queue = if via_nats {
        let run = uuid::Uuid::new_v4().simple().to_string();
        let mut config = QueueConfig::new(&args.nats);
        config.stream = format!("SIGIL_BENCH_LAT_{run}");
        config.subject_prefix = format!("sigil-bench-lat.{run}");
        Some(WorkQueue::connect(config).await?)
    } else {
        None
    };
    let mut rx = match &queue {
        Some(q) => Some(q.consume().await?),
        None => None,
    };
    let (tx, mut local) = tokio::sync::mpsc::channel::<Envelope>(16);
    let mut out = Vec::with_capacity(args.floods);
    for i in 0..args.floods {
        let at = 1_800_000_000_000 + i as i64;
        let flood = Datapoint::number(device(i), Metric::MessagesSent, at, 500.0);
        let envelope = sealer.seal(&Batch::new("bench", at, vec![flood]));
        let started = Instant::now();
        let received = match (&queue, &mut rx) {
            (Some(q), Some(rx)) => {
                q.publish(
                    &device(i),
                    &[("Sigil-Tag", &hex_tag(&envelope.tag))],
                    envelope.body,
                )
                .await?;
                let m = rx
                    .recv()
                    .await
                    .ok_or_else(|| anyhow::anyhow!("stream closed"))?;
                let tag = m.header("Sigil-Tag").map(decode_hex).unwrap_or_default();
                let e = Envelope {
                    body: m.payload.clone(),
                    tag,
                };
                m.ack().await?;
                e
            }
            _ => {
                tx.send(envelope).await?;
                local
                    .recv()
                    .await
                    .ok_or_else(|| anyhow::anyhow!("channel closed"))?
            }
        };
        let raised = apply(sealer, &mut d, &received);
        out.push(started.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(raised == 1, "flood {i} raised {raised} alarms");
    }
    if let Some(q) = queue {
        q.delete_stream().await?;
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let sealer = Sealer::new(&[42; 32]);
    let points = traffic(args.devices, args.rounds);
    println!("devices: {}, datapoints: {}", args.devices, points.len());

    let raw = raw_limit(&points);
    let before = resident_bytes();
    let mut d = detector()?;
    let started = Instant::now();
    let alarms = ingest_all(&mut d, &points);
    let direct = points.len() as f64 / started.elapsed().as_secs_f64();
    let per_device = (resident_bytes().saturating_sub(before)) as f64 / args.devices as f64;
    println!("alarms on the well-behaved fleet: {alarms}");
    drop(d);

    let envelopes = batches(&sealer, &points);
    let mut d = detector()?;
    let started = Instant::now();
    for e in &envelopes {
        apply(&sealer, &mut d, e);
    }
    let in_process = points.len() as f64 / started.elapsed().as_secs_f64();
    drop(d);

    let js_raw = jetstream(&args, &sealer, &points, false).await?;
    let js = jetstream(&args, &sealer, &points, true).await?;

    println!("| path | datapoints/s | vs raw limit |");
    println!("|---|---:|---:|");
    println!("| raw limit: a counter per device and metric in a hash map | {raw:.0} | 1.00x |");
    println!(
        "| detector, default profiles (one thread) | {direct:.0} | {:.2}x |",
        raw / direct
    );
    println!(
        "| bus in process: sealed envelopes of 1000, HMAC verified, detector | {in_process:.0} | {:.2}x |",
        raw / in_process
    );
    println!(
        "| JetStream alone: same bytes published (acked) and consumed (acked) | {js_raw:.0} | {:.2}x |",
        raw / js_raw
    );
    println!(
        "| JetStream bus: sealed, published, consumed, verified, detector, acked | {js:.0} | {:.2}x |",
        raw / js
    );
    println!(
        "memory per device (resident, default profiles, state for every behaviour it used): {per_device:.0} bytes"
    );

    for (name, via_nats) in [("in process", false), ("JetStream", true)] {
        let l = latencies(&args, &sealer, via_nats).await?;
        println!(
            "alarm latency {name} (flood published -> alarm raised, {} floods): p50 {:.3} ms, p99 {:.3} ms",
            l.len(),
            pct(&l, 0.5),
            pct(&l, 0.99)
        );
    }
    Ok(())
}
