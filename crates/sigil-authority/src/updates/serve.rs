//! The repository's read-only answers: published metadata by its consistent-snapshot name,
//! and the targets of published releases.

use std::path::PathBuf;

use sigil_update::tuf::{MetadataFile, Role, TargetName};
use time::OffsetDateTime;

use super::{PendingDocument, Updates};
use crate::{Refusal, RefusalKind, RequestError};

/// A target's content on disk.
#[derive(Debug, Clone)]
pub struct TargetFile {
    pub path: PathBuf,
    pub length: u64,
}

impl Updates {
    /// A published metadata file of `product`, as served; `None` if there is none.
    pub async fn metadata_file(
        &self,
        product: &str,
        file: MetadataFile,
    ) -> Result<Option<Vec<u8>>, RequestError> {
        let (role, version) = match file {
            MetadataFile::Root(v) => ("root", Some(v)),
            MetadataFile::LatestRoot => ("root", None),
            MetadataFile::Timestamp => ("timestamp", None),
            MetadataFile::Snapshot(v) => ("snapshot", Some(v)),
            MetadataFile::Targets(v) => ("targets", Some(v)),
        };
        Ok(self
            .store
            .tuf_document(product, role, version)
            .await?
            .map(|d| d.document))
    }

    /// The content of target `name` with SHA-256 `sha256`, if a published release of
    /// `product` ships it.
    pub async fn target_file(
        &self,
        product: &str,
        sha256: &str,
        name: &TargetName,
    ) -> Result<Option<TargetFile>, RequestError> {
        let Some(path) = self.artefact_path(sha256) else {
            return Ok(None);
        };
        // One row by the (product, target name) unique index, not a scan of the releases.
        let found = self
            .store
            .published_release(product, sha256, name.as_str())
            .await?;
        Ok(found.map(|r| TargetFile {
            path,
            length: r.length,
        }))
    }
}

/// A role's keys as the newest root assigns them.
#[derive(Debug, Clone)]
pub struct RoleStatus {
    pub role: Role,
    pub keyids: Vec<String>,
    pub threshold: u32,
    /// Whether the server holds every key of the role.
    pub online: bool,
}

/// A channel as operators see it.
#[derive(Debug, Clone)]
pub struct ChannelStatus {
    pub version_scheme: String,
    pub roles: Vec<RoleStatus>,
    /// The newest published document of each role: version and expiry.
    pub metadata: Vec<(Role, u64, OffsetDateTime)>,
    pub pending: Vec<PendingDocument>,
}

impl Updates {
    pub async fn channel_exists(&self, product: &str) -> Result<bool, RequestError> {
        Ok(self.store.update_channel(product).await?.is_some())
    }

    pub async fn channel_status(&self, product: &str) -> Result<ChannelStatus, RequestError> {
        let channel = self.store.update_channel(product).await?.ok_or_else(|| {
            RequestError::from(Refusal::new(
                RefusalKind::NotFound,
                "no-update-channel",
                format!(
                    "product {product} has no update channel (upload a release, or create one)"
                ),
            ))
        })?;
        let root = match self.published_root(product).await? {
            Some(root) => root,
            None => self.unpublished_root(product).await?,
        };
        let keys = self.store.tuf_keys(product).await?;
        let roles = Role::ALL
            .into_iter()
            .filter_map(|role| {
                let assigned = root.roles.get(&role)?;
                let online = assigned.keyids.iter().all(|id| {
                    keys.iter().any(|k| {
                        &k.key_id == id && k.role == role.as_str() && k.sealed_private.is_some()
                    })
                });
                Some(RoleStatus {
                    role,
                    keyids: assigned.keyids.clone(),
                    threshold: assigned.threshold,
                    online,
                })
            })
            .collect();
        let mut metadata = Vec::new();
        for role in Role::ALL {
            if let Some(doc) = self
                .store
                .tuf_document(product, role.as_str(), None)
                .await?
            {
                metadata.push((role, doc.version, doc.expires_at));
            }
        }
        Ok(ChannelStatus {
            version_scheme: channel.version_scheme,
            roles,
            metadata,
            pending: self.pending_documents(product).await?,
        })
    }
}

impl Updates {
    /// Each published role's newest version and expiry, for `product.update-channel`;
    /// `None` if the product has no channel.
    pub async fn channel_facts(
        &self,
        product: &str,
    ) -> Result<Option<sigil_compliance::product::UpdateChannelFacts>, sigil_store::StoreError>
    {
        let Some(channel) = self.store.update_channel(product).await? else {
            return Ok(None);
        };
        let mut published = Vec::new();
        for role in Role::ALL {
            if let Some(doc) = self
                .store
                .tuf_document(product, role.as_str(), None)
                .await?
            {
                published.push((
                    role.as_str().to_owned(),
                    doc.version,
                    doc.expires_at.unix_timestamp(),
                ));
            }
        }
        // Published releases in the scheme's order (a version that no longer parses, which
        // creation refuses, is left out rather than guessed).
        let mut releases: Vec<(sigil_update::ReleaseVersion, String, bool)> = Vec::new();
        if let Ok(scheme) = sigil_update::VersionScheme::parse(&channel.version_scheme) {
            for r in self.store.releases(product).await? {
                if r.state != "published" {
                    continue;
                }
                if let Ok(v) = sigil_update::ReleaseVersion::parse(scheme, &r.version) {
                    releases.push((v, r.version, r.security));
                }
            }
        }
        releases.sort_by(|a, b| a.0.precedence(&b.0));
        Ok(Some(sigil_compliance::product::UpdateChannelFacts {
            published,
            scheme: channel.version_scheme,
            releases: releases.into_iter().map(|(_, v, s)| (v, s)).collect(),
        }))
    }

    /// The published releases of every product that has a channel, in its scheme's order:
    /// the newest is the product's current firmware, and the update checks read them all.
    pub async fn release_facts(
        &self,
    ) -> Result<
        std::collections::HashMap<String, sigil_compliance::device::ReleaseFacts>,
        sigil_store::StoreError,
    > {
        let mut out = std::collections::HashMap::new();
        for product in self.store.update_channel_products().await? {
            let Some(channel) = self.store.update_channel(&product).await? else {
                continue;
            };
            let Ok(scheme) = sigil_update::VersionScheme::parse(&channel.version_scheme) else {
                continue;
            };
            let published = self
                .store
                .releases(&product)
                .await?
                .into_iter()
                .filter(|r| r.state == "published")
                .map(|r| {
                    let at = r.published_at.unwrap_or(r.created_at).unix_timestamp();
                    (r.version, r.security, at, r.target_name, r.sha256)
                });
            let facts = sigil_compliance::device::ReleaseFacts::new(scheme, published);
            if !facts.releases.is_empty() {
                out.insert(product, facts);
            }
        }
        Ok(out)
    }
}
