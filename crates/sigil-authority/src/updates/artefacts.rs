//! Uploaded artefacts, stored by content: `DATA_DIR/artefacts/sha256/<hex>`. An upload is
//! written to `incoming/` while it is hashed, made durable, then renamed into place, so a
//! crash or a refused upload never leaves a partial file under a content name.

use std::path::{Path, PathBuf};

use aws_lc_rs::digest::{Context, SHA256};
use tokio::io::AsyncWriteExt;

use sigil_audit::Actor;

use super::Updates;
use crate::{AuthorityError, Refusal, RefusalKind, RequestError};

/// An artefact as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artefact {
    pub sha256: String,
    pub length: u64,
    /// Whether this upload added it (`false`: the same content was already stored).
    pub created: bool,
}

/// An upload in progress. Dropped unfinished, its partial file is removed.
pub struct ArtefactUpload {
    file: Option<tokio::fs::File>,
    partial: PathBuf,
    dir: PathBuf,
    hasher: Context,
    length: u64,
    limit: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RequestError + '_ {
    move |source| {
        AuthorityError::Io {
            path: path.to_owned(),
            source,
        }
        .into()
    }
}

impl ArtefactUpload {
    /// Append `chunk`; refused once the artefact grows past the server's limit.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), RequestError> {
        self.length += chunk.len() as u64;
        if self.length > self.limit {
            return Err(too_large(self.limit));
        }
        self.hasher.update(chunk);
        let file = self.file.as_mut().ok_or_else(|| io_closed(&self.partial))?;
        file.write_all(chunk).await.map_err(io(&self.partial))
    }

    /// Make the upload durable under its content name and record it (with an audit entry the
    /// first time this content is stored).
    pub async fn finish(
        mut self,
        updates: &Updates,
        actor: &Actor,
    ) -> Result<Artefact, RequestError> {
        if self.length == 0 {
            return Err(Refusal::new(
                RefusalKind::Invalid,
                "empty-artefact",
                "the artefact is empty",
            )
            .into());
        }
        let mut file = self.file.take().ok_or_else(|| io_closed(&self.partial))?;
        file.flush().await.map_err(io(&self.partial))?;
        file.sync_all().await.map_err(io(&self.partial))?;
        drop(file);
        let sha256 = hex::encode(self.hasher.clone().finish());
        let target = self.dir.join("sha256").join(&sha256);
        tokio::fs::rename(&self.partial, &target)
            .await
            .map_err(io(&target))?;
        sync_dir(&self.dir.join("sha256")).await?;
        let created = updates
            .store
            .record_artefact(actor, &sha256, self.length, updates.now())
            .await?;
        Ok(Artefact {
            sha256,
            length: self.length,
            created,
        })
    }
}

impl Drop for ArtefactUpload {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

fn io_closed(path: &Path) -> RequestError {
    AuthorityError::Io {
        path: path.to_owned(),
        source: std::io::Error::other("upload already finished"),
    }
    .into()
}

fn too_large(limit: u64) -> RequestError {
    Refusal::new(
        RefusalKind::TooLarge,
        "artefact-too-large",
        format!("an artefact may be at most {limit} bytes"),
    )
    .into()
}

async fn sync_dir(dir: &Path) -> Result<(), RequestError> {
    let handle = tokio::fs::File::open(dir).await.map_err(io(dir))?;
    handle.sync_all().await.map_err(io(dir))
}

impl Updates {
    /// Start an upload. `declared_length` (a Content-Length) is checked against the limit
    /// before anything is written.
    pub async fn begin_artefact(
        &self,
        declared_length: Option<u64>,
    ) -> Result<ArtefactUpload, RequestError> {
        let limit = self.settings.max_artefact_bytes;
        if declared_length.is_some_and(|n| n > limit) {
            return Err(too_large(limit));
        }
        let incoming = self.artefacts.join("incoming");
        for dir in [&incoming, &self.artefacts.join("sha256")] {
            tokio::fs::create_dir_all(dir).await.map_err(io(dir))?;
        }
        let partial = incoming.join(uuid::Uuid::new_v4().to_string());
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial)
            .await
            .map_err(io(&partial))?;
        Ok(ArtefactUpload {
            file: Some(file),
            partial,
            dir: self.artefacts.clone(),
            hasher: Context::new(&SHA256),
            length: 0,
            limit,
        })
    }

    /// Where a stored artefact's content is, if it is stored.
    pub(crate) fn artefact_path(&self, sha256: &str) -> Option<PathBuf> {
        let valid = sha256.len() == 64
            && sha256
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        valid.then(|| self.artefacts.join("sha256").join(sha256))
    }
}
