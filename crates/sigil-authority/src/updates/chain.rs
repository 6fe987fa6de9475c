//! Keeping a product's published chain whole: after a new targets document, or when an
//! online document enters the second half of its life, the documents that must follow
//! (targets re-signed, snapshot, timestamp; root re-signed where its key is online).

use sigil_audit::Actor;
use sigil_store::TufDocument;
use sigil_update::tuf::repository::{self, verify};
use sigil_update::tuf::{Metadata, Role, Root, Signer, Snapshot, Targets, Timestamp};
use time::OffsetDateTime;

use super::{Updates, parse_stored, update_internal};
use crate::RequestError;

impl Updates {
    /// Whether `doc` has less than half of its role's lifetime left.
    fn due(&self, doc: &TufDocument, role: Role, now: OffsetDateTime) -> bool {
        let half = self.settings.expiry(role) / 2;
        let half = time::Duration::try_from(half).unwrap_or(time::Duration::ZERO);
        doc.expires_at - now < half
    }

    /// Sign `document` with `signers` and check the result against `root`: an online key
    /// that no longer meets its role's threshold is a configuration error, never published.
    pub(super) fn signed_document<T: Metadata + Clone>(
        root: &Root,
        document: &T,
        signers: &[sigil_update::tuf::Ed25519Signer],
    ) -> Result<TufDocument, RequestError> {
        let signers: Vec<&dyn Signer> = signers.iter().map(|s| s as &dyn Signer).collect();
        let document_bytes =
            repository::sign_checked(root, document, &signers).map_err(update_internal)?;
        Ok(TufDocument {
            role: T::ROLE.as_str().into(),
            version: document.version(),
            document: document_bytes,
            expires_at: document.expires(),
            published: true,
        })
    }

    /// The documents to write so the published chain covers `new_targets` (or the current
    /// targets) and no online document is past half its life. Empty if nothing is due, or
    /// if root or targets are not published yet.
    pub(super) async fn chain(
        &self,
        product: &str,
        new_targets: Option<&TufDocument>,
        now: OffsetDateTime,
    ) -> Result<Vec<TufDocument>, RequestError> {
        let mut out = Vec::new();
        let Some(mut root) = self.published_root(product).await? else {
            return Ok(out);
        };
        if let Some(renewed) = self.renew_root(product, &root, now).await? {
            root = parse_stored::<Root>(&renewed.document)?.signed;
            out.push(renewed);
        }
        let current_targets = match new_targets {
            Some(t) => Some(t.clone()),
            None => self.store.tuf_document(product, "targets", None).await?,
        };
        let Some(mut targets) = current_targets else {
            return Ok(out);
        };
        // Targets are re-signed in the second half of their life, or when the root no longer
        // trusts the keys that signed them (a rotation): online at once, offline by staging a
        // copy for `release sign`.
        let stale = !verifies::<Targets>(&root, &targets)?;
        if new_targets.is_none() && (stale || self.due(&targets, Role::Targets, now)) {
            let signers = self.signers(product, Role::Targets).await?;
            // Rebuilt from the releases (a release awaiting an offline signature included),
            // never copied from the old document.
            let releases = self.store.releases(product).await?;
            let doc = sigil_update::tuf::repository::targets(
                targets.version + 1,
                self.expires(Role::Targets, now),
                super::releases::targets_map(&releases),
            );
            if !signers.is_empty() {
                targets = Self::signed_document(&root, &doc, &signers)?;
                out.push(targets.clone());
            } else if stale
                && self
                    .store
                    .unpublished_tuf_documents(product)
                    .await?
                    .iter()
                    .all(|d| d.role != "targets")
            {
                out.push(self.first_document(&root, &doc, Role::Targets, None)?);
            }
        }
        let snapshot = self.store.tuf_document(product, "snapshot", None).await?;
        let snapshot = match snapshot {
            Some(s)
                if covers(&s, "targets.json", targets.version)?
                    && !self.due(&s, Role::Snapshot, now)
                    && verifies::<Snapshot>(&root, &s)? =>
            {
                s
            }
            previous => {
                let version = previous.map_or(1, |p| p.version + 1);
                let doc = repository::snapshot(
                    version,
                    self.expires(Role::Snapshot, now),
                    targets.version,
                    &targets.document,
                );
                let signers = self.signers(product, Role::Snapshot).await?;
                let s = Self::signed_document(&root, &doc, &signers)?;
                out.push(s.clone());
                s
            }
        };
        let timestamp = self.store.tuf_document(product, "timestamp", None).await?;
        match timestamp {
            Some(t)
                if covers(&t, "snapshot.json", snapshot.version)?
                    && !self.due(&t, Role::Timestamp, now)
                    && verifies::<Timestamp>(&root, &t)? => {}
            previous => {
                let version = previous.map_or(1, |p| p.version + 1);
                let doc = repository::timestamp(
                    version,
                    self.expires(Role::Timestamp, now),
                    snapshot.version,
                    &snapshot.document,
                );
                let signers = self.signers(product, Role::Timestamp).await?;
                out.push(Self::signed_document(&root, &doc, &signers)?);
            }
        }
        Ok(out)
    }

    /// A root whose keys are online is re-signed (same keys, next version) in the second half
    /// of its life; an offline root's expiry is for its holders to prevent.
    async fn renew_root(
        &self,
        product: &str,
        root: &Root,
        now: OffsetDateTime,
    ) -> Result<Option<TufDocument>, RequestError> {
        let Some(current) = self.store.tuf_document(product, "root", None).await? else {
            return Ok(None);
        };
        let rotation_pending = self
            .store
            .unpublished_tuf_documents(product)
            .await?
            .iter()
            .any(|d| d.role == "root");
        // A rotation awaiting signatures holds the next version: renewing would replace it.
        if rotation_pending || !self.due(&current, Role::Root, now) {
            return Ok(None);
        }
        let signers = self.signers(product, Role::Root).await?;
        if signers.is_empty() {
            return Ok(None);
        }
        let mut next = root.clone();
        next.version += 1;
        next.expires = self.expires(Role::Root, now);
        let doc = Self::signed_document(&next, &next, &signers)?;
        repository::verify_root_successor(root, &parse_stored::<Root>(&doc.document)?)
            .map_err(update_internal)?;
        Ok(Some(doc))
    }

    /// Re-sign what is due in every product's repository. Called by the background task.
    pub async fn refresh_all(&self) -> Result<usize, RequestError> {
        let mut refreshed = 0;
        // One product's failure never stops the others' timestamps (a fleet-wide freeze).
        for product in self.store.update_channel_products().await? {
            match self.refresh(&product).await {
                Ok(true) => refreshed += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(product, error = %e, "update metadata refresh failed for this product")
                }
            }
        }
        Ok(refreshed)
    }

    async fn refresh(&self, product: &str) -> Result<bool, RequestError> {
        let _writer = self.writer.lock().await;
        let now = self.now();
        let docs = self.chain(product, None, now).await?;
        if docs.is_empty() {
            return Ok(false);
        }
        self.store
            .put_tuf_documents(
                &Actor::system("updates"),
                product,
                &docs,
                "update.metadata_refreshed",
                serde_json::json!({"reason": "expiry or rotation"}),
                now,
            )
            .await?;
        Ok(true)
    }

    /// Run [`Self::refresh_all`] every minute until the process ends.
    pub fn spawn_refresh(self: std::sync::Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                if let Err(e) = self.refresh_all().await {
                    tracing::error!(error = %e, "update metadata refresh failed; retrying in a minute");
                }
            }
        })
    }
}

/// Whether `doc` carries a threshold of signatures by the keys `root` assigns its role.
fn verifies<T: Metadata>(root: &Root, doc: &TufDocument) -> Result<bool, RequestError> {
    Ok(verify(root, T::ROLE, &parse_stored::<T>(&doc.document)?).is_ok())
}

/// Whether a snapshot (or timestamp) document lists `file` at `version`.
fn covers(doc: &TufDocument, file: &str, version: u64) -> Result<bool, RequestError> {
    let meta = match doc.role.as_str() {
        "snapshot" => parse_stored::<Snapshot>(&doc.document)?.signed.meta,
        _ => parse_stored::<Timestamp>(&doc.document)?.signed.meta,
    };
    Ok(meta.get(file).is_some_and(|m| m.version == version))
}
