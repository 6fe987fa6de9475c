//! `sigil vulndb`, `sigil sbom` and `sigil vuln`: vulnerability feeds, product SBOMs, and the
//! findings they give.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

use crate::cli::ClientArgs;
use crate::client::ApiClient;
use crate::commands::print;

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
    /// Write the product's VEX (OpenVEX): every finding's status, and the fixed versions.
    Export {
        #[arg(long)]
        product: String,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum VulnCommand {
    /// Every known vulnerability in the components of a product's firmware versions.
    List {
        #[arg(long)]
        product: String,
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
    ("firmware_version", "FIRMWARE"),
    ("component", "COMPONENT"),
    ("component_version", "VERSION"),
    ("fixed", "FIXED IN"),
    ("known_exploited", "KEV"),
    ("epss", "EPSS"),
    ("devices", "DEVICES"),
    ("vex_status", "VEX"),
];

/// `value` as a query parameter: every byte but RFC 3986's unreserved ones percent-encoded.
fn query(value: &str) -> String {
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
        VulnCommand::List { product, client } => {
            let api = ApiClient::from_args(&client)?;
            let list = api
                .get(&format!("/api/v1/products/{product}/findings"))
                .await?;
            print(&client, &list, FINDING_COLUMNS, true)
        }
    }
}

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
            out,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let bytes = api
                .download(&format!("/api/v1/products/{product}/vex"), &out)
                .await?;
            println!("wrote {} ({bytes} bytes)", out.display());
            Ok(())
        }
    }
}
