//! Verified software updates on the device: the product's TUF repository is refreshed from
//! the pinned root (tough), the target is checked against the signed length and hashes as it
//! streams into the inactive slot, a downgrade is refused unless asked for, and the slot
//! switch is atomic with a health deadline (see [`install`]).

mod assignment;
pub mod install;
mod transport;
mod verify;

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};
use sigil_update::{ReleaseVersion, VersionScheme};

use crate::client::{Credential, EstClient};
use crate::error::{AgentError, state_err};
use crate::state::StateDir;
pub use assignment::{Followed, follow_assignment};
pub use install::{InstallOptions, Installed, describe_installed};

#[derive(Debug, Clone)]
pub struct UpdateOptions {
    /// The TUF target to install, e.g. `1.4.2/firmware.bin`.
    pub target: String,
    pub install: InstallOptions,
    /// Install even if the target is not newer than what is installed (a rollback the
    /// operator asked for).
    pub allow_downgrade: bool,
}

/// The product's repository as the device pinned it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Channel {
    product_id: String,
    /// Absolute URL of the repository (ends with `/`).
    repository: String,
}

fn tuf_dir(state: &StateDir) -> std::path::PathBuf {
    state.root().join("tuf")
}

/// Learn and pin the product's update root over mTLS, if not pinned yet. The pinned root
/// never changes here: later roots reach the device only through TUF's signed chain.
pub async fn pin_channel(state: &StateDir) -> Result<(), AgentError> {
    let dir = tuf_dir(state);
    if dir.join("root.json").exists() && dir.join("channel.json").exists() {
        return Ok(());
    }
    let client = device_client(state)?;
    let answer = client.get_json("/api/v1/device/update-channel").await?;
    let (Some(product), Some(path), Some(root)) = (
        answer["product_id"].as_str(),
        answer["repository"].as_str(),
        answer["root"].as_str(),
    ) else {
        return Err(AgentError::BadAnswer(
            "update channel answer lacks a field".into(),
        ));
    };
    if !path.starts_with("/tuf/") {
        return Err(AgentError::BadAnswer(format!(
            "unexpected repository path {path}"
        )));
    }
    let channel = Channel {
        product_id: product.to_owned(),
        repository: format!("{}{path}", client.server()),
    };
    std::fs::create_dir_all(&dir).map_err(|e| state_err("tuf", e))?;
    // A root already pinned (and perhaps advanced by verified rotations) is never replaced
    // by what the server says now.
    if !dir.join("root.json").exists() {
        crate::state::write_atomic(&dir.join("root.json"), root.as_bytes())?;
    }
    let json = serde_json::to_vec_pretty(&channel).map_err(|e| state_err("channel.json", e))?;
    crate::state::write_atomic(&dir.join("channel.json"), &json)
}

fn device_client(state: &StateDir) -> Result<EstClient, AgentError> {
    let config = state.config()?;
    let current = state.current()?.ok_or(AgentError::NotEnrolled)?;
    let credential = Credential::Certificate {
        identity_pem: format!("{}\n{}", current.key_pem, current.cert_pem),
    };
    EstClient::new(&config.server, &state.ca_pem()?, &credential)
}

/// Download, verify and install `opts.target`. Returns what is installed afterwards.
pub async fn update(state: &StateDir, opts: &UpdateOptions) -> Result<Installed, AgentError> {
    update_reporting(state, opts, None).await
}

/// [`update`], telling `reporter` when the verified download is being installed.
async fn update_reporting(
    state: &StateDir,
    opts: &UpdateOptions,
    reporter: Option<&assignment::Reporter>,
) -> Result<Installed, AgentError> {
    let _held = install::lock(&opts.install)?;
    install::recover(&opts.install).await?;
    pin_channel(state).await?;
    let dir = tuf_dir(state);
    let root = std::fs::read(dir.join("root.json")).map_err(|e| state_err("tuf/root.json", e))?;
    let channel: Channel = serde_json::from_slice(
        &std::fs::read(dir.join("channel.json")).map_err(|e| state_err("tuf/channel.json", e))?,
    )
    .map_err(|e| state_err("tuf/channel.json", e))?;
    let url = url::Url::parse(&channel.repository).map_err(|e| state_err("tuf/channel.json", e))?;
    let datastore = dir.join("datastore");
    std::fs::create_dir_all(&datastore).map_err(|e| state_err("tuf/datastore", e))?;
    let transport = transport::HttpsTransport {
        http: device_client(state)?.http().clone(),
    };
    let repo = verify::load(&root, &url, &datastore, transport).await?;
    // Trust starts from the newest verified root next time (TUF 5.3): a rotated-out key then
    // stays out, and tough's rollback cache survives the rotation.
    if repo.root().signed.version.get() > pinned_version(&root) {
        let newest = serde_json::to_vec(repo.root()).map_err(|e| state_err("tuf/root.json", e))?;
        crate::state::write_atomic(&dir.join("root.json"), &newest)?;
    }
    let (version, length, sha256) = verify::target_facts(&repo, &opts.target)?;
    if let Some(current) = install::installed(&opts.install).await? {
        refuse_downgrade(
            version.as_deref(),
            current.version.as_deref(),
            opts.allow_downgrade,
        )?;
    }
    let mut staging = install::begin(&opts.install, &opts.target).await?;
    verify::download(&repo, &opts.target, &mut staging).await?;
    if let Some(r) = reporter {
        r.progress("installing").await;
    }
    let record = Installed {
        target: opts.target.clone(),
        version,
        sha256,
        length,
    };
    install::finish(&opts.install, staging, &record).await?;
    Ok(record)
}

fn pinned_version(root: &[u8]) -> u64 {
    serde_json::from_slice::<serde_json::Value>(root)
        .ok()
        .and_then(|v| v["signed"]["version"].as_u64())
        .unwrap_or(0)
}

/// The agent's own downgrade rule, whatever the server says: a version must be newer than
/// the installed one under the scheme both parse in (semver, else integer).
fn refuse_downgrade(
    offered: Option<&str>,
    installed: Option<&str>,
    allowed: bool,
) -> Result<(), AgentError> {
    if allowed {
        return Ok(());
    }
    let (Some(offered), Some(installed)) = (offered, installed) else {
        return Ok(());
    };
    let newer = [VersionScheme::Semver, VersionScheme::Integer]
        .into_iter()
        .find_map(|scheme| {
            let a = ReleaseVersion::parse(scheme, offered).ok()?;
            let b = ReleaseVersion::parse(scheme, installed).ok()?;
            Some(a.precedence(&b) == Ordering::Greater)
        });
    match newer {
        Some(true) => Ok(()),
        _ => Err(AgentError::Downgrade {
            offered: offered.to_owned(),
            installed: installed.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_newer_versions_install_without_an_explicit_rollback() {
        assert!(refuse_downgrade(Some("1.2.0"), Some("1.1.9"), false).is_ok());
        assert!(refuse_downgrade(Some("10"), Some("9"), false).is_ok());
        for (offered, installed) in [
            ("1.1.0", "1.2.0"),
            ("1.2.0", "1.2.0"),
            ("1.2.0+b", "1.2.0+a"),
            ("9", "10"),
            ("1.0.0", "7"),
        ] {
            let e = refuse_downgrade(Some(offered), Some(installed), false).unwrap_err();
            assert_eq!(e.exit_code(), 97, "{offered} over {installed}");
        }
        assert!(refuse_downgrade(Some("1.1.0"), Some("1.2.0"), true).is_ok());
        assert!(refuse_downgrade(Some("1.1.0"), None, false).is_ok());
    }
}
