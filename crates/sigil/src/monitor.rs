//! `sigil monitor` and `sigil alarm`: behaviour monitoring's status and security profiles,
//! quarantine, and the alarms the detector raised.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::cli::ClientArgs;
use crate::client::ApiClient;
use crate::commands::{print, print_record, urlencode};

#[derive(Debug, Subcommand)]
pub enum MonitorCommand {
    /// What the detector has done since the server started: datapoints, refusals, alarms.
    Status {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The security profiles in force (JSON), or write them to a file to edit.
    Profiles {
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Apply a security profile document (validated whole, versioned, audited).
    Apply {
        file: PathBuf,
        #[arg(long, default_value = "")]
        comment: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Quarantine a device: it keeps its connection and its quarantine topic, nothing else.
    Quarantine {
        device: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Take a device out of quarantine (needs a second factor).
    Release {
        device: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A device's monitoring state: quarantine, last metrics, active alarms.
    Device {
        device: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum AlarmCommand {
    /// Alarms, newest first (every page).
    List {
        #[arg(long)]
        device: Option<String>,
        /// Only active alarms.
        #[arg(long, conflicts_with = "cleared")]
        active: bool,
        /// Only cleared alarms.
        #[arg(long)]
        cleared: bool,
        /// Only alarms nobody decided on.
        #[arg(long)]
        undecided: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// One alarm, with its explanation.
    Show {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Acknowledge an alarm, or judge it a false positive (the detector learns from it).
    Decide {
        id: String,
        /// `acknowledged` or `false-positive`.
        #[arg(long)]
        decision: String,
        #[arg(long, default_value = "")]
        note: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

const ALARM_COLUMNS: &[(&str, &str)] = &[
    ("id", "ID"),
    ("device_id", "DEVICE"),
    ("behaviour", "BEHAVIOUR"),
    ("severity", "SEVERITY"),
    ("state", "STATE"),
    ("raised_at", "RAISED"),
    ("mitigation", "MITIGATION"),
];

pub async fn monitor(cmd: MonitorCommand) -> Result<()> {
    match cmd {
        MonitorCommand::Status { client } => {
            let api = ApiClient::from_args(&client)?;
            print_record(&client, &api.get("/api/v1/monitoring/status").await?)
        }
        MonitorCommand::Profiles { out, client } => {
            let api = ApiClient::from_args(&client)?;
            let answer = api.get("/api/v1/monitoring/profiles").await?;
            let document = serde_json::to_string_pretty(&answer["document"])?;
            match out {
                Some(path) => {
                    std::fs::write(&path, format!("{document}\n"))
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!(
                        "version {} written to {}",
                        answer["version"],
                        path.display()
                    );
                }
                None => println!("{document}"),
            }
            Ok(())
        }
        MonitorCommand::Apply {
            file,
            comment,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let document: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let path = format!(
                "/api/v1/monitoring/profiles?comment={}",
                urlencode(&comment)
            );
            let answer = api.put(&path, &document).await?;
            println!("security profiles version {} in force", answer["version"]);
            Ok(())
        }
        MonitorCommand::Quarantine {
            device,
            reason,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let path = format!("/api/v1/devices/{}/quarantine", urlencode(&device));
            print_record(&client, &api.post(&path, &json!({"reason": reason})).await?)
        }
        MonitorCommand::Release {
            device,
            reason,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let path = format!("/api/v1/devices/{}/release", urlencode(&device));
            print_record(&client, &api.post(&path, &json!({"reason": reason})).await?)
        }
        MonitorCommand::Device { device, client } => {
            let api = ApiClient::from_args(&client)?;
            let path = format!("/api/v1/devices/{}/monitoring", urlencode(&device));
            let answer = api.get(&path).await?;
            if client.json {
                return print_record(&client, &answer);
            }
            println!(
                "quarantined since: {}",
                answer["quarantined_since"]
                    .as_str()
                    .unwrap_or("not quarantined")
            );
            println!(
                "last metrics at:   {}",
                answer["last_metrics_at"].as_str().unwrap_or("none")
            );
            println!(
                "last report at:    {}",
                answer["last_report_at"].as_str().unwrap_or("never")
            );
            print(
                &client,
                &json!({"items": answer["active_alarms"]}),
                ALARM_COLUMNS,
                true,
            )
        }
    }
}

pub async fn alarm(cmd: AlarmCommand) -> Result<()> {
    match cmd {
        AlarmCommand::List {
            device,
            active,
            cleared,
            undecided,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let mut query = vec!["limit=500".to_owned()];
            if let Some(d) = device {
                query.push(format!("device={}", urlencode(&d)));
            }
            if active {
                query.push("condition=active".into());
            }
            if cleared {
                query.push("condition=cleared".into());
            }
            if undecided {
                query.push("undecided=true".into());
            }
            let mut items = Vec::new();
            let mut before: Option<String> = None;
            loop {
                let mut q = query.clone();
                if let Some(b) = &before {
                    q.push(format!("before={}", urlencode(b)));
                }
                let page = api.get(&format!("/api/v1/alarms?{}", q.join("&"))).await?;
                items.extend(page["items"].as_array().cloned().unwrap_or_default());
                match page["next_cursor"].as_str() {
                    Some(next) => before = Some(next.to_owned()),
                    None => break,
                }
            }
            print(&client, &json!({"items": items}), ALARM_COLUMNS, true)
        }
        AlarmCommand::Show { id, client } => {
            let api = ApiClient::from_args(&client)?;
            let answer = api
                .get(&format!("/api/v1/alarms/{}", urlencode(&id)))
                .await?;
            if !client.json
                && let Some(summary) = answer["explanation"]["summary"].as_str()
            {
                println!("{summary}");
            }
            print_record(&client, &answer)
        }
        AlarmCommand::Decide {
            id,
            decision,
            note,
            client,
        } => {
            let decision = match decision.as_str() {
                "acknowledged" => "acknowledged",
                "false-positive" | "false_positive" => "false_positive",
                other => bail!("--decision {other:?}: acknowledged or false-positive"),
            };
            let api = ApiClient::from_args(&client)?;
            let path = format!("/api/v1/alarms/{}/decision", urlencode(&id));
            print_record(
                &client,
                &api.post(&path, &json!({"decision": decision, "note": note}))
                    .await?,
            )
        }
    }
}
