//! One server per data directory and per database (see `sigil_store::exclusive` for why).
//! The data directory and an SQLite database are locked with `flock` on a lock file of their
//! own, which the kernel releases when the process exits however it exits. (Not on the
//! database file itself: closing any descriptor of a file drops every POSIX lock the process
//! holds on it, SQLite's included.)

use std::fs::File;
use std::path::Path;

use rustix::fs::{FlockOperation, flock};
use sigil_store::exclusive::{DatabaseLock, lock_database, sqlite_path};

use crate::AuthorityError;
use crate::datadir::DataDir;

/// Name of the lock file in the data directory.
pub const LOCK_FILE: &str = "sigil.lock";

/// Held while the process serves; dropping it releases the locks.
#[derive(Debug)]
pub struct ProcessLock {
    _files: Vec<File>,
    _database: DatabaseLock,
}

fn lock_file(path: &Path, what: &str) -> Result<File, AuthorityError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| AuthorityError::Config(format!("cannot open {}: {e}", path.display())))?;
    flock(&file, FlockOperation::NonBlockingLockExclusive).map_err(|e| {
        if e == rustix::io::Errno::WOULDBLOCK {
            AuthorityError::Config(format!(
                "another Sigil process is using {what} {} (it holds the lock on {}); run one process per data directory and database",
                path.parent().unwrap_or(path).display(),
                path.display()
            ))
        } else {
            AuthorityError::Config(format!("cannot lock {}: {e}", path.display()))
        }
    })?;
    Ok(file)
}

/// Lock the data directory and the database `url`, or say who holds them.
pub async fn lock(dir: &DataDir, url: &str) -> Result<ProcessLock, AuthorityError> {
    let mut files = vec![lock_file(
        &dir.root().join(LOCK_FILE),
        "the data directory",
    )?];
    if let Some(path) = sqlite_path(url) {
        let mut name = path.clone().into_os_string();
        name.push(".sigil-lock");
        files.push(lock_file(Path::new(&name), "the SQLite database")?);
    }
    let database = lock_database(url, std::time::Duration::from_secs(5)).await?;
    Ok(ProcessLock {
        _files: files,
        _database: database,
    })
}
