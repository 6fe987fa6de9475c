//! The access policy in force: the newest applied version from the database, or the built-in
//! defaults. Swapped atomically on apply; readers take a snapshot per decision.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use sigil_policy::PolicyEngine;
use sigil_store::Store;

use crate::AuthorityError;

pub struct ActivePolicy {
    engine: RwLock<Arc<PolicyEngine>>,
    /// 0: the built-in defaults.
    version: AtomicI64,
}

impl ActivePolicy {
    /// Load the version in force. A stored version that no longer validates (the schema
    /// changed under it) stops the start: running with a different policy than the one the
    /// operators applied would be worse.
    pub async fn load(store: &Store) -> Result<Self, AuthorityError> {
        let (engine, version) = match store.current_policy().await? {
            Some(v) => (
                PolicyEngine::new(&v.text).map_err(|e| {
                    AuthorityError::Config(format!("applied policy version {}: {e}", v.version))
                })?,
                v.version,
            ),
            None => (PolicyEngine::with_defaults()?, 0),
        };
        Ok(Self::new(engine, version))
    }

    pub fn new(engine: PolicyEngine, version: i64) -> Self {
        Self {
            engine: RwLock::new(Arc::new(engine)),
            version: AtomicI64::new(version),
        }
    }

    pub fn engine(&self) -> Arc<PolicyEngine> {
        self.engine
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn version(&self) -> i64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn install(&self, engine: PolicyEngine, version: i64) {
        let mut slot = self
            .engine
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *slot = Arc::new(engine);
        self.version.store(version, Ordering::Release);
    }
}
