//! `sigil cert foreign`: certificates another CA issued to a device, imported for the
//! inventory and expiry tracking (never trusted).

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

use crate::cli::ClientArgs;
use crate::client::ApiClient;
use crate::commands::{print, print_record, urlencode};

#[derive(Debug, Subcommand)]
pub enum ForeignCommand {
    /// Import a PEM file of the device's certificates from another CA (1 to 64; a bundle
    /// with any CA, Sigil-issued or malformed certificate is refused whole).
    Import {
        #[arg(long)]
        device: String,
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The device's foreign certificates, soonest to expire first.
    List {
        #[arg(long)]
        device: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Forget one (by its SHA-256 fingerprint, as `list` shows it).
    Remove {
        #[arg(long)]
        device: String,
        sha256: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

const COLUMNS: &[(&str, &str)] = &[
    ("sha256", "SHA-256"),
    ("subject", "SUBJECT"),
    ("issuer", "ISSUER"),
    ("not_after", "NOT AFTER"),
    ("validity", "VALIDITY"),
];

pub async fn foreign(cmd: ForeignCommand) -> Result<()> {
    match cmd {
        ForeignCommand::Import {
            device,
            file,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let path = format!(
                "/api/v1/devices/{}/foreign-certificates",
                urlencode(&device)
            );
            let answer = api.upload(&path, &file).await?;
            print_record(&client, &answer)
        }
        ForeignCommand::List { device, client } => {
            let api = ApiClient::from_args(&client)?;
            let list = api
                .get(&format!(
                    "/api/v1/devices/{}/foreign-certificates",
                    urlencode(&device)
                ))
                .await?;
            print(&client, &list, COLUMNS, true)
        }
        ForeignCommand::Remove {
            device,
            sha256,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            api.text(
                reqwest::Method::DELETE,
                &format!(
                    "/api/v1/devices/{}/foreign-certificates/{}",
                    urlencode(&device),
                    urlencode(&sha256)
                ),
            )
            .await?;
            eprintln!("removed {sha256}");
            Ok(())
        }
    }
}
