//! Key rotation: a new root (the next version) that assigns new keys to some roles, signed by
//! a threshold of the old root's root keys and of its own. Online keys sign at once; offline
//! ones through `sigil release sign`. Once the new root is published, every document signed
//! by a key it no longer trusts is signed again (see `chain`), and clients that refreshed
//! refuse anything the rotated-out key signs.

use serde_json::json;

use sigil_audit::Actor;
use sigil_store::{TufDocument, TufKeyRecord};
use sigil_update::tuf::repository::{self, RoleAssignment};
use sigil_update::tuf::{Ed25519Signer, PublicKey, Role, Signer};

use super::{PendingDocument, Updates, refused, update_internal};
use crate::{Refusal, RefusalKind, RequestError};

/// New keys for one role: public keys kept off the server (with their threshold), or `None`
/// for one fresh online key.
#[derive(Debug, Clone)]
pub struct KeyRotation {
    pub role: Role,
    pub offline: Option<(Vec<PublicKey>, u32)>,
}

impl Updates {
    /// Rotate the keys of the given roles. Returns the documents still awaiting signatures
    /// (empty when the new root was published at once).
    pub async fn rotate_keys(
        &self,
        actor: &Actor,
        product: &str,
        rotations: &[KeyRotation],
    ) -> Result<Vec<PendingDocument>, RequestError> {
        let writer = self.writer.lock().await;
        let trusted = self.published_root(product).await?.ok_or_else(|| {
            Refusal::new(
                RefusalKind::Conflict,
                "root-not-published",
                format!("product {product}'s first root still awaits its signatures"),
            )
        })?;
        if self
            .store
            .unpublished_tuf_documents(product)
            .await?
            .iter()
            .any(|d| d.role == "root")
        {
            return Err(Refusal::new(
                RefusalKind::Conflict,
                "rotation-pending",
                "a new root already awaits signatures; sign it first",
            )
            .into());
        }
        let mut roles: Vec<Role> = rotations.iter().map(|r| r.role).collect();
        roles.sort();
        roles.dedup();
        if roles.len() != rotations.len() || rotations.is_empty() {
            return Err(refused("invalid-rotation", "name each role to rotate once"));
        }
        let now = self.now();
        let NewKeys {
            records,
            fresh,
            assigned,
        } = self.new_keys(product, &trusted, rotations)?;
        let assignments: Vec<RoleAssignment<'_>> = assigned
            .iter()
            .map(|(role, keys, threshold)| RoleAssignment {
                role: *role,
                keys: keys.iter().collect(),
                threshold: *threshold,
            })
            .collect();
        let next = repository::root(
            trusted.version + 1,
            self.expires(Role::Root, now),
            &assignments,
        )
        .map_err(|e| refused("invalid-keys", e))?;
        // Signed by the old root's online keys and any new online root key.
        let mut signers = self
            .signers_with_ids(product, Role::Root, &trusted.roles[&Role::Root].keyids)
            .await?;
        signers.extend(fresh);
        let dyn_signers: Vec<&dyn Signer> = signers.iter().map(|s| s as &dyn Signer).collect();
        let envelope = repository::sign(&next, &dyn_signers).map_err(update_internal)?;
        let published = repository::verify_root_successor(&trusted, &envelope).is_ok();
        let doc = TufDocument {
            role: "root".into(),
            version: next.version,
            document: envelope.to_bytes(),
            expires_at: next.expires,
            published,
        };
        let rotated: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        let details = json!({"rotated": rotated, "root_version": next.version, "published": published,
                             "new_keys": records.iter().map(|k| json!({"role": k.role, "key_id": k.key_id, "online": k.sealed_private.is_some()})).collect::<Vec<_>>()});
        self.store
            .add_tuf_keys(
                actor,
                product,
                &records,
                &[doc],
                "update.keys_rotated",
                details,
                now,
            )
            .await?;
        if published {
            let chain = self.chain(product, None, now).await?;
            if !chain.is_empty() {
                self.store
                    .put_tuf_documents(
                        actor,
                        product,
                        &chain,
                        "update.metadata_published",
                        json!({"after": ["root"]}),
                        now,
                    )
                    .await?;
            }
        }
        drop(writer);
        self.pending_documents(product).await
    }
}

/// The keys of every role under the next root, the records of the new ones, and the fresh
/// online root key (if the root's own keys rotate online).
struct NewKeys {
    records: Vec<TufKeyRecord>,
    fresh: Vec<Ed25519Signer>,
    assigned: Vec<(Role, Vec<PublicKey>, u32)>,
}

impl Updates {
    fn new_keys(
        &self,
        product: &str,
        trusted: &sigil_update::tuf::Root,
        rotations: &[KeyRotation],
    ) -> Result<NewKeys, RequestError> {
        let mut records = Vec::new();
        let mut fresh: Vec<Ed25519Signer> = Vec::new();
        let mut assigned: Vec<(Role, Vec<PublicKey>, u32)> = Vec::new();
        for role in Role::ALL {
            let current = &trusted.roles[&role];
            let entry = match rotations.iter().find(|r| r.role == role) {
                None => {
                    let keys = current
                        .keyids
                        .iter()
                        .filter_map(|id| trusted.keys.get(id).cloned())
                        .collect();
                    (role, keys, current.threshold)
                }
                Some(KeyRotation {
                    offline: Some((keys, threshold)),
                    ..
                }) => {
                    for key in keys {
                        records.push(TufKeyRecord {
                            role: role.as_str().into(),
                            key_id: key.key_id(),
                            public_key: serde_json::to_string(key)
                                .map_err(|e| refused("invalid-key", e))?,
                            sealed_private: None,
                        });
                    }
                    (role, keys.clone(), *threshold)
                }
                Some(KeyRotation { offline: None, .. }) => {
                    let (signer, record) = self.online_key(product, role)?;
                    let key = signer.public_key().clone();
                    records.push(record);
                    if role == Role::Root {
                        fresh.push(signer);
                    }
                    (role, vec![key], 1)
                }
            };
            if entry.1.iter().any(|k| current.keyids.contains(&k.key_id()))
                && rotations.iter().any(|r| r.role == role)
            {
                return Err(refused(
                    "invalid-rotation",
                    format!(
                        "the new {} keys must differ from the current ones",
                        role.as_str()
                    ),
                ));
            }
            assigned.push(entry);
        }
        Ok(NewKeys {
            records,
            fresh,
            assigned,
        })
    }
}
