//! Offline signatures: documents of roles whose keys are kept off the server wait,
//! unpublished, until a threshold of their keys has signed them (`sigil release sign` signs
//! the canonical bytes shown here with a key file the server never sees).

use serde_json::json;

use sigil_audit::Actor;
use sigil_store::TufDocument;
use sigil_update::UpdateError;
use sigil_update::tuf::repository::{self, verify};
use sigil_update::tuf::{Envelope, Metadata, Role, Root, Signature, Targets, canonical_json};

use super::{Updates, parse_stored, refused};
use crate::{Refusal, RefusalKind, RequestError};

/// A document awaiting signatures, as a signer needs it.
#[derive(Debug, Clone)]
pub struct PendingDocument {
    pub role: Role,
    pub version: u64,
    pub expires_at: time::OffsetDateTime,
    /// The canonical JSON of `signed`: exactly the bytes to sign.
    pub canonical: String,
    /// The keys whose signatures count, and how many are needed.
    pub keyids: Vec<String>,
    pub threshold: u32,
    /// Keys that have signed it so far.
    pub signed_by: Vec<String>,
}

/// One signer's signature over a pending document.
#[derive(Debug, Clone)]
pub struct SignatureSubmission {
    pub role: Role,
    pub version: u64,
    pub keyid: String,
    /// Hex.
    pub sig: String,
}

impl Updates {
    /// The root that decides who may sign `role`'s documents: the document itself for a new
    /// root, the newest published root (or, before any, the pending one) otherwise.
    async fn deciding_root(
        &self,
        product: &str,
        role: Role,
        pending: &TufDocument,
    ) -> Result<Root, RequestError> {
        if role == Role::Root {
            return Ok(parse_stored::<Root>(&pending.document)?.signed);
        }
        match self.published_root(product).await? {
            Some(root) => Ok(root),
            None => self.unpublished_root(product).await,
        }
    }

    pub async fn pending_documents(
        &self,
        product: &str,
    ) -> Result<Vec<PendingDocument>, RequestError> {
        let mut out = Vec::new();
        for doc in self.store.unpublished_tuf_documents(product).await? {
            let role = Role::parse(&doc.role).ok_or_else(|| {
                sigil_store::StoreError::Corrupt(format!("unknown role {}", doc.role))
            })?;
            let root = self.deciding_root(product, role, &doc).await?;
            let (canonical, signed_by) = match role {
                Role::Root => signed_parts(&parse_stored::<Root>(&doc.document)?),
                _ => signed_parts(&parse_stored::<Targets>(&doc.document)?),
            };
            let mut assigned =
                root.roles
                    .get(&role)
                    .cloned()
                    .unwrap_or(sigil_update::tuf::RoleKeys {
                        keyids: vec![],
                        threshold: 1,
                    });
            // A new root also needs the trusted root's keys: their holders sign it too.
            if role == Role::Root
                && let Some(trusted) = self.published_root(product).await?
                && let Some(old) = trusted.roles.get(&Role::Root)
            {
                for id in &old.keyids {
                    if !assigned.keyids.contains(id) {
                        assigned.keyids.push(id.clone());
                    }
                }
            }
            out.push(PendingDocument {
                role,
                version: doc.version,
                expires_at: doc.expires_at,
                canonical,
                keyids: assigned.keyids,
                threshold: assigned.threshold,
                signed_by,
            });
        }
        Ok(out)
    }

    /// Add offline signatures to pending documents. A signature that does not verify, or by
    /// a key the role does not have, is refused and nothing is written. A document that
    /// reaches its threshold is published, with the chain after it.
    pub async fn add_signatures(
        &self,
        actor: &Actor,
        product: &str,
        submissions: &[SignatureSubmission],
    ) -> Result<Vec<PendingDocument>, RequestError> {
        let _writer = self.writer.lock().await;
        let now = self.now();
        let pending = self.store.unpublished_tuf_documents(product).await?;
        let mut documents = Vec::new();
        for role in [Role::Root, Role::Targets] {
            let mine: Vec<&SignatureSubmission> =
                submissions.iter().filter(|s| s.role == role).collect();
            if mine.is_empty() {
                continue;
            }
            let doc = pending
                .iter()
                .find(|d| d.role == role.as_str())
                .ok_or_else(|| nothing_pending(role, mine[0].version))?;
            if let Some(s) = mine.iter().find(|s| s.version != doc.version) {
                return Err(nothing_pending(role, s.version));
            }
            let root = self.deciding_root(product, role, doc).await?;
            let updated = match role {
                Role::Root => self.sign_root(product, &root, doc, &mine).await?,
                _ => sign_pending::<Targets>(&root, doc, &mine)?,
            };
            documents.push(updated);
        }
        if submissions
            .iter()
            .any(|s| !matches!(s.role, Role::Root | Role::Targets))
        {
            return Err(refused(
                "invalid-role",
                "only root and targets are signed offline",
            ));
        }
        if documents.is_empty() {
            return Err(refused("no-signatures", "no signatures were given"));
        }
        // Write the signed documents first, then what follows them.
        let published: Vec<String> = documents
            .iter()
            .filter(|d| d.published)
            .map(|d| d.role.clone())
            .collect();
        let keyids: Vec<&str> = submissions.iter().map(|s| s.keyid.as_str()).collect();
        let details = json!({"keyids": keyids, "published": published});
        self.store
            .put_tuf_documents(
                actor,
                product,
                &documents,
                "update.metadata_signed",
                details,
                now,
            )
            .await?;
        let chain = self.chain(product, None, now).await?;
        if !chain.is_empty() {
            self.store
                .put_tuf_documents(
                    actor,
                    product,
                    &chain,
                    "update.metadata_published",
                    json!({"after": published}),
                    now,
                )
                .await?;
        }
        drop(_writer);
        self.pending_documents(product).await
    }

    /// A new root counts signatures by its own root keys and, if a root was published
    /// before it, needs a threshold of that root's keys too (cross-signing).
    async fn sign_root(
        &self,
        product: &str,
        new_root: &Root,
        doc: &TufDocument,
        submissions: &[&SignatureSubmission],
    ) -> Result<TufDocument, RequestError> {
        let trusted = self.published_root(product).await?;
        let mut envelope = parse_stored::<Root>(&doc.document)?;
        for s in submissions {
            let signature = Signature {
                keyid: s.keyid.clone(),
                sig: s.sig.clone(),
            };
            let by_new =
                repository::add_signature(new_root, Role::Root, &mut envelope, signature.clone());
            match (by_new, &trusted) {
                (Ok(()), _) => {}
                (Err(UpdateError::NotRoleKey { .. }), Some(old)) => {
                    repository::add_signature(old, Role::Root, &mut envelope, signature)
                        .map_err(|e| refused("invalid-signature", e))?;
                }
                (Err(e), _) => return Err(refused("invalid-signature", e)),
            }
        }
        let complete = match &trusted {
            Some(old) => repository::verify_root_successor(old, &envelope).is_ok(),
            None => verify(new_root, Role::Root, &envelope).is_ok(),
        };
        Ok(TufDocument {
            document: envelope.to_bytes(),
            published: complete,
            ..doc.clone()
        })
    }
}

fn sign_pending<T: Metadata + Clone>(
    root: &Root,
    doc: &TufDocument,
    submissions: &[&SignatureSubmission],
) -> Result<TufDocument, RequestError> {
    let mut envelope = parse_stored::<T>(&doc.document)?;
    for s in submissions {
        let signature = Signature {
            keyid: s.keyid.clone(),
            sig: s.sig.clone(),
        };
        repository::add_signature(root, T::ROLE, &mut envelope, signature)
            .map_err(|e| refused("invalid-signature", e))?;
    }
    let complete = verify(root, T::ROLE, &envelope).is_ok();
    Ok(TufDocument {
        document: envelope.to_bytes(),
        published: complete,
        ..doc.clone()
    })
}

fn signed_parts<T: Metadata>(envelope: &Envelope<T>) -> (String, Vec<String>) {
    let canonical = String::from_utf8_lossy(&canonical_json(&envelope.signed)).into_owned();
    (
        canonical,
        envelope
            .signatures
            .iter()
            .map(|s| s.keyid.clone())
            .collect(),
    )
}

fn nothing_pending(role: Role, version: u64) -> RequestError {
    Refusal::new(
        RefusalKind::Conflict,
        "nothing-to-sign",
        format!(
            "no {} metadata version {version} awaits signatures",
            role.as_str()
        ),
    )
    .into()
}
