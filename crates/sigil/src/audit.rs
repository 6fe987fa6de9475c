//! `sigil audit ...` and `sigil evidence ...`: reading the log through the API, and verifying
//! exports and bundles offline, with nothing but the file and the log's public key.

use std::io::BufReader;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use reqwest::Method;
use serde_json::{Value, json};

use sigil_audit::LogVerifier;

use crate::cli::{AuditCommand, AuditFilter, ClientArgs, EvidenceCommand};
use crate::client::ApiClient;
use crate::commands::urlencode;

pub async fn audit(cmd: AuditCommand) -> Result<()> {
    match cmd {
        AuditCommand::Tail {
            limit,
            follow,
            filter,
            client,
        } => tail(limit, follow, &filter, &client).await,
        AuditCommand::Search {
            filter,
            after,
            limit,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let mut query = filter_query(&filter);
            query.push(format!("limit={limit}"));
            if let Some(after) = after {
                query.push(format!("after={after}"));
            }
            let entries = fetch(&api, &query).await?;
            print_entries(&client, &entries);
            if let (false, true, Some(last)) = (
                client.json,
                entries.len() == limit as usize,
                entries.last().and_then(|e| e["seq"].as_u64()),
            ) {
                eprintln!("more: --after {last}");
            }
            Ok(())
        }
        AuditCommand::Checkpoint { sign, out, client } => {
            let api = ApiClient::from_args(&client)?;
            let method = if sign { Method::POST } else { Method::GET };
            let note = api.text(method, "/api/v1/audit/checkpoint").await?;
            match out {
                Some(path) => {
                    std::fs::write(&path, &note)
                        .with_context(|| format!("writing {}", path.display()))?;
                    let size = note.lines().nth(1).unwrap_or("?");
                    println!("checkpoint of {size} entries -> {}", path.display());
                }
                None => print!("{note}"),
            }
            Ok(())
        }
        AuditCommand::Export { out, client } => {
            let api = ApiClient::from_args(&client)?;
            let bytes = api.download("/api/v1/audit/export", &out).await?;
            println!("wrote {} ({bytes} bytes)", out.display());
            Ok(())
        }
        AuditCommand::Verify {
            file,
            log_key,
            checkpoint,
            json,
        } => verify(&file, &log_key, checkpoint.as_deref(), json),
    }
}

pub async fn evidence(cmd: EvidenceCommand) -> Result<()> {
    match cmd {
        EvidenceCommand::Export {
            since,
            until,
            out,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let mut query = Vec::new();
            for (k, v) in [("since", since), ("until", until)] {
                if let Some(v) = v {
                    query.push(format!("{k}={}", urlencode(&v)));
                }
            }
            let bytes = api
                .download(&format!("/api/v1/evidence?{}", query.join("&")), &out)
                .await?;
            println!("wrote evidence bundle {} ({bytes} bytes)", out.display());
            Ok(())
        }
        EvidenceCommand::Verify {
            file,
            log_key,
            json,
        } => {
            let verifier = load_verifier(&log_key)?;
            let archive =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let report = sigil_audit::evidence::verify_bundle(&archive, &verifier)
                .with_context(|| format!("{}: verification FAILED", file.display()))?;
            if json {
                let out = json!({
                    "ok": true, "origin": report.origin,
                    "since": report.period.since, "until": report.period.until,
                    "checkpoint_size": report.checkpoint.size, "entries": report.entries,
                    "files": report.files,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!(
                    "OK: evidence bundle of log {} for {} .. {}",
                    report.origin, report.period.since, report.period.until
                );
                println!(
                    "  {} audit entries, each proven included in the signed checkpoint of {} entries",
                    report.entries, report.checkpoint.size
                );
                println!(
                    "  {} files match the signed manifest: {}",
                    report.files.len(),
                    report.files.join(", ")
                );
            }
            Ok(())
        }
    }
}

/// The verifier key given on the command line, or read from the file it names.
fn load_verifier(arg: &str) -> Result<LogVerifier> {
    let path = Path::new(arg);
    let text = if path.is_file() {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    } else {
        arg.to_owned()
    };
    LogVerifier::new(text.trim()).with_context(|| {
        format!("--log-key: `{arg}` is neither a verifier key (<origin>+<id>+<key>) nor a file holding one")
    })
}

fn verify(file: &Path, log_key: &str, kept: Option<&Path>, json: bool) -> Result<()> {
    let verifier = load_verifier(log_key)?;
    let kept = kept
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display())))
        .transpose()?;
    let reader = BufReader::new(
        std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?,
    );
    let report = sigil_audit::export::verify_export_from(reader, &verifier, kept.as_deref())
        .with_context(|| format!("{}: cannot verify", file.display()))?;
    let latest = report.latest_verified.as_ref().map(|c| c.size);
    if json {
        let out = json!({
            "ok": report.is_ok(),
            "origin": report.origin,
            "entries": report.size,
            "root": report.root.map(|r| r.to_string()),
            "checkpoints_verified": report.checkpoints_matched,
            "latest_verified_size": latest,
            "problems": report.problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for problem in &report.problems {
            println!("PROBLEM: {problem}");
        }
    }
    if let Some(first) = report.problems.first() {
        bail!(
            "{}: verification FAILED ({} problem(s)); first: {first}",
            file.display(),
            report.problems.len()
        );
    }
    if !json {
        println!(
            "OK: {} entries of log {}; {} signed checkpoint(s) reproduced",
            report.size, report.origin, report.checkpoints_matched
        );
        if let Some(kept) = &kept {
            let size = kept.lines().nth(1).unwrap_or("?");
            println!("  consistent with your checkpoint of {size} entries");
        }
        match latest {
            Some(s) if s < report.size => println!(
                "  note: entries {s}..{} are after the newest signed checkpoint and only hash-chained",
                report.size - 1
            ),
            None => println!(
                "  warning: no signed checkpoint in the export; the entries are only self-consistent"
            ),
            _ => {}
        }
    }
    Ok(())
}

fn filter_query(filter: &AuditFilter) -> Vec<String> {
    let mut query = Vec::new();
    for (k, v) in [
        ("since", &filter.since),
        ("until", &filter.until),
        ("actor", &filter.actor),
        ("device", &filter.device),
        ("action", &filter.action),
    ] {
        if let Some(v) = v {
            query.push(format!("{k}={}", urlencode(v)));
        }
    }
    query
}

async fn fetch(api: &ApiClient, query: &[String]) -> Result<Vec<Value>> {
    let list = api
        .get(&format!("/api/v1/audit/entries?{}", query.join("&")))
        .await?;
    Ok(list
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

async fn tail(limit: u32, follow: bool, filter: &AuditFilter, client: &ClientArgs) -> Result<()> {
    let api = ApiClient::from_args(client)?;
    let mut query = filter_query(filter);
    query.push(format!("limit={limit}"));
    query.push("order=desc".into());
    let mut entries = fetch(&api, &query).await?;
    entries.reverse();
    if !follow {
        print_entries(client, &entries);
        return Ok(());
    }
    let mut last = entries.last().and_then(|e| e["seq"].as_u64());
    for e in &entries {
        print_line(client, e);
    }
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut query = filter_query(filter);
        query.push("limit=500".into());
        if let Some(last) = last {
            query.push(format!("after={last}"));
        }
        for e in fetch(&api, &query).await? {
            print_line(client, &e);
            last = e["seq"].as_u64().or(last);
        }
    }
}

const COLUMNS: [&str; 6] = ["SEQ", "TIME", "ACTOR", "ACTION", "SUBJECT", "OUTCOME"];

fn row(e: &Value) -> [String; 6] {
    let s = |v: &Value| {
        v.as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string())
    };
    [
        s(&e["seq"]),
        s(&e["time"]),
        format!("{}:{}", s(&e["actor"]["kind"]), s(&e["actor"]["id"])),
        s(&e["action"]),
        s(&e["subject"]),
        s(&e["outcome"]),
    ]
}

/// Entries as a table, or as JSON Lines (one canonical entry per line) with `--json`.
fn print_entries(client: &ClientArgs, entries: &[Value]) {
    if client.json {
        for e in entries {
            println!("{e}");
        }
        return;
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(COLUMNS);
    for e in entries {
        table.add_row(row(e));
    }
    println!("{table}");
}

fn print_line(client: &ClientArgs, e: &Value) {
    if client.json {
        println!("{e}");
    } else {
        println!("{}", row(e).join("  "));
    }
}
