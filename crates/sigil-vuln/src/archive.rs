//! OSV's per-ecosystem archives (`https://osv-vulnerabilities.storage.googleapis.com/ECOSYSTEM/all.zip`):
//! a zip of one JSON record per entry, read from memory with limits a crafted archive cannot
//! get past: entries counted, each entry's inflated size capped while it is read (the header's
//! sizes are not trusted), the whole archive's inflated size capped too.

use std::io::Read;

use crate::VulnError;
use crate::osv::{MAX_RECORD_BYTES, OsvRecord};

/// Most entries in one archive (OSV's largest ecosystem has under 100,000 records).
pub const MAX_ENTRIES: usize = 1_000_000;
/// Most bytes all entries inflate to.
pub const MAX_INFLATED_BYTES: u64 = 1024 * 1024 * 1024;

/// What reading an archive found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveStats {
    pub records: usize,
    /// Entries that are not `.json` files (directories, a README).
    pub skipped: usize,
    pub inflated_bytes: u64,
}

fn bomb(reason: String) -> VulnError {
    VulnError::Archive(reason)
}

/// Hand every record of the archive to `visit`, in the archive's order. Any malformed entry
/// fails the whole archive (the caller stores nothing of it).
pub fn read_osv_archive(
    bytes: &[u8],
    mut visit: impl FnMut(OsvRecord) -> Result<(), VulnError>,
) -> Result<ArchiveStats, VulnError> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| bomb(format!("not a zip archive: {e}")))?;
    if archive.len() > MAX_ENTRIES {
        return Err(bomb(format!(
            "{} entries (at most {MAX_ENTRIES})",
            archive.len()
        )));
    }
    let mut stats = ArchiveStats::default();
    let mut buffer = Vec::new();
    for i in 0..archive.len() {
        let entry = archive
            .by_index(i)
            .map_err(|e| bomb(format!("entry {i}: {e}")))?;
        let full = entry.name().map_err(|e| bomb(format!("entry {i}: {e}")))?;
        let is_record = full.ends_with(".json");
        let name = full.chars().take(200).collect::<String>();
        if entry.is_dir() || !is_record {
            stats.skipped += 1;
            continue;
        }
        buffer.clear();
        // One byte more than allowed tells an oversized entry from one exactly at the limit.
        let read = entry
            .take(MAX_RECORD_BYTES as u64 + 1)
            .read_to_end(&mut buffer)
            .map_err(|e| bomb(format!("{name}: {e}")))?;
        if read > MAX_RECORD_BYTES {
            return Err(bomb(format!(
                "{name} inflates past {MAX_RECORD_BYTES} bytes"
            )));
        }
        stats.inflated_bytes += read as u64;
        if stats.inflated_bytes > MAX_INFLATED_BYTES {
            return Err(bomb(format!(
                "the archive inflates past {MAX_INFLATED_BYTES} bytes"
            )));
        }
        let record = OsvRecord::parse(&buffer).map_err(|e| bomb(format!("{name}: {e}")))?;
        visit(record)?;
        stats.records += 1;
    }
    Ok(stats)
}

/// Most bytes a gzip'd feed inflates to (FIRST's EPSS file is about 10 MB inflated).
pub const MAX_GUNZIPPED_BYTES: u64 = 256 * 1024 * 1024;

/// Whether `bytes` start like a gzip stream.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Inflate a gzip'd feed (every member), refusing past [`MAX_GUNZIPPED_BYTES`] while it is
/// read: the header's size is not trusted.
pub fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, VulnError> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(MAX_GUNZIPPED_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| VulnError::Gzip(format!("not a gzip file: {e}")))?;
    if out.len() as u64 > MAX_GUNZIPPED_BYTES {
        return Err(VulnError::Gzip(format!(
            "the gzip file inflates past {MAX_GUNZIPPED_BYTES} bytes"
        )));
    }
    Ok(out)
}
