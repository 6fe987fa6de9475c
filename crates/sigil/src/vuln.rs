//! `sigil vulndb`, `sigil sbom` and `sigil vuln`: vulnerability feeds, product SBOMs, and the
//! findings they give.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

use crate::cli::ClientArgs;
use crate::client::ApiClient;
use serde_json::{Value, json};

use crate::commands::{cell, print};

#[derive(Debug, Subcommand)]
pub enum VulndbCommand {
    /// Import a feed file: an OSV record (JSON), an OSV ecosystem archive (`all.zip`), CISA's
    /// KEV catalogue (JSON) or FIRST's EPSS scores (CSV). All or nothing.
    Import {
        file: PathBuf,
        /// `osv`, `osv-archive`, `kev` or `epss` (detected from the content if left out).
        #[arg(long)]
        kind: Option<String>,
        /// Where the file came from, kept with each record (default: its file name).
        #[arg(long)]
        source: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum SbomCommand {
    /// Upload the SBOM (CycloneDX 1.4-1.6 or SPDX 2.2/2.3 JSON) of a product's firmware version.
    Upload {
        #[arg(long)]
        product: String,
        /// The firmware version it describes.
        #[arg(long)]
        version: String,
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A product's SBOMs.
    List {
        #[arg(long)]
        product: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Write an SBOM out: as uploaded, or as CycloneDX 1.6 or SPDX 2.3 JSON.
    Export {
        id: String,
        #[arg(long, default_value = "original")]
        format: String,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum VexCommand {
    /// Record a VEX document (OpenVEX, CycloneDX VEX or CSAF 2.0 VEX JSON) for a product.
    Import {
        #[arg(long)]
        product: String,
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Write the product's VEX (OpenVEX or CSAF 2.0): every finding's status, and the fixed
    /// versions.
    Export {
        #[arg(long)]
        product: String,
        /// `openvex` or `csaf`.
        #[arg(long, default_value = "openvex")]
        format: String,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum VulnCommand {
    /// Every known vulnerability in the components of a product's firmware versions, or of
    /// the firmware one device runs, with its severity and remediation deadline.
    List {
        #[arg(long, required_unless_present = "device", conflicts_with = "device")]
        product: Option<String>,
        #[arg(long)]
        device: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// One vulnerability in a product: every component and firmware version it is in, the
    /// devices running them, its deadline, KEV, EPSS and VEX.
    Show {
        /// Any of its ids (CVE, GHSA, PYSEC, ...).
        vulnerability: String,
        #[arg(long)]
        product: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The remediation policy: days per severity. With options, change those days.
    Policy {
        #[arg(long)]
        critical: Option<u32>,
        #[arg(long)]
        high: Option<u32>,
        #[arg(long)]
        medium: Option<u32>,
        #[arg(long)]
        low: Option<u32>,
        #[arg(long)]
        none: Option<u32>,
        #[arg(long)]
        unknown: Option<u32>,
        /// For a vulnerability in CISA's KEV catalogue, whatever its severity.
        #[arg(long)]
        known_exploited: Option<u32>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

const SBOM_COLUMNS: &[(&str, &str)] = &[
    ("id", "ID"),
    ("firmware_version", "FIRMWARE"),
    ("format", "FORMAT"),
    ("spec_version", "SPEC"),
    ("components", "COMPONENTS"),
    ("created_at", "UPLOADED"),
];

const FINDING_COLUMNS: &[(&str, &str)] = &[
    ("vulnerability", "VULNERABILITY"),
    ("severity", "SEVERITY"),
    ("firmware_version", "FIRMWARE"),
    ("component", "COMPONENT"),
    ("component_version", "VERSION"),
    ("fixed", "FIXED IN"),
    ("remediation_due", "DUE"),
    ("known_exploited", "KEV"),
    ("epss", "EPSS"),
    ("devices", "DEVICES"),
    ("vex_status", "VEX"),
];

const POLICY_COLUMNS: &[(&str, &str)] = &[
    ("critical", "CRITICAL"),
    ("high", "HIGH"),
    ("medium", "MEDIUM"),
    ("low", "LOW"),
    ("none", "NONE"),
    ("unknown", "UNKNOWN"),
    ("known_exploited", "KNOWN EXPLOITED"),
];

/// `value` as a query parameter: every byte but RFC 3986's unreserved ones percent-encoded.
pub(crate) fn query(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn vulndb(cmd: VulndbCommand) -> Result<()> {
    match cmd {
        VulndbCommand::Import {
            file,
            kind,
            source,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let source = source.unwrap_or_else(|| {
                file.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "upload".into())
            });
            let mut path = format!("/api/v1/vulndb/imports?source={}", query(&source));
            if let Some(k) = kind {
                path.push_str(&format!("&kind={}", query(&k)));
            }
            let done = api.upload(&path, &file).await?;
            print(
                &client,
                &done,
                &[
                    ("kind", "KIND"),
                    ("records", "RECORDS"),
                    ("added", "ADDED"),
                    ("updated", "UPDATED"),
                    ("unchanged", "UNCHANGED"),
                ],
                false,
            )
        }
    }
}

pub async fn sbom(cmd: SbomCommand) -> Result<()> {
    match cmd {
        SbomCommand::Upload {
            product,
            version,
            file,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let path = format!(
                "/api/v1/products/{product}/sboms?version={}",
                query(&version)
            );
            let sbom = api.upload(&path, &file).await?;
            print(&client, &sbom, SBOM_COLUMNS, false)
        }
        SbomCommand::List { product, client } => {
            let api = ApiClient::from_args(&client)?;
            let list = api
                .get(&format!("/api/v1/products/{product}/sboms"))
                .await?;
            print(&client, &list, SBOM_COLUMNS, true)
        }
        SbomCommand::Export {
            id,
            format,
            out,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let bytes = api
                .download(
                    &format!("/api/v1/sboms/{id}?format={}", query(&format)),
                    &out,
                )
                .await?;
            println!("wrote {} ({bytes} bytes)", out.display());
            Ok(())
        }
    }
}

pub async fn vuln(cmd: VulnCommand) -> Result<()> {
    match cmd {
        VulnCommand::List {
            product,
            device,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let path = match (product, device) {
                (_, Some(d)) => format!("/api/v1/devices/{}/findings", query(&d)),
                (Some(p), None) => format!("/api/v1/products/{}/findings", query(&p)),
                (None, None) => anyhow::bail!("--product or --device"),
            };
            let list = api.get(&path).await?;
            print(&client, &list, FINDING_COLUMNS, true)
        }
        VulnCommand::Show {
            vulnerability,
            product,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let list = api
                .get(&format!("/api/v1/products/{}/findings", query(&product)))
                .await?;
            let items: Vec<Value> = list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|f| {
                    f["ids"]
                        .as_array()
                        .is_some_and(|ids| ids.iter().any(|i| i == vulnerability.as_str()))
                })
                .cloned()
                .collect();
            if items.is_empty() {
                anyhow::bail!("no finding of product {product} is {vulnerability}");
            }
            if client.json {
                return print(&client, &json!({ "items": items }), &[], true);
            }
            let first = &items[0];
            for key in [
                "vulnerability",
                "ids",
                "summary",
                "severity",
                "cvss_score",
                "known_exploited",
                "epss",
                "first_seen",
                "remediation_due",
            ] {
                println!("{key:>16}: {}", cell(first.get(key)));
            }
            print(&client, &json!({ "items": items }), SHOW_COLUMNS, true)
        }
        VulnCommand::Policy {
            critical,
            high,
            medium,
            low,
            none,
            unknown,
            known_exploited,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let mut policy = api.get("/api/v1/vuln-policy").await?;
            let changes = [
                ("critical", critical),
                ("high", high),
                ("medium", medium),
                ("low", low),
                ("none", none),
                ("unknown", unknown),
                ("known_exploited", known_exploited),
            ];
            if changes.iter().any(|(_, v)| v.is_some()) {
                for (key, days) in changes {
                    if let Some(d) = days {
                        policy[key] = json!(d);
                    }
                }
                policy = api.put("/api/v1/vuln-policy", &policy).await?;
            }
            print(&client, &policy, POLICY_COLUMNS, false)
        }
    }
}

const SHOW_COLUMNS: &[(&str, &str)] = &[
    ("firmware_version", "FIRMWARE"),
    ("component", "COMPONENT"),
    ("component_version", "VERSION"),
    ("fixed", "FIXED IN"),
    ("devices", "DEVICES"),
    ("overdue", "OVERDUE"),
    ("vex_status", "VEX"),
];

pub async fn vex(cmd: VexCommand) -> Result<()> {
    match cmd {
        VexCommand::Import {
            product,
            file,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let done = api
                .upload(&format!("/api/v1/products/{product}/vex"), &file)
                .await?;
            print(&client, &done, &[("statements", "STATEMENTS")], false)
        }
        VexCommand::Export {
            product,
            format,
            out,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let bytes = api
                .download(
                    &format!("/api/v1/products/{product}/vex?format={}", query(&format)),
                    &out,
                )
                .await?;
            println!("wrote {} ({bytes} bytes)", out.display());
            Ok(())
        }
    }
}
