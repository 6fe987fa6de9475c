//! `sigil release`: artefacts and releases, each product's update channel, and offline
//! signing with key files the server never sees.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use sigil_update::tuf::{Ed25519Signer, PublicKey, Role, Root, Signer, Targets, canonical_json};

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
        /// Sign without asking (for automation that checked the documents otherwise).
        #[arg(long)]
        yes: bool,
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
            yes,
            client,
        } => sign(&product, &key, yes, &client).await,
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
async fn sign(product: &str, key: &Path, yes: bool, client: &ClientArgs) -> Result<()> {
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
        if !confirmed(yes)? {
            bail!("not signed");
        }
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

/// Check the bytes to sign are exactly the canonical form of a document of the claimed role
/// and version (no unknown field, no other `_type`: a root cannot pass as targets), and print
/// what signing it vouches for.
fn describe(role: &str, version: u64, canonical: &str) -> Result<()> {
    let value: Value =
        serde_json::from_str(canonical).context("the server sent a document that is not JSON")?;
    if value["_type"].as_str() != Some(role) {
        bail!(
            "the server calls this {role} metadata but it is {}; refusing to sign it",
            value["_type"]
        );
    }
    let same = |bytes: Vec<u8>| -> Result<()> {
        if bytes != canonical.as_bytes() {
            bail!(
                "the server sent {role} version {version} with fields Sigil does not write, or not in canonical form; refusing to sign it"
            );
        }
        Ok(())
    };
    match role {
        "targets" => {
            let doc: Targets = serde_json::from_value(value).context("not a targets document")?;
            same(canonical_json(&doc))?;
            if doc.version != version || doc.kind != Role::Targets {
                bail!(
                    "the targets document is version {}, not {version}",
                    doc.version
                );
            }
            println!(
                "targets version {version} (spec {}), expires {}:",
                doc.spec_version, doc.expires
            );
            for (name, file) in &doc.targets {
                let custom = file.custom.as_ref();
                println!(
                    "  {name:?}  version {:?}  security {}  {} bytes  sha256 {}",
                    custom.and_then(|c| c["version"].as_str()).unwrap_or("-"),
                    custom
                        .and_then(|c| c["security"].as_bool())
                        .unwrap_or(false),
                    file.length,
                    file.hashes.get("sha256").map_or("-", String::as_str)
                );
            }
        }
        "root" => {
            let doc: Root = serde_json::from_value(value).context("not a root document")?;
            same(canonical_json(&doc))?;
            if doc.version != version || doc.kind != Role::Root {
                bail!(
                    "the root document is version {}, not {version}",
                    doc.version
                );
            }
            println!(
                "root version {version} (spec {}), expires {}:",
                doc.spec_version, doc.expires
            );
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
            "the server asks for a signature on {other:?} metadata, which is never signed offline"
        ),
    }
    Ok(())
}

/// Ask before signing, unless `--yes`.
fn confirmed(yes: bool) -> Result<bool> {
    if yes {
        return Ok(true);
    }
    eprint!("sign this? [y/N] ");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .context("reading the answer")?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sigil_update::tuf::repository::{self, RoleAssignment};

    #[test]
    fn a_signer_refuses_what_is_not_the_role_and_form_it_claims() {
        let (k, _) = Ed25519Signer::generate().unwrap();
        let keys: Vec<Ed25519Signer> = (0..4)
            .map(|_| Ed25519Signer::generate().unwrap().0)
            .collect();
        let expires = time::OffsetDateTime::now_utc() + time::Duration::days(1);
        let roles: Vec<RoleAssignment<'_>> = Role::ALL
            .iter()
            .zip(&keys)
            .map(|(role, key)| RoleAssignment {
                role: *role,
                keys: vec![key.public_key()],
                threshold: 1,
            })
            .collect();
        let root = repository::root(2, expires, &roles).unwrap();
        let root_text = String::from_utf8(canonical_json(&root)).unwrap();
        // A root presented as targets.
        assert!(describe("targets", 2, &root_text).is_err());
        describe("root", 2, &root_text).unwrap();
        assert!(describe("root", 3, &root_text).is_err());
        // A targets document with a field Sigil does not write (a root's, say) is refused.
        let targets = repository::targets(1, expires, Default::default());
        let mut value = serde_json::to_value(&targets).unwrap();
        value["keys"] = serde_json::json!({k.key_id(): k.public_key()});
        let smuggled = String::from_utf8(canonical_json(&value)).unwrap();
        assert!(describe("targets", 1, &smuggled).is_err());
        // Not canonical (spaces) is refused; the canonical form passes.
        let spaced = serde_json::to_string_pretty(&targets).unwrap();
        assert!(describe("targets", 1, &spaced).is_err());
        describe(
            "targets",
            1,
            &String::from_utf8(canonical_json(&targets)).unwrap(),
        )
        .unwrap();
        assert!(describe("timestamp", 1, "{}").is_err());
    }
}
