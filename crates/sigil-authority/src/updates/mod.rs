//! Software updates: each product's TUF repository (keys, signed documents, their refresh),
//! its releases and the artefacts they ship. The TUF documents are built and checked by
//! `sigil-update` (pure); this service decides versions and expiries, keeps online keys
//! sealed, writes through `sigil-store` (every change audited) and answers the repository's
//! read-only requests.
//!
//! Keys: snapshot and timestamp are always online (they must be re-signed unattended); root
//! and targets are online by default (zero configuration) or, given public keys at channel
//! creation, kept off the server: their documents then wait, unpublished, for enough offline
//! signatures (`sigil release sign`).

mod artefacts;
mod chain;
mod releases;
mod rotation;
mod serve;
mod signatures;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::Mutex;

use sigil_store::{Store, TufKeyRecord};
use sigil_update::tuf::{Ed25519Signer, Envelope, Metadata, Role, Root};

use crate::secrets::SecretBox;
use crate::{AuthorityError, Clock, Refusal, RefusalKind, RequestError};

pub use artefacts::{Artefact, ArtefactUpload};
pub use releases::{ChannelKeys, NewRelease};
pub use rotation::KeyRotation;
pub use serve::{ChannelStatus, RoleStatus, TargetFile};
pub use signatures::{PendingDocument, SignatureSubmission};

/// How long each role's documents stay valid. Online documents are re-signed when less than
/// half of their lifetime is left.
#[derive(Debug, Clone, Copy)]
pub struct UpdateSettings {
    pub root_expiry: Duration,
    pub targets_expiry: Duration,
    pub snapshot_expiry: Duration,
    pub timestamp_expiry: Duration,
    /// Largest artefact accepted.
    pub max_artefact_bytes: u64,
}

impl Default for UpdateSettings {
    fn default() -> Self {
        const DAY: u64 = 24 * 3600;
        Self {
            root_expiry: Duration::from_secs(365 * DAY),
            targets_expiry: Duration::from_secs(90 * DAY),
            snapshot_expiry: Duration::from_secs(7 * DAY),
            timestamp_expiry: Duration::from_secs(DAY),
            max_artefact_bytes: 1 << 30,
        }
    }
}

impl UpdateSettings {
    pub fn expiry(&self, role: Role) -> Duration {
        match role {
            Role::Root => self.root_expiry,
            Role::Targets => self.targets_expiry,
            Role::Snapshot => self.snapshot_expiry,
            Role::Timestamp => self.timestamp_expiry,
        }
    }

    pub fn validate(&self) -> Result<(), AuthorityError> {
        let minute = Duration::from_secs(60);
        for role in Role::ALL {
            if self.expiry(role) < minute * 10 {
                return Err(AuthorityError::Config(format!(
                    "{} metadata must stay valid at least 10 minutes",
                    role.as_str()
                )));
            }
        }
        if self.timestamp_expiry > self.snapshot_expiry {
            return Err(AuthorityError::Config(
                "timestamp metadata must not outlive snapshot metadata".into(),
            ));
        }
        Ok(())
    }
}

/// The update service.
pub struct Updates {
    store: Store,
    clock: Clock,
    settings: UpdateSettings,
    /// Seals online signing keys, bound to product, role and key id.
    sealer: SecretBox,
    artefacts: PathBuf,
    /// Repository changes are made one at a time, so versions are decided without a race.
    writer: Arc<Mutex<()>>,
}

impl Updates {
    pub fn new(
        store: Store,
        clock: Clock,
        settings: UpdateSettings,
        sealing_key: &[u8; 32],
        artefacts: PathBuf,
    ) -> Result<Self, AuthorityError> {
        settings.validate()?;
        // Uploads a crash cut off are never finished: remove them.
        let _ = std::fs::remove_dir_all(artefacts.join("incoming"));
        Ok(Self {
            store,
            clock,
            settings,
            sealer: SecretBox::new(sealing_key)?,
            artefacts,
            writer: Arc::new(Mutex::new(())),
        })
    }

    pub fn settings(&self) -> &UpdateSettings {
        &self.settings
    }

    fn now(&self) -> OffsetDateTime {
        (self.clock)()
    }

    fn expires(&self, role: Role, now: OffsetDateTime) -> OffsetDateTime {
        let expiry =
            time::Duration::try_from(self.settings.expiry(role)).unwrap_or(time::Duration::DAY);
        (now + expiry).replace_nanosecond(0).unwrap_or(now + expiry)
    }

    fn seal_context(product: &str, role: Role, key_id: &str) -> String {
        format!("tuf:{product}:{}:{key_id}", role.as_str())
    }

    /// A fresh online key for `role`, and its record (private half sealed).
    fn online_key(
        &self,
        product: &str,
        role: Role,
    ) -> Result<(Ed25519Signer, TufKeyRecord), RequestError> {
        let (signer, der) = Ed25519Signer::generate().map_err(update_internal)?;
        let key_id = sigil_update::tuf::Signer::key_id(&signer);
        let sealed = self
            .sealer
            .seal(&der, &Self::seal_context(product, role, &key_id))?;
        let record = TufKeyRecord {
            role: role.as_str().into(),
            public_key: serde_json::to_string(sigil_update::tuf::Signer::public_key(&signer))
                .map_err(|e| AuthorityError::Config(e.to_string()))?,
            key_id,
            sealed_private: Some(sealed),
        };
        Ok((signer, record))
    }

    /// The online signers of `role` for `product` that its newest root (published, or else
    /// the one awaiting signatures) assigns to the role: none if the role is kept offline; a
    /// key rotated out never signs again.
    async fn signers(&self, product: &str, role: Role) -> Result<Vec<Ed25519Signer>, RequestError> {
        let root = match self.published_root(product).await? {
            Some(root) => root,
            None => self.unpublished_root(product).await?,
        };
        let ids = root
            .roles
            .get(&role)
            .map(|r| r.keyids.clone())
            .unwrap_or_default();
        self.signers_with_ids(product, role, &ids).await
    }

    /// The online keys of `role` among `ids`.
    async fn signers_with_ids(
        &self,
        product: &str,
        role: Role,
        ids: &[String],
    ) -> Result<Vec<Ed25519Signer>, RequestError> {
        let mut signers = Vec::new();
        for key in self.store.tuf_keys(product).await? {
            let (Some(sealed), true) = (
                &key.sealed_private,
                key.role == role.as_str() && ids.contains(&key.key_id),
            ) else {
                continue;
            };
            let der = self
                .sealer
                .open(sealed, &Self::seal_context(product, role, &key.key_id))
                .ok_or_else(|| {
                    AuthorityError::Config(format!(
                        "the {} key {} of product {product} does not open with this data directory's passphrase",
                        role.as_str(),
                        key.key_id
                    ))
                })?;
            signers.push(Ed25519Signer::from_pkcs8(&der).map_err(update_internal)?);
        }
        Ok(signers)
    }

    /// The newest published root of `product`, if any.
    async fn published_root(&self, product: &str) -> Result<Option<Root>, RequestError> {
        let Some(doc) = self.store.tuf_document(product, "root", None).await? else {
            return Ok(None);
        };
        Ok(Some(parse_stored::<Root>(&doc.document)?.signed))
    }
}

/// A document this service stored does not parse: the database was changed behind its back.
fn parse_stored<T: Metadata>(bytes: &[u8]) -> Result<Envelope<T>, RequestError> {
    Envelope::<T>::parse(bytes).map_err(|e| {
        RequestError::Store(sigil_store::StoreError::Corrupt(format!(
            "a stored TUF document is damaged: {e}"
        )))
    })
}

fn update_internal(e: sigil_update::UpdateError) -> RequestError {
    RequestError::Authority(AuthorityError::Config(e.to_string()))
}

/// A caller's update data was refused: say why.
fn refused(code: &'static str, e: impl std::fmt::Display) -> RequestError {
    Refusal::new(RefusalKind::Invalid, code, e.to_string()).into()
}
