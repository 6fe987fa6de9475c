//! The repository's read-only answers: published metadata by its consistent-snapshot name,
//! and the targets of published releases.

use std::path::PathBuf;

use sigil_update::tuf::{MetadataFile, TargetName};

use super::Updates;
use crate::RequestError;

/// A target's content on disk.
#[derive(Debug, Clone)]
pub struct TargetFile {
    pub path: PathBuf,
    pub length: u64,
}

impl Updates {
    /// A published metadata file of `product`, as served; `None` if there is none.
    pub async fn metadata_file(
        &self,
        product: &str,
        file: MetadataFile,
    ) -> Result<Option<Vec<u8>>, RequestError> {
        let (role, version) = match file {
            MetadataFile::Root(v) => ("root", Some(v)),
            MetadataFile::LatestRoot => ("root", None),
            MetadataFile::Timestamp => ("timestamp", None),
            MetadataFile::Snapshot(v) => ("snapshot", Some(v)),
            MetadataFile::Targets(v) => ("targets", Some(v)),
        };
        Ok(self
            .store
            .tuf_document(product, role, version)
            .await?
            .map(|d| d.document))
    }

    /// The content of target `name` with SHA-256 `sha256`, if a published release of
    /// `product` ships it.
    pub async fn target_file(
        &self,
        product: &str,
        sha256: &str,
        name: &TargetName,
    ) -> Result<Option<TargetFile>, RequestError> {
        let Some(path) = self.artefact_path(sha256) else {
            return Ok(None);
        };
        let found = self.store.releases(product).await?.into_iter().find(|r| {
            r.state == "published" && r.sha256 == sha256 && r.target_name == name.as_str()
        });
        Ok(found.map(|r| TargetFile {
            path,
            length: r.length,
        }))
    }
}
