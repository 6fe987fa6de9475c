//! Installing a verified target. The built-in installer keeps two slots and switches between
//! them by an atomic rename, so a crash at any moment leaves `current` on a complete slot:
//!
//! ```text
//! DIR/.lock              held by the one update running (a second one is refused)
//! DIR/slot-a/            files/<the target's file>, and release.json (target, version, hash)
//! DIR/slot-b/
//! DIR/slot-b.new/        a slot being written (removed on the next start if left over)
//! DIR/current -> slot-a  replaced by rename(2) of a fresh symlink
//! DIR/pending.json       the previous slot and a deadline while the new one proves healthy
//! ```
//!
//! The new slot must pass the health command (if one is configured) before the deadline, or
//! `current` goes back to the previous slot. A command installer (`--installer-command`)
//! replaces the slots: it gets the verified file and the version.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::error::{AgentError, state_err};

#[derive(Debug, Clone)]
pub struct InstallOptions {
    pub dir: PathBuf,
    /// `CMD FILE VERSION` installs instead of the A/B slots; exit 0 means installed.
    pub command: Option<PathBuf>,
    /// `CMD SLOT_DIR` after the switch, retried until the deadline; exit 0 means healthy.
    pub health_command: Option<PathBuf>,
    pub health_deadline: Duration,
}

/// What a slot (or the command installer's record) says was installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    pub target: String,
    pub version: Option<String>,
    pub sha256: String,
    pub length: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    previous: Option<String>,
    new: String,
    deadline_unix: i64,
}

/// Die here if the test harness asks (`SIGIL_AGENT_CRASH_AT=<step>`), as a power cut
/// would: no cleanup runs. Compiled into debug builds only.
fn crash_point(step: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("SIGIL_AGENT_CRASH_AT").is_ok_and(|s| s == step) {
        std::process::abort();
    }
    #[cfg(not(debug_assertions))]
    let _ = step;
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AgentError + '_ {
    move |e| state_err(&path.display().to_string(), e)
}

async fn sync_dir(dir: &Path) -> Result<(), AgentError> {
    tokio::fs::File::open(dir)
        .await
        .map_err(io(dir))?
        .sync_all()
        .await
        .map_err(io(dir))
}

/// The slot `current` names, if any.
async fn current_slot(dir: &Path) -> Option<String> {
    let link = tokio::fs::read_link(dir.join("current")).await.ok()?;
    link.to_str().map(str::to_owned)
}

/// Point `current` at `slot` atomically: a new symlink renamed over the old.
async fn switch(dir: &Path, slot: &str) -> Result<(), AgentError> {
    let fresh = dir.join("current.new");
    let _ = tokio::fs::remove_file(&fresh).await;
    tokio::fs::symlink(slot, &fresh).await.map_err(io(&fresh))?;
    tokio::fs::rename(&fresh, dir.join("current"))
        .await
        .map_err(io(dir))?;
    sync_dir(dir).await
}

/// What is installed now.
pub async fn installed(opts: &InstallOptions) -> Result<Option<Installed>, AgentError> {
    let record = match opts.command {
        Some(_) => opts.dir.join("installed.json"),
        None => match current_slot(&opts.dir).await {
            Some(slot) => opts.dir.join(slot).join("release.json"),
            None => return Ok(None),
        },
    };
    match tokio::fs::read(&record).await {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| state_err("release.json", e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(state_err("release.json", e)),
    }
}

/// Put what the running slot holds into `posture`: the release (target, version, SHA-256)
/// the agent installed after verifying it, and its version as the firmware version (the
/// firmware Sigil updates is what the device runs). Nothing installed yet: left as it is.
pub async fn describe_installed(
    posture: &mut sigil_domain::Posture,
    opts: &InstallOptions,
) -> Result<(), AgentError> {
    if let Some(i) = installed(opts).await? {
        if i.version.is_some() {
            posture.firmware_version.clone_from(&i.version);
        }
        posture.installed_release = Some(sigil_domain::InstalledRelease {
            target: i.target,
            version: i.version,
            sha256: i.sha256,
        });
    }
    Ok(())
}

/// Hold the install directory for one update: a second `sigil-agent update` at the same time
/// is refused rather than allowed to rename the other's half-written slot into place.
pub fn lock(opts: &InstallOptions) -> Result<std::fs::File, AgentError> {
    std::fs::create_dir_all(&opts.dir)
        .map_err(|e| state_err(&opts.dir.display().to_string(), e))?;
    let path = opts.dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| state_err(&path.display().to_string(), e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(AgentError::State(format!(
            "another update is running in {}",
            opts.dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(state_err(&path.display().to_string(), e)),
    }
}

/// Finish what a crash interrupted: remove half-written slots, and settle a switch whose
/// health was never decided (checked again, or rolled back once its deadline has passed).
pub async fn recover(opts: &InstallOptions) -> Result<(), AgentError> {
    tokio::fs::create_dir_all(&opts.dir)
        .await
        .map_err(io(&opts.dir))?;
    for leftover in ["slot-a.new", "slot-b.new", "incoming"] {
        let _ = tokio::fs::remove_dir_all(opts.dir.join(leftover)).await;
    }
    let _ = tokio::fs::remove_file(opts.dir.join("current.new")).await;
    let pending_path = opts.dir.join("pending.json");
    let Ok(bytes) = tokio::fs::read(&pending_path).await else {
        return Ok(());
    };
    let pending: Pending =
        serde_json::from_slice(&bytes).map_err(|e| state_err("pending.json", e))?;
    if current_slot(&opts.dir).await.as_deref() != Some(pending.new.as_str()) {
        // The crash came before the switch: nothing to undo.
        return remove_pending(&opts.dir).await;
    }
    let remaining = pending.deadline_unix - time::OffsetDateTime::now_utc().unix_timestamp();
    let healthy = remaining > 0
        && health(
            opts,
            &pending.new,
            Duration::from_secs(remaining.unsigned_abs()),
        )
        .await;
    settle(opts, &pending, healthy).await
}

async fn remove_pending(dir: &Path) -> Result<(), AgentError> {
    let _ = tokio::fs::remove_file(dir.join("pending.json")).await;
    sync_dir(dir).await
}

/// Keep the new slot, or go back to the previous one.
async fn settle(opts: &InstallOptions, pending: &Pending, healthy: bool) -> Result<(), AgentError> {
    if healthy {
        return remove_pending(&opts.dir).await;
    }
    match &pending.previous {
        Some(previous) => switch(&opts.dir, previous).await?,
        None => {
            let _ = tokio::fs::remove_file(opts.dir.join("current")).await;
            sync_dir(&opts.dir).await?;
        }
    }
    remove_pending(&opts.dir).await?;
    Err(AgentError::InstallFailed(format!(
        "the new slot did not report healthy within {} s; rolled back",
        opts.health_deadline.as_secs()
    )))
}

/// Run the health command until it succeeds or `within` has passed.
async fn health(opts: &InstallOptions, slot: &str, within: Duration) -> bool {
    let Some(command) = &opts.health_command else {
        return true;
    };
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let run = tokio::process::Command::new(command)
            .arg(opts.dir.join(slot))
            .kill_on_drop(true)
            .status();
        if let Ok(Ok(status)) = tokio::time::timeout_at(deadline, run).await
            && status.success()
        {
            return true;
        }
        if tokio::time::Instant::now() + Duration::from_secs(1) >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A target being written to the inactive slot (or the command installer's incoming file).
pub struct Staging {
    dir: PathBuf,
    file: tokio::fs::File,
    path: PathBuf,
    written: u64,
}

impl Staging {
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), AgentError> {
        self.file.write_all(chunk).await.map_err(io(&self.path))?;
        self.written += chunk.len() as u64;
        crash_point("downloading");
        Ok(())
    }
}

fn other_slot(current: Option<&str>) -> &'static str {
    if current == Some("slot-a") {
        "slot-b"
    } else {
        "slot-a"
    }
}

/// Open the place the target is written to: `slot-X.new/<file>` for the inactive slot.
pub async fn begin(opts: &InstallOptions, target: &str) -> Result<Staging, AgentError> {
    let file_name = target.rsplit('/').next().unwrap_or(target).to_owned();
    let dir = match opts.command {
        Some(_) => opts.dir.join("incoming"),
        None => opts.dir.join(format!(
            "{}.new",
            other_slot(current_slot(&opts.dir).await.as_deref())
        )),
    };
    let _ = tokio::fs::remove_dir_all(&dir).await;
    tokio::fs::create_dir_all(&dir).await.map_err(io(&dir))?;
    // The payload lives under `files/`, apart from the slot's own records: a target named
    // `release.json` cannot overwrite them.
    let files = dir.join("files");
    tokio::fs::create_dir_all(&files)
        .await
        .map_err(io(&files))?;
    let path = files.join(&file_name);
    let file = tokio::fs::File::create(&path).await.map_err(io(&path))?;
    Ok(Staging {
        dir,
        file,
        path,
        written: 0,
    })
}

/// Install a completely downloaded and verified target.
pub async fn finish(
    opts: &InstallOptions,
    mut staging: Staging,
    record: &Installed,
) -> Result<(), AgentError> {
    staging.file.flush().await.map_err(io(&staging.path))?;
    staging.file.sync_all().await.map_err(io(&staging.path))?;
    if staging.written != record.length {
        return Err(AgentError::InstallFailed(
            "the written file is not the verified length".into(),
        ));
    }
    crash_point("downloaded");
    let json = serde_json::to_vec_pretty(record).map_err(|e| state_err("release.json", e))?;
    if let Some(command) = &opts.command {
        return install_with_command(opts, command, &staging, record, &json).await;
    }
    let record_path = staging.dir.join("release.json");
    tokio::fs::write(&record_path, &json)
        .await
        .map_err(io(&record_path))?;
    tokio::fs::File::open(&record_path)
        .await
        .map_err(io(&record_path))?
        .sync_all()
        .await
        .map_err(io(&record_path))?;
    sync_dir(&staging.dir).await?;
    let previous = current_slot(&opts.dir).await;
    let slot = other_slot(previous.as_deref()).to_owned();
    let slot_dir = opts.dir.join(&slot);
    let _ = tokio::fs::remove_dir_all(&slot_dir).await;
    tokio::fs::rename(&staging.dir, &slot_dir)
        .await
        .map_err(io(&slot_dir))?;
    sync_dir(&opts.dir).await?;
    crash_point("staged");
    let deadline = time::OffsetDateTime::now_utc() + opts.health_deadline;
    let pending = Pending {
        previous,
        new: slot.clone(),
        deadline_unix: deadline.unix_timestamp(),
    };
    let pending_path = opts.dir.join("pending.json");
    let bytes = serde_json::to_vec(&pending).map_err(|e| state_err("pending.json", e))?;
    tokio::fs::write(&pending_path, bytes)
        .await
        .map_err(io(&pending_path))?;
    sync_dir(&opts.dir).await?;
    switch(&opts.dir, &slot).await?;
    crash_point("switched");
    let healthy = health(opts, &slot, opts.health_deadline).await;
    settle(opts, &pending, healthy).await?;
    crash_point("committed");
    Ok(())
}

async fn install_with_command(
    opts: &InstallOptions,
    command: &Path,
    staging: &Staging,
    record: &Installed,
    json: &[u8],
) -> Result<(), AgentError> {
    let status = tokio::process::Command::new(command)
        .arg(&staging.path)
        .arg(record.version.as_deref().unwrap_or(""))
        .status()
        .await
        .map_err(|e| AgentError::InstallFailed(format!("{}: {e}", command.display())))?;
    let _ = tokio::fs::remove_dir_all(&staging.dir).await;
    if !status.success() {
        return Err(AgentError::InstallFailed(format!(
            "{} exited with {status}",
            command.display()
        )));
    }
    let path = opts.dir.join("installed.json");
    let fresh = opts.dir.join("installed.json.new");
    tokio::fs::write(&fresh, json).await.map_err(io(&fresh))?;
    tokio::fs::rename(&fresh, &path).await.map_err(io(&path))?;
    sync_dir(&opts.dir).await
}
