//! The TUF client: tough, with the product's root pinned in the state directory, its cache of
//! the last trusted timestamp, snapshot and targets beside it (so a rollback is caught across
//! restarts), strict size limits, and every failure mapped to the attack it signals.

use std::path::Path;

use futures_util::StreamExt;
use tough::error::Error as TufError;
use tough::{ExpirationEnforcement, Limits, Repository, RepositoryLoader, TargetName};
use url::Url;

use super::install::Staging;
use super::transport::HttpsTransport;
use crate::error::{AgentError, Attack};

/// Metadata sizes a device accepts (targets.json grows with releases: 10^4 of them fit).
fn limits() -> Limits {
    Limits {
        max_root_size: 512 * 1024,
        max_targets_size: 16 * 1024 * 1024,
        max_timestamp_size: 16 * 1024,
        max_snapshot_size: 64 * 1024,
        max_root_updates: 64,
    }
}

/// Refresh the repository's metadata, verified from the pinned `root`.
pub async fn load(
    root: &[u8],
    repository: &Url,
    datastore: &Path,
    transport: HttpsTransport,
) -> Result<Repository, AgentError> {
    let join = |p: &str| {
        repository
            .join(p)
            .map_err(|e| AgentError::Usage(format!("repository URL: {e}")))
    };
    RepositoryLoader::new(&root, join("metadata/")?, join("targets/")?)
        .transport(transport)
        .limits(limits())
        .datastore(datastore)
        .expiration_enforcement(ExpirationEnforcement::Safe)
        .load()
        .await
        .map_err(refused)
}

/// A target's signed facts: its version (Sigil's `custom`), length and SHA-256.
pub fn target_facts(
    repo: &Repository,
    name: &str,
) -> Result<(Option<String>, u64, String), AgentError> {
    let name = TargetName::new(name).map_err(|e| AgentError::Usage(e.to_string()))?;
    let Some(target) = repo.targets().signed.targets.get(&name) else {
        return Err(AgentError::NoSuchTarget(name.raw().to_owned()));
    };
    let version = target
        .custom
        .get("version")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    Ok((version, target.length, hex::encode(&target.hashes.sha256)))
}

/// Stream target `name` into `staging`. Bytes tough later rejects are in the staging slot,
/// never installed: the caller installs only on `Ok`.
pub async fn download(
    repo: &Repository,
    name: &str,
    staging: &mut Staging,
) -> Result<u64, AgentError> {
    let target = TargetName::new(name).map_err(|e| AgentError::Usage(e.to_string()))?;
    let mut stream = repo
        .read_target(&target)
        .await
        .map_err(refused)?
        .ok_or_else(|| AgentError::NoSuchTarget(name.to_owned()))?;
    let mut length = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(refused)?;
        length += chunk.len() as u64;
        staging.write(&chunk).await?;
    }
    Ok(length)
}

/// What a tough error says about the repository (or the network).
fn refused(e: TufError) -> AgentError {
    let detail = e.to_string();
    if let Some(attack) = attack_of(&e) {
        return AgentError::UpdateRefused { attack, detail };
    }
    match &e {
        TufError::Transport { source, .. } => {
            // tough reports a download cut off at its signed size, or whose hash is wrong, as
            // a transport error caused by the TUF error itself.
            let inner =
                std::error::Error::source(source).and_then(|c| c.downcast_ref::<TufError>());
            if let Some(attack) = inner.and_then(attack_of) {
                AgentError::UpdateRefused { attack, detail }
            } else if matches!(source.kind(), tough::TransportErrorKind::FileNotFound) {
                AgentError::BadAnswer(format!(
                    "the repository lacks a file it must have: {detail}"
                ))
            } else {
                AgentError::Unreachable(detail)
            }
        }
        TufError::ParseMetadata { .. }
        | TufError::ParseTrustedMetadata { .. }
        | TufError::SpecVersion { .. } => AgentError::BadAnswer(detail),
        TufError::SystemTimeSteppedBackward { .. } => AgentError::ClockSkew { skew_seconds: 0 },
        _ => AgentError::State(format!("TUF client: {detail}")),
    }
}

/// The attack a TUF failure signals, if it signals one.
fn attack_of(e: &TufError) -> Option<Attack> {
    Some(match e {
        TufError::HashMismatch { context, .. } => {
            let metadata = [
                "root.json",
                "timestamp.json",
                "snapshot.json",
                "targets.json",
            ];
            if metadata.iter().any(|m| context.ends_with(m)) {
                Attack::MixAndMatch
            } else {
                Attack::ArbitrarySoftware
            }
        }
        TufError::OlderMetadata { .. }
        | TufError::OlderSnapshotInTimestamp { .. }
        | TufError::SnapshotRoleRollback { .. } => Attack::Rollback,
        TufError::ExpiredMetadata { .. } => Attack::Freeze,
        TufError::MaxSizeExceeded { .. } | TufError::MaxUpdatesExceeded { .. } => {
            Attack::EndlessData
        }
        TufError::VersionMismatch { .. }
        | TufError::MetaMissing { .. }
        | TufError::MissingSnapshotMeta { .. }
        | TufError::SnapshotTargetsMetaMissing { .. }
        | TufError::SnapshotRoleMissing { .. }
        | TufError::TimestampMetaLength { .. } => Attack::MixAndMatch,
        TufError::VerifyMetadata { .. }
        | TufError::VerifyRoleMetadata { .. }
        | TufError::VerifyTrustedMetadata { .. }
        | TufError::NoRoleKeysinRoot { .. } => Attack::UntrustedSignature,
        _ => return None,
    })
}
