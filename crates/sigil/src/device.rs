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
