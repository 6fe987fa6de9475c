//! Device commands beyond the basics: editing a device's descriptive fields.

use anyhow::{Result, bail};
use clap::Args;
use serde_json::{Map, Value, json};

use crate::cli::ClientArgs;
use crate::client::ApiClient;
use crate::commands::{print_record, urlencode};

#[derive(Debug, Args)]
pub struct EditArgs {
    pub id: String,
    #[arg(long)]
    pub owner: Option<String>,
    #[arg(long)]
    pub site: Option<String>,
    #[arg(long)]
    pub hardware_id: Option<String>,
    /// The device's tags, replacing the ones it has (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Clear a field: owner, site, hardware-id or tags (repeatable).
    #[arg(long, value_parser = ["owner", "site", "hardware-id", "tags"])]
    pub clear: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `sigil device edit`: one merge patch with the fields named.
pub async fn edit(args: EditArgs) -> Result<()> {
    let mut patch = Map::new();
    for (field, value) in [
        ("owner", args.owner),
        ("site", args.site),
        ("hardware_id", args.hardware_id),
    ] {
        if let Some(v) = value {
            patch.insert(field.to_owned(), json!(v));
        }
    }
    if !args.tags.is_empty() {
        patch.insert("tags".to_owned(), json!(args.tags));
    }
    for field in &args.clear {
        let field = field.replace('-', "_");
        if patch.contains_key(&field) {
            bail!("--clear {field} and a new value for it cannot go together");
        }
        patch.insert(field, Value::Null);
    }
    if patch.is_empty() {
        bail!("nothing to change: give --owner, --site, --hardware-id, --tag or --clear");
    }
    let api = ApiClient::from_args(&args.client)?;
    let device = api
        .patch(
            &format!("/api/v1/devices/{}", urlencode(&args.id)),
            &Value::Object(patch),
        )
        .await?;
    print_record(&args.client, &device)
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A CSV file with a header row: product (id or exact name), serial_number, and any of
    /// hardware_id, owner, site, tags (separated by `;`), firmware_version.
    pub file: std::path::PathBuf,
    /// Check the file and show what it would do, writing nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `sigil device import`: the report, each problem with its line; fails if there were any.
pub async fn import(args: ImportArgs) -> Result<()> {
    let api = ApiClient::from_args(&args.client)?;
    let path = format!("/api/v1/devices/import?dry_run={}", args.dry_run);
    let (status, report) = api.upload_for_report(&path, &args.file, "text/csv").await?;
    if args.client.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for e in report["errors"].as_array().into_iter().flatten() {
            let column = e["column"]
                .as_str()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default();
            println!(
                "line {}{column}: {}",
                e["line"],
                e["message"].as_str().unwrap_or_default()
            );
        }
        if let Some(more) = report["unreported_errors"].as_u64().filter(|n| *n > 0) {
            println!("... and {more} more problems");
        }
        let valid = report["valid"].as_u64().unwrap_or(0);
        match status {
            200 => println!("dry run: {valid} devices would be registered"),
            201 => println!("registered {} devices", report["created"]),
            _ => println!("nothing was imported"),
        }
    }
    let problems = report["errors"].as_array().is_some_and(|e| !e.is_empty());
    if status >= 300 || problems {
        bail!("the file has problems (listed above)");
    }
    Ok(())
}

/// Which devices, in which order: the filters `device list` and `device export` share.
#[derive(Debug, Args)]
pub struct ViewArgs {
    #[arg(long)]
    pub state: Option<String>,
    #[arg(long)]
    pub product: Option<String>,
    #[arg(long)]
    pub site: Option<String>,
    #[arg(long)]
    pub tag: Option<String>,
    /// A device id, or the start of a serial number or hardware id (case-sensitive).
    #[arg(long)]
    pub search: Option<String>,
    /// created (default) or serial; a leading `-` reverses (`--sort=-serial`).
    #[arg(long, allow_hyphen_values = true)]
    pub sort: Option<String>,
    /// Only devices whose compliance is this (pass, fail, unknown, not-applicable): with every
    /// framework, or with --framework.
    #[arg(long)]
    pub compliance: Option<String>,
    /// The framework --compliance is judged against (eu-cra, etsi-en-303-645, ...).
    #[arg(long, requires = "compliance")]
    pub framework: Option<String>,
}

impl ViewArgs {
    /// The API's query parameters for this view.
    pub fn query(&self) -> Vec<String> {
        [
            ("state", &self.state),
            ("product", &self.product),
            ("site", &self.site),
            ("tag", &self.tag),
            ("q", &self.search),
            ("sort", &self.sort),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", urlencode(v))))
        .chain(self.compliance.as_ref().map(|status| {
            let value = match &self.framework {
                Some(f) => format!("{f}:{status}"),
                None => status.clone(),
            };
            format!("compliance={}", urlencode(&value))
        }))
        .collect()
    }
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub view: ViewArgs,
    /// Where to write the CSV (written whole, then renamed into place).
    #[arg(long)]
    pub out: std::path::PathBuf,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `sigil device export`: every device of the view, as the import reads it.
pub async fn export(args: ExportArgs) -> Result<()> {
    let api = ApiClient::from_args(&args.client)?;
    let query = args.view.query();
    let bytes = api
        .download(
            &format!("/api/v1/devices/export?{}", query.join("&")),
            &args.out,
        )
        .await?;
    eprintln!("wrote {} ({bytes} bytes)", args.out.display());
    Ok(())
}

/// `sigil device updates`: the device's firmware and its part in each rollout.
pub async fn updates(id: &str, client: &ClientArgs) -> Result<()> {
    let api = ApiClient::from_args(client)?;
    let updates = api
        .get(&format!("/api/v1/devices/{}/updates", urlencode(id)))
        .await?;
    if !client.json {
        let firmware = updates["firmware_version"].as_str().unwrap_or("unknown");
        println!("firmware {firmware}");
    }
    crate::commands::print(
        client,
        &updates,
        &[
            ("release_version", "RELEASE"),
            ("status", "THIS DEVICE"),
            ("rollout_state", "ROLLOUT"),
            ("reason", "WHY"),
            ("updated_at", "UPDATED"),
        ],
        true,
    )
}
