//! `sigil release`: artefacts and releases, each product's update channel, and offline
//! signing with key files the server never sees.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use sigil_update::tuf::{Ed25519Signer, PublicKey, Root, Signer, Targets, canonical_json};

use crate::cli::ClientArgs;
use crate::client::ApiClient;
use crate::commands::print;

#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    /// Generate an Ed25519 signing key for a root or targets role kept off the server:
    /// writes OUT (PKCS#8 PEM, mode 0600) and OUT.pub.json (the TUF public key to give
    /// `release init`). Keep OUT offline.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Create a product's update channel (its TUF repository). Without keys, root and
    /// targets are signed by online keys; with --root-key/--targets-key (public keys from
    /// `release keygen`), their documents wait for `release sign`.
    Init {
        #[arg(long)]
        product: String,
        /// `semver` (default) or `integer`.
        #[arg(long, default_value = "semver")]
        scheme: String,
        #[arg(long = "root-key")]
        root_keys: Vec<PathBuf>,
        #[arg(long)]
        root_threshold: Option<u32>,
        #[arg(long = "targets-key")]
        targets_keys: Vec<PathBuf>,
        #[arg(long)]
        targets_threshold: Option<u32>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Upload a file and create a release of a product from it.
    Upload {
        #[arg(long)]
        product: String,
        #[arg(long)]
        version: String,
        #[arg(long)]
        file: PathBuf,
        /// The file's name on the device (default: FILE's name).
        #[arg(long)]
        name: Option<String>,
        /// An SBOM of the release (stored beside it).
        #[arg(long)]
        sbom: Option<PathBuf>,
        /// A security release.
        #[arg(long)]
        security: bool,
        #[arg(long, default_value = "")]
        notes: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Rotate a role's keys: a new online key, or (root, targets) public keys kept off the
    /// server. The next root is cross-signed by the old and new root keys; offline ones sign
    /// with `release sign`.
    Rotate {
        #[arg(long)]
        product: String,
        /// root, targets, snapshot or timestamp.
        #[arg(long)]
        role: String,
        #[arg(long = "key")]
        keys: Vec<PathBuf>,
        #[arg(long)]
        threshold: Option<u32>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A product's releases.
    List {
        #[arg(long)]
        product: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A product's update channel: keys, current metadata, documents awaiting signatures.
    Status {
        #[arg(long)]
        product: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Sign the product's documents awaiting this key's signature, after showing them.
    Sign {
        #[arg(long)]
        product: String,
        /// The private key file (from `release keygen`).
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub async fn release(cmd: ReleaseCommand) -> Result<()> {
    match cmd {
        ReleaseCommand::Keygen { out } => keygen(&out),
        ReleaseCommand::Init {
            product,
            scheme,
            root_keys,
            root_threshold,
            targets_keys,
            targets_threshold,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let body = json!({
                "version_scheme": scheme,
                "root_keys": read_public_keys(&root_keys)?, "root_threshold": root_threshold,
                "targets_keys": read_public_keys(&targets_keys)?, "targets_threshold": targets_threshold,
            });
            let channel = api
                .post(&format!("/api/v1/products/{product}/update-channel"), &body)
                .await?;
            print_channel(&client, &channel)
        }
        ReleaseCommand::Upload {
            product,
            version,
            file,
            name,
            sbom,
            security,
            notes,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let artefact = api.upload("/api/v1/artefacts", &file).await?;
            let sbom_sha256 = match &sbom {
                Some(path) => Some(api.upload("/api/v1/artefacts", path).await?["sha256"].clone()),
                None => None,
            };
            let file_name = match name {
                Some(n) => n,
                None => file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .context("FILE has no usable name; pass --name")?
                    .to_owned(),
            };
            let body = json!({"version": version, "artefact_sha256": artefact["sha256"], "file_name": file_name,
                              "sbom_sha256": sbom_sha256, "security": security, "notes": notes});
            let release = api
                .post(&format!("/api/v1/products/{product}/releases"), &body)
                .await?;
            print(&client, &release, RELEASE_COLUMNS, false)
        }
        ReleaseCommand::Rotate {
            product,
            role,
            keys,
            threshold,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let body = json!({"rotations": [{"role": role, "keys": read_public_keys(&keys)?, "threshold": threshold}]});
            let channel = api
                .post(
                    &format!("/api/v1/products/{product}/update-channel/rotations"),
                    &body,
                )
                .await?;
            print_channel(&client, &channel)
        }
        ReleaseCommand::List { product, client } => {
            let api = ApiClient::from_args(&client)?;
            let list = api
                .get(&format!("/api/v1/products/{product}/releases"))
                .await?;
            print(&client, &list, RELEASE_COLUMNS, true)
        }
        ReleaseCommand::Status { product, client } => {
            let api = ApiClient::from_args(&client)?;
            let channel = api
                .get(&format!("/api/v1/products/{product}/update-channel"))
                .await?;
            print_channel(&client, &channel)
        }
        ReleaseCommand::Sign {
            product,
            key,
            client,
        } => sign(&product, &key, &client).await,
    }
}

const RELEASE_COLUMNS: &[(&str, &str)] = &[
    ("id", "ID"),
    ("version", "VERSION"),
    ("target_name", "TARGET"),
    ("length", "BYTES"),
    ("security", "SECURITY"),
    ("state", "STATE"),
];

fn print_channel(client: &ClientArgs, channel: &Value) -> Result<()> {
    if client.json {
        println!("{}", serde_json::to_string_pretty(channel)?);
        return Ok(());
    }
    println!(
        "repository: {}",
        channel["repository"].as_str().unwrap_or("-")
    );
    print(
        client,
        &json!({"items": channel["roles"]}),
        &[
            ("role", "ROLE"),
            ("threshold", "THRESHOLD"),
            ("online", "ONLINE"),
            ("keyids", "KEY IDS"),
        ],
        true,
    )?;
    print(
        client,
        &json!({"items": channel["metadata"]}),
        &[
            ("role", "PUBLISHED"),
            ("version", "VERSION"),
            ("expires_at", "EXPIRES"),
        ],
        true,
    )?;
    print(
        client,
        &json!({"items": channel["pending"]}),
        &[
            ("role", "AWAITING SIGNATURES"),
            ("version", "VERSION"),
            ("threshold", "THRESHOLD"),
            ("signed_by", "SIGNED BY"),
        ],
        true,
    )
}

fn keygen(out: &Path) -> Result<()> {
    let (signer, der) = Ed25519Signer::generate()?;
    let pem_text = pem::encode(&pem::Pem::new("PRIVATE KEY", der));
    write_new(out, pem_text.as_bytes(), 0o600)?;
    let public = out.with_extension("pub.json");
    let public_json = serde_json::to_string_pretty(signer.public_key())?;
    write_new(&public, public_json.as_bytes(), 0o644)?;
    println!(
        "key id {}\nprivate key {} (keep it offline)\npublic key {}",
        signer.key_id(),
        out.display(),
        public.display()
    );
    Ok(())
}

/// Create `path` (never overwrite a key) with `mode`.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| {
            format!(
                "creating {} (an existing file is never overwritten)",
                path.display()
            )
        })?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

fn read_public_keys(paths: &[PathBuf]) -> Result<Vec<Value>> {
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            let key = PublicKey::from_json(&text)
                .with_context(|| format!("{} is not a TUF public key", p.display()))?;
            Ok(serde_json::to_value(key)?)
        })
        .collect()
}

/// Sign every pending document this key may sign, after checking that what the server asks
/// to be signed is a well-formed document of the role and version it claims, and showing it.
async fn sign(product: &str, key: &Path, client: &ClientArgs) -> Result<()> {
    let text =
        std::fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?;
    let signer = Ed25519Signer::from_pem(&text)
        .with_context(|| format!("{} is not a signing key", key.display()))?;
    let keyid = signer.key_id();
    let api = ApiClient::from_args(client)?;
    let channel = api
        .get(&format!("/api/v1/products/{product}/update-channel"))
        .await?;
    let mut signatures = Vec::new();
    for doc in channel["pending"].as_array().into_iter().flatten() {
        let wanted = doc["keyids"]
            .as_array()
            .is_some_and(|ids| ids.iter().any(|i| i == keyid.as_str()));
        let done = doc["signed_by"]
            .as_array()
            .is_some_and(|ids| ids.iter().any(|i| i == keyid.as_str()));
        if !wanted || done {
            continue;
        }
        let role = doc["role"].as_str().unwrap_or_default();
        let version = doc["version"].as_u64().unwrap_or_default();
        let canonical = doc["canonical"].as_str().unwrap_or_default();
        describe(role, version, canonical)?;
        signatures.push(json!({"role": role, "version": version, "keyid": keyid,
                               "sig": hex::encode(signer.sign(canonical.as_bytes())?)}));
    }
    if signatures.is_empty() {
        bail!("nothing of product {product} awaits the signature of key {keyid}");
    }
    let after = api
        .post(
            &format!("/api/v1/products/{product}/update-channel/signatures"),
            &json!({"signatures": signatures}),
        )
        .await?;
    print_channel(client, &after)
}

/// Check the bytes to sign are the canonical form of a document of the claimed role and
/// version, and print what signing it vouches for.
fn describe(role: &str, version: u64, canonical: &str) -> Result<()> {
    let value: Value =
        serde_json::from_str(canonical).context("the server sent a document that is not JSON")?;
    if canonical_json(&value) != canonical.as_bytes() {
        bail!(
            "the server sent {role} version {version} in a form that is not canonical JSON; refusing to sign it"
        );
    }
    match role {
        "targets" => {
            let doc: Targets = serde_json::from_value(value).context("not a targets document")?;
            if doc.version != version {
                bail!(
                    "the targets document is version {}, not {version}",
                    doc.version
                );
            }
            println!("targets version {version}, expires {}:", doc.expires);
            for (name, file) in &doc.targets {
                println!(
                    "  {name}  {} bytes  sha256 {}",
                    file.length,
                    file.hashes.get("sha256").map_or("-", String::as_str)
                );
            }
        }
        "root" => {
            let doc: Root = serde_json::from_value(value).context("not a root document")?;
            if doc.version != version {
                bail!(
                    "the root document is version {}, not {version}",
                    doc.version
                );
            }
            println!("root version {version}, expires {}:", doc.expires);
            for (r, keys) in &doc.roles {
                println!(
                    "  {}: threshold {} of {}",
                    r.as_str(),
                    keys.threshold,
                    keys.keyids.join(", ")
                );
            }
        }
        other => bail!(
            "the server asks for a signature on {other} metadata, which is never signed offline"
        ),
    }
    Ok(())
}
