//! The running log's signer: produces checkpoints, periodically and on demand, and refuses to
//! sign one that is not consistent with the previous one.
//!
//! C2SP tlog-checkpoint: "A log MUST not sign any checkpoint which is inconsistent with any
//! checkpoint it previously signed." The previous checkpoint is held in memory and in
//! `DIR/audit/checkpoint`, outside the database, so someone who rewrites the database cannot make
//! the server sign the rewritten history: the consistency proof from the last signed root fails,
//! the server stops signing, and reports the failure in the log's health.

use std::sync::{Arc, Mutex as StdMutex};

use time::OffsetDateTime;
use tokio::sync::Mutex;

use sigil_audit::{LogKey, LogVerifier, SignedCheckpoint, tree};
use sigil_store::Store;

use crate::{AuthorityError, DataDir};

pub struct AuditLog {
    store: Store,
    key: LogKey,
    verifier: LogVerifier,
    dir: DataDir,
    /// The newest checkpoint signed; the lock also serialises signing.
    latest: Mutex<Option<SignedCheckpoint>>,
    /// Set when an integrity check failed: the log no longer signs.
    broken: StdMutex<Option<String>>,
    /// When the stored log was last checked against the newest signed checkpoint and found
    /// consistent (every checkpoint call, whether or not it signs a new one).
    verified_at: StdMutex<Option<OffsetDateTime>>,
}

impl AuditLog {
    /// Pick up the newest checkpoint from the data directory and the database.
    pub async fn open(
        store: Store,
        key: LogKey,
        dir: DataDir,
    ) -> Result<Arc<Self>, AuthorityError> {
        let verifier = LogVerifier::new(&key.verifier_key())
            .map_err(|e| AuthorityError::Config(e.to_string()))?;
        let mut latest: Option<SignedCheckpoint> = None;
        let candidates = [dir.read_checkpoint()?, store.latest_checkpoint().await?];
        for note in candidates.into_iter().flatten() {
            // A checkpoint that does not verify is ignored here; the offline verifier reports it.
            match verifier.open_checkpoint(note.as_bytes()) {
                Ok(cp) if latest.as_ref().is_none_or(|l| cp.size > l.size) => latest = Some(cp),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "stored audit checkpoint does not verify"),
            }
        }
        Ok(Arc::new(Self {
            store,
            key,
            verifier,
            dir,
            latest: Mutex::new(latest),
            broken: StdMutex::new(None),
            verified_at: StdMutex::new(None),
        }))
    }

    pub fn key(&self) -> &LogKey {
        &self.key
    }

    pub fn verifier(&self) -> &LogVerifier {
        &self.verifier
    }

    /// Why the log stopped signing, if it did.
    pub fn integrity_failure(&self) -> Option<String> {
        self.broken.lock().ok().and_then(|b| b.clone())
    }

    /// When the log's integrity was last verified.
    pub fn verified_at(&self) -> Option<OffsetDateTime> {
        self.verified_at.lock().ok().and_then(|v| *v)
    }

    fn mark_verified(&self, now: OffsetDateTime) {
        if let Ok(mut v) = self.verified_at.lock() {
            *v = Some(now);
        }
    }

    pub async fn latest(&self) -> Option<SignedCheckpoint> {
        self.latest.lock().await.clone()
    }

    /// Sign a checkpoint of the current tree, unless the newest one already covers it.
    pub async fn checkpoint(
        &self,
        now: OffsetDateTime,
    ) -> Result<SignedCheckpoint, AuthorityError> {
        if let Some(reason) = self.integrity_failure() {
            return Err(AuthorityError::AuditIntegrity(reason));
        }
        let mut latest = self.latest.lock().await;
        let size = self.store.audit_size().await?;
        let root = self.store.audit_root(size).await?;
        if let Some(prev) = latest.as_ref() {
            let consistent = if size == prev.size {
                if root == prev.root {
                    self.mark_verified(now);
                    return Ok(prev.clone());
                }
                Err(format!(
                    "the root at size {size} is {root}, but the log signed {} for that size",
                    prev.root
                ))
            } else if size < prev.size {
                Err(format!(
                    "the log has {size} entries, but it signed a checkpoint for {}",
                    prev.size
                ))
            } else {
                let proof = self.store.audit_consistency_proof(prev.size, size).await?;
                tree::verify_consistency(&proof, prev.size, prev.root, size, root)
                    .map_err(|e| e.to_string())
            };
            if let Err(reason) = consistent {
                let reason = format!(
                    "audit log integrity failure: {reason}; refusing to sign (run `sigil audit verify`)"
                );
                tracing::error!("{reason}");
                if let Ok(mut b) = self.broken.lock() {
                    *b = Some(reason.clone());
                }
                return Err(AuthorityError::AuditIntegrity(reason));
            }
        }
        let signed = self
            .key
            .sign_checkpoint(size, root)
            .map_err(|e| AuthorityError::Config(e.to_string()))?;
        self.store
            .insert_checkpoint(size, &signed.note, now)
            .await?;
        self.dir.write_checkpoint(&signed.note)?;
        tracing::debug!(size, "signed audit checkpoint");
        *latest = Some(signed.clone());
        self.mark_verified(now);
        Ok(signed)
    }

    /// Sign a checkpoint every `interval` while the log grows.
    pub fn spawn_periodic(
        self: &Arc<Self>,
        interval: std::time::Duration,
        clock: crate::Clock,
    ) -> tokio::task::JoinHandle<()> {
        let log = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if log.integrity_failure().is_some() {
                    continue;
                }
                if let Err(e) = log.checkpoint(clock()).await {
                    tracing::error!(error = %e, "periodic audit checkpoint failed");
                }
            }
        })
    }
}
