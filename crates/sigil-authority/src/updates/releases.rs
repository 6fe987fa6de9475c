//! Update channels (a product's repository and its keys) and releases.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde_json::json;
use time::OffsetDateTime;

use sigil_audit::Actor;
use sigil_store::{ReleaseRecord, TufDocument, TufKeyRecord, UpdateChannel};
use sigil_update::tuf::repository::{self, RoleAssignment};
use sigil_update::tuf::{PublicKey, Role, Root, TargetName};
use sigil_update::{ReleaseVersion, VersionScheme};

use super::{Updates, parse_stored, refused, update_internal};
use crate::{Refusal, RefusalKind, RequestError};

/// How a new channel is keyed. A role given public keys keeps its private keys off the
/// server; a role given none gets one online key.
#[derive(Debug, Clone, Default)]
pub struct ChannelKeys {
    pub scheme: VersionScheme,
    pub root: Option<(Vec<PublicKey>, u32)>,
    pub targets: Option<(Vec<PublicKey>, u32)>,
}

/// A release to create from an uploaded artefact.
#[derive(Debug, Clone)]
pub struct NewRelease {
    pub version: String,
    pub artefact_sha256: String,
    /// The file's name on the device (the target is `VERSION/FILE_NAME`).
    pub file_name: String,
    pub sbom_sha256: Option<String>,
    pub security: bool,
    pub notes: String,
}

impl Updates {
    /// Create `product`'s update channel: keys for the four roles, root version 1 and an
    /// empty targets version 1, signed where their keys are online, then snapshot and
    /// timestamp once both are published.
    pub async fn create_channel(
        &self,
        actor: &Actor,
        product: &str,
        keys: ChannelKeys,
    ) -> Result<UpdateChannel, RequestError> {
        let _writer = self.writer.lock().await;
        self.create_channel_locked(actor, product, keys).await
    }

    async fn create_channel_locked(
        &self,
        actor: &Actor,
        product: &str,
        keys: ChannelKeys,
    ) -> Result<UpdateChannel, RequestError> {
        let product_id: sigil_domain::ProductId = product.parse()?;
        self.store.get_product(product_id).await?;
        if self.store.update_channel(product).await?.is_some() {
            return Err(Refusal::new(
                RefusalKind::Conflict,
                "channel-exists",
                format!("product {product} already has an update channel"),
            )
            .into());
        }
        let now = self.now();
        let mut records = Vec::new();
        let mut online = BTreeMap::new();
        let mut assigned: Vec<(Role, Vec<PublicKey>, u32)> = Vec::new();
        for role in Role::ALL {
            let offline = match role {
                Role::Root => keys.root.clone(),
                Role::Targets => keys.targets.clone(),
                _ => None,
            };
            match offline {
                Some((public, threshold)) => {
                    for key in &public {
                        records.push(TufKeyRecord {
                            role: role.as_str().into(),
                            key_id: key.key_id(),
                            public_key: serde_json::to_string(key)
                                .map_err(|e| refused("invalid-key", e))?,
                            sealed_private: None,
                        });
                    }
                    assigned.push((role, public, threshold));
                }
                None => {
                    let (signer, record) = self.online_key(product, role)?;
                    assigned.push((
                        role,
                        vec![sigil_update::tuf::Signer::public_key(&signer).clone()],
                        1,
                    ));
                    online.insert(role, signer);
                    records.push(record);
                }
            }
        }
        let assignments: Vec<RoleAssignment<'_>> = assigned
            .iter()
            .map(|(role, keys, threshold)| RoleAssignment {
                role: *role,
                keys: keys.iter().collect(),
                threshold: *threshold,
            })
            .collect();
        let root = repository::root(1, self.expires(Role::Root, now), &assignments)
            .map_err(|e| refused("invalid-keys", e))?;
        let mut documents =
            vec![self.first_document(&root, &root, Role::Root, online.get(&Role::Root))?];
        let targets = repository::targets(1, self.expires(Role::Targets, now), BTreeMap::new());
        documents.push(self.first_document(
            &root,
            &targets,
            Role::Targets,
            online.get(&Role::Targets),
        )?);
        if documents.iter().all(|d| d.published) {
            let snapshot = repository::snapshot(
                1,
                self.expires(Role::Snapshot, now),
                1,
                &documents[1].document,
            );
            let snapshot_doc = Self::signed_document(
                &root,
                &snapshot,
                std::slice::from_ref(&online[&Role::Snapshot]),
            )?;
            let timestamp = repository::timestamp(
                1,
                self.expires(Role::Timestamp, now),
                1,
                &snapshot_doc.document,
            );
            let timestamp_doc = Self::signed_document(
                &root,
                &timestamp,
                std::slice::from_ref(&online[&Role::Timestamp]),
            )?;
            documents.extend([snapshot_doc, timestamp_doc]);
        }
        let channel = UpdateChannel {
            product_id: product.to_owned(),
            version_scheme: keys.scheme.as_str().into(),
            created_at: now,
        };
        self.store
            .create_update_channel(actor, &channel, &records, &documents, now)
            .await?;
        Ok(channel)
    }

    /// A first document: signed and published if its role's key is online, otherwise kept
    /// unpublished for offline signatures.
    pub(super) fn first_document<T: sigil_update::tuf::Metadata + Clone>(
        &self,
        root: &Root,
        document: &T,
        role: Role,
        signer: Option<&sigil_update::tuf::Ed25519Signer>,
    ) -> Result<TufDocument, RequestError> {
        match signer {
            Some(signer) => Self::signed_document(root, document, std::slice::from_ref(signer)),
            None => {
                let envelope = repository::sign(document, &[]).map_err(update_internal)?;
                Ok(TufDocument {
                    role: role.as_str().into(),
                    version: document.version(),
                    document: envelope.to_bytes(),
                    expires_at: document.expires(),
                    published: false,
                })
            }
        }
    }

    /// A product's channel, created with the defaults (semver, every key online) if it has
    /// none: uploading a first release needs no set-up.
    async fn channel_or_default(
        &self,
        actor: &Actor,
        product: &str,
    ) -> Result<UpdateChannel, RequestError> {
        match self.store.update_channel(product).await? {
            Some(channel) => Ok(channel),
            None => {
                self.create_channel_locked(actor, product, ChannelKeys::default())
                    .await
            }
        }
    }

    /// Create a release of `product` from an uploaded artefact: a new targets document listing
    /// every release, signed (and the chain after it) if the targets key is online, or left
    /// for offline signatures.
    pub async fn create_release(
        &self,
        actor: &Actor,
        product: &str,
        new: NewRelease,
    ) -> Result<ReleaseRecord, RequestError> {
        let _writer = self.writer.lock().await;
        let channel = self.channel_or_default(actor, product).await?;
        let scheme = VersionScheme::parse(&channel.version_scheme).map_err(update_internal)?;
        let version = ReleaseVersion::parse(scheme, &new.version)
            .map_err(|e| refused("invalid-version", e))?;
        let existing = self.store.releases(product).await?;
        for release in &existing {
            let theirs =
                ReleaseVersion::parse(scheme, &release.version).map_err(update_internal)?;
            if theirs.precedence(&version) == Ordering::Equal {
                return Err(Refusal::new(
                    RefusalKind::Conflict,
                    "release-exists",
                    format!(
                        "product {product} already has release {} (the same version as {})",
                        release.version, new.version
                    ),
                )
                .into());
            }
        }
        let length = self.artefact_length(&new.artefact_sha256).await?;
        if let Some(sbom) = &new.sbom_sha256 {
            self.artefact_length(sbom).await?;
        }
        if new.file_name.contains('/') {
            return Err(refused(
                "invalid-file-name",
                "the file name must not contain '/'",
            ));
        }
        let target = TargetName::new(&format!("{}/{}", new.version, new.file_name))
            .map_err(|e| refused("invalid-file-name", e))?;
        if new.notes.chars().count() > 4000
            || new.notes.chars().any(|c| c.is_control() && c != '\n')
        {
            return Err(refused(
                "invalid-notes",
                "notes: at most 4000 characters, no control characters but newlines",
            ));
        }
        let now = self.now();
        let record = ReleaseRecord {
            id: uuid::Uuid::now_v7().to_string(),
            product_id: product.to_owned(),
            version: new.version.clone(),
            target_name: target.as_str().to_owned(),
            sha256: new.artefact_sha256.clone(),
            length,
            security: new.security,
            notes: new.notes.clone(),
            sbom_sha256: new.sbom_sha256.clone(),
            state: "awaiting-signature".into(),
            created_by: actor.id.clone(),
            created_at: now,
            published_at: None,
        };
        let mut all = existing;
        all.push(record.clone());
        let documents = self.targets_with(product, &all, now).await?;
        self.store
            .record_release(actor, &record, &documents, now)
            .await?;
        self.store.release(&record.id).await.map_err(Into::into)
    }

    async fn artefact_length(&self, sha256: &str) -> Result<u64, RequestError> {
        let found = match self.artefact_path(sha256) {
            Some(_) => self.store.artefact_length(sha256).await?,
            None => None,
        };
        found.ok_or_else(|| {
            Refusal::new(
                RefusalKind::NotFound,
                "unknown-artefact",
                format!(
                    "no artefact with SHA-256 {} was uploaded",
                    sha256.chars().take(64).collect::<String>()
                ),
            )
            .into()
        })
    }

    /// The targets document listing `releases` (the next version), signed if the targets key
    /// is online, with the chain after it; or unpublished, awaiting offline signatures.
    async fn targets_with(
        &self,
        product: &str,
        releases: &[ReleaseRecord],
        now: OffsetDateTime,
    ) -> Result<Vec<TufDocument>, RequestError> {
        let targets = targets_map(releases);
        let published = self.store.tuf_document(product, "targets", None).await?;
        let version = published.map_or(1, |d| d.version + 1);
        let doc = repository::targets(version, self.expires(Role::Targets, now), targets);
        let signers = self.signers(product, Role::Targets).await?;
        let root = match self.published_root(product).await? {
            Some(root) => root,
            None => self.unpublished_root(product).await?,
        };
        if signers.is_empty() {
            return Ok(vec![self.first_document(
                &root,
                &doc,
                Role::Targets,
                None,
            )?]);
        }
        let signed = Self::signed_document(&root, &doc, &signers)?;
        let mut out = self.chain(product, Some(&signed), now).await?;
        out.insert(0, signed);
        Ok(out)
    }

    /// The root awaiting its offline signatures (before any root was published).
    pub(super) async fn unpublished_root(&self, product: &str) -> Result<Root, RequestError> {
        let pending = self.store.unpublished_tuf_documents(product).await?;
        let doc = pending.iter().find(|d| d.role == "root").ok_or_else(|| {
            sigil_store::StoreError::Corrupt(format!("product {product} has no root document"))
        })?;
        Ok(parse_stored::<Root>(&doc.document)?.signed)
    }

    /// A product's releases, oldest first.
    pub async fn releases(&self, product: &str) -> Result<Vec<ReleaseRecord>, RequestError> {
        Ok(self.store.releases(product).await?)
    }
}

/// Every release as a TUF target: its length, SHA-256 and Sigil's description.
pub(super) fn targets_map(
    releases: &[ReleaseRecord],
) -> BTreeMap<String, sigil_update::tuf::TargetFile> {
    releases
        .iter()
        .map(|r| {
            let custom = json!({"release": r.id, "version": r.version, "security": r.security});
            (
                r.target_name.clone(),
                repository::target_file(&r.sha256, r.length, custom),
            )
        })
        .collect()
}
