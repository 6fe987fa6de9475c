//! The agent's state directory. An identity is a *generation*: a directory holding the key, the
//! certificate and the chain. `current` is a symlink to the one in use, replaced by `rename`
//! (atomic on POSIX) only after the new generation is complete and fsynced. A crash at any
//! point leaves `current` naming a complete, working identity; a half-written generation is
//! ignored and removed on the next attempt.
//!
//! ```text
//! DIR/                    0700
//!   agent.json            server URL, pinned CA fingerprint, device id
//!   ca.pem                the pinned root CA (its SHA-256 is the pinned fingerprint)
//!   generations/<n>/      key.pem (0600, written first), cert.pem, chain.pem
//!   current -> generations/<n>
//! ```

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{AgentError, state_err};

/// What `enroll` records once, for `run` to reuse.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AgentConfig {
    pub server: String,
    /// Lowercase hex SHA-256 of the root CA certificate DER.
    pub ca_fingerprint: String,
    pub device_id: String,
}

/// A complete identity: the device's key, its certificate and the chain above it.
#[derive(Debug, Clone)]
pub struct Identity {
    pub generation: u64,
    pub key_pem: String,
    pub cert_pem: String,
    pub chain_pem: String,
}

impl Identity {
    pub fn cert_der(&self) -> Result<Vec<u8>, AgentError> {
        pem::parse(&self.cert_pem)
            .map(pem::Pem::into_contents)
            .map_err(|e| state_err("cert.pem", e))
    }
}

/// Replace `path` with `data`: written beside it, fsynced, renamed over it, the directory
/// fsynced; a crash leaves the old file or the new one, never a mix.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), AgentError> {
    let fresh = path.with_extension("new");
    write_synced(&fresh, data, 0o600)?;
    fs::rename(&fresh, path).map_err(|e| state_err(&path.display().to_string(), e))?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| state_err(&dir.display().to_string(), e))?;
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

fn write_synced(path: &Path, data: &[u8], mode: u32) -> Result<(), AgentError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|e| state_err(&path.display().to_string(), e))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| state_err(&path.display().to_string(), e))
}

fn sync_dir(path: &Path) -> Result<(), AgentError> {
    fs::File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(|e| state_err(&path.display().to_string(), e))
}

fn read(path: &Path) -> Result<String, AgentError> {
    fs::read_to_string(path).map_err(|e| state_err(&path.display().to_string(), e))
}

impl StateDir {
    /// Open (creating, owner-only) a state directory.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, AgentError> {
        let root = root.into();
        fs::create_dir_all(root.join("generations"))
            .map_err(|e| state_err(&root.display().to_string(), e))?;
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700))
            .map_err(|e| state_err(&root.display().to_string(), e))?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn save_config(&self, config: &AgentConfig, ca_pem: &str) -> Result<(), AgentError> {
        let json = serde_json::to_vec_pretty(config).map_err(|e| state_err("agent.json", e))?;
        write_synced(&self.root.join("ca.pem"), ca_pem.as_bytes(), 0o644)?;
        write_synced(&self.root.join("agent.json"), &json, 0o644)?;
        sync_dir(&self.root)
    }

    pub fn config(&self) -> Result<AgentConfig, AgentError> {
        let path = self.root.join("agent.json");
        if !path.exists() {
            return Err(AgentError::NotEnrolled);
        }
        serde_json::from_str(&read(&path)?).map_err(|e| state_err("agent.json", e))
    }

    pub fn ca_pem(&self) -> Result<String, AgentError> {
        read(&self.root.join("ca.pem"))
    }

    fn generation_dir(&self, n: u64) -> PathBuf {
        self.root.join("generations").join(n.to_string())
    }

    /// The identity `current` names, if any.
    pub fn current(&self) -> Result<Option<Identity>, AgentError> {
        let link = self.root.join("current");
        let Ok(target) = fs::read_link(&link) else {
            return Ok(None);
        };
        let generation = target
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| state_err("current", "does not name a generation"))?;
        let dir = self.generation_dir(generation);
        Ok(Some(Identity {
            generation,
            key_pem: read(&dir.join("key.pem"))?,
            cert_pem: read(&dir.join("cert.pem"))?,
            chain_pem: read(&dir.join("chain.pem"))?,
        }))
    }

    /// The key of generation `n` if it was staged but never completed (a crash or a lost
    /// answer): a retry reuses it, so a server that did issue can hand back the same
    /// certificate.
    pub fn staged_key(&self, n: u64) -> Option<String> {
        let dir = self.generation_dir(n);
        if dir.join("cert.pem").exists() {
            return None;
        }
        std::fs::read_to_string(dir.join("key.pem")).ok()
    }

    /// Start generation `n` with its private key (owner-only, fsynced), clearing any
    /// half-written generation of that number left by a crash.
    pub fn stage_key(&self, n: u64, key_pem: &str) -> Result<(), AgentError> {
        let dir = self.generation_dir(n);
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(|e| state_err(&dir.display().to_string(), e))?;
        }
        fs::create_dir_all(&dir).map_err(|e| state_err(&dir.display().to_string(), e))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| state_err(&dir.display().to_string(), e))?;
        write_synced(&dir.join("key.pem"), key_pem.as_bytes(), 0o600)?;
        sync_dir(&dir)
    }

    /// Complete generation `n` with its certificate and chain, then make it current. Earlier
    /// generations are removed only after the switch is durable.
    pub fn commit(&self, n: u64, cert_pem: &str, chain_pem: &str) -> Result<(), AgentError> {
        let dir = self.generation_dir(n);
        write_synced(&dir.join("cert.pem"), cert_pem.as_bytes(), 0o644)?;
        write_synced(&dir.join("chain.pem"), chain_pem.as_bytes(), 0o644)?;
        sync_dir(&dir)?;
        let tmp = self.root.join("current.new");
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(Path::new("generations").join(n.to_string()), &tmp)
            .map_err(|e| state_err("current.new", e))?;
        fs::rename(&tmp, self.root.join("current")).map_err(|e| state_err("current", e))?;
        sync_dir(&self.root)?;
        self.remove_generations_except(n)
    }

    /// Replace the chain of the current generation (CA rollover), atomically.
    pub fn update_chain(&self, n: u64, chain_pem: &str) -> Result<(), AgentError> {
        let dir = self.generation_dir(n);
        let tmp = dir.join("chain.pem.new");
        write_synced(&tmp, chain_pem.as_bytes(), 0o644)?;
        fs::rename(&tmp, dir.join("chain.pem")).map_err(|e| state_err("chain.pem", e))?;
        sync_dir(&dir)
    }

    fn remove_generations_except(&self, keep: u64) -> Result<(), AgentError> {
        let dir = self.root.join("generations");
        for entry in fs::read_dir(&dir)
            .map_err(|e| state_err("generations", e))?
            .flatten()
        {
            if entry.file_name().to_str() != Some(&keep.to_string()) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_before_commit_leaves_the_old_identity_current() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(tmp.path().join("s")).unwrap();
        assert!(state.current().unwrap().is_none());
        state.stage_key(1, "KEY1").unwrap();
        state.commit(1, "CERT1", "CHAIN1").unwrap();
        // Generation 2: key written, then the process dies before the certificate arrives.
        state.stage_key(2, "KEY2").unwrap();
        let current = state.current().unwrap().unwrap();
        assert_eq!(
            (
                current.generation,
                current.key_pem.as_str(),
                current.cert_pem.as_str()
            ),
            (1, "KEY1", "CERT1")
        );
        let mode = fs::metadata(state.generation_dir(2).join("key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // The retry starts generation 2 afresh and completes it; generation 1 goes.
        state.stage_key(2, "KEY2b").unwrap();
        state.commit(2, "CERT2", "CHAIN2").unwrap();
        let current = state.current().unwrap().unwrap();
        assert_eq!((current.generation, current.key_pem.as_str()), (2, "KEY2b"));
        assert!(!state.generation_dir(1).exists());
    }
}
