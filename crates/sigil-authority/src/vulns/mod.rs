//! Vulnerabilities: the feeds (OSV records, single or archived; the KEV catalogue; EPSS
//! scores), product SBOMs, and the findings they give: each SBOM's components matched against
//! the records (`sigil_vuln`, pure), aliases merged into one finding, with KEV, EPSS, the fix
//! and the devices running that firmware.

use serde::Serialize;

use sigil_audit::Actor;
use sigil_store::{ComponentRow, ImportCounts, KevRow, NewSbom, SbomRecord, VulnRecordRow};
use sigil_vuln::archive::read_osv_archive;
use sigil_vuln::disclosure::not_an_advisory_id;
use sigil_vuln::epss::EpssScores;
use sigil_vuln::kev::KevCatalogue;
use sigil_vuln::{Ecosystem, OsvRecord, Sbom, SeverityLevel, VulnError};

use crate::{Authority, Refusal, RefusalKind, RequestError};

mod cases;
mod disclosure;
mod export;
mod facts;
mod findings;
mod handling;

pub use cases::{AlertView, CaseView, DeadlineView};
pub use disclosure::{Accepted, IntakeLimiter, ORGANISATION, Receipt, ReportStatus, ReportView};
pub(crate) use findings::CompiledCache;
pub use handling::DeviceFindings;

/// Review findings and cases every `every`, and as soon as a change asks for it.
pub fn spawn_reviews(
    authority: std::sync::Arc<Authority>,
    every: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = authority.vuln_review_wanted.notified() => {}
            }
            if let Err(e) = authority.review_vulnerabilities().await {
                tracing::error!(error = %e, "vulnerability review failed");
            }
        }
    })
}

/// What a feed file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedKind {
    /// One OSV record (JSON).
    Osv,
    /// OSV's per-ecosystem zip archive.
    OsvArchive,
    Kev,
    Epss,
}

impl FeedKind {
    /// From the bytes: a zip, a KEV catalogue, an OSV record, or EPSS's CSV.
    pub fn detect(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(b"PK\x03\x04") {
            return Some(Self::OsvArchive);
        }
        let start = bytes.iter().position(|b| !b.is_ascii_whitespace())?;
        match bytes[start] {
            b'{' if memfind(bytes, b"\"catalogVersion\"") => Some(Self::Kev),
            b'{' => Some(Self::Osv),
            b'#' | b'c' => Some(Self::Epss),
            _ => None,
        }
    }
}

fn memfind(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// What an import did.
#[derive(Debug, Clone, Serialize)]
pub struct FeedImport {
    pub kind: &'static str,
    pub records: u64,
    pub added: u64,
    pub updated: u64,
    pub unchanged: u64,
}

/// One vulnerability affecting one component of one firmware version.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The preferred id (a CVE where there is one), and every id it is known by.
    pub vulnerability: String,
    pub ids: Vec<String>,
    pub summary: Option<String>,
    /// From the records' CVSS vectors (the highest), else their databases' rating.
    pub severity: SeverityLevel,
    pub cvss_score: Option<f64>,
    /// When Sigil first found this vulnerability in this component of the product.
    pub first_seen: Option<String>,
    /// When the remediation policy wants it fixed (none once VEX says `not_affected` or
    /// `fixed`), and whether that has passed.
    pub remediation_due: Option<String>,
    pub overdue: bool,
    pub firmware_version: String,
    pub component: String,
    pub component_version: String,
    pub purl: Option<String>,
    /// The first version that fixes it, when a record says.
    pub fixed: Option<String>,
    /// Listed in CISA's Known Exploited Vulnerabilities catalogue (the date it was added).
    pub known_exploited: Option<String>,
    /// EPSS probability of exploitation in 30 days, and its percentile.
    pub epss: Option<(f64, f64)>,
    /// Devices of the product running this firmware version.
    pub devices: u64,
    /// What the product's VEX says of this vulnerability in this component, if anything:
    /// `not_affected` and `fixed` findings stay listed, marked.
    pub vex: Option<VexView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VexView {
    pub status: String,
    pub justification: Option<String>,
    pub statement: Option<String>,
}

/// Components no record could decide on, with why (a GIT range, an unknown version order).
#[derive(Debug, Clone, Serialize)]
pub struct Undecided {
    pub record: String,
    pub firmware_version: String,
    pub component: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProductFindings {
    pub findings: Vec<Finding>,
    pub undecided: Vec<Undecided>,
    /// More than `findings::MAX_FINDINGS` findings (or `MAX_UNDECIDED` undecided): the lists
    /// stop there.
    pub truncated: bool,
}

/// Parse an SBOM off the async workers: a 32 MiB document is seconds of CPU.
async fn parse_sbom(bytes: Vec<u8>) -> Result<Sbom, RequestError> {
    tokio::task::spawn_blocking(move || Sbom::parse(&bytes))
        .await
        .map_err(|e| crate::AuthorityError::Internal(format!("SBOM parser: {e}")))?
        .map_err(refused)
}

fn refused(e: VulnError) -> RequestError {
    let kind = match e {
        VulnError::TooLarge { .. } => RefusalKind::TooLarge,
        _ => RefusalKind::Invalid,
    };
    let code = match e {
        VulnError::UnsupportedSbom(_) => "unsupported-sbom",
        VulnError::Archive(_) => "invalid-archive",
        VulnError::Gzip(_) => "invalid-gzip",
        VulnError::InvalidVex(_) => "invalid-vex",
        VulnError::TooLarge { .. } => "too-large",
        _ => "invalid-document",
    };
    Refusal::new(kind, code, e.to_string()).into()
}

fn record_row(record: &OsvRecord, json: String) -> VulnRecordRow {
    let packages = record
        .affected
        .iter()
        .filter_map(|a| a.package.as_ref())
        .map(|p| {
            let ecosystem = Ecosystem::parse(&p.ecosystem);
            (
                ecosystem.base().to_string(),
                ecosystem.normalize_name(&p.name),
            )
        })
        .collect();
    VulnRecordRow {
        id: record.id.clone(),
        modified: record.modified.clone(),
        withdrawn: record.withdrawn.is_some(),
        summary: record.summary.clone(),
        record: json,
        aliases: record.aliases.clone(),
        packages,
    }
}

/// What the store keeps of an SBOM: the document as uploaded, and its components indexed.
fn new_sbom(
    product: &str,
    version: &str,
    release_id: Option<String>,
    bytes: &[u8],
    sbom: &Sbom,
) -> NewSbom {
    NewSbom {
        product_id: product.to_owned(),
        firmware_version: version.to_owned(),
        release_id,
        format: match sbom.format {
            sigil_vuln::SbomFormat::CycloneDx => "cyclonedx".into(),
            sigil_vuln::SbomFormat::Spdx => "spdx".into(),
        },
        spec_version: sbom.spec_version.clone(),
        sha256: hex::encode(sigil_ca::sha256(bytes)),
        document: bytes.to_vec(),
        components: sbom.components.iter().map(component_row).collect(),
    }
}

fn component_row(c: &sigil_vuln::Component) -> ComponentRow {
    let package = c.package();
    ComponentRow {
        name: c.name.clone(),
        // A version only in the purl counts.
        version: c
            .version
            .clone()
            .or_else(|| package.as_ref().and_then(|p| p.version.clone())),
        purl: c.purl.clone(),
        cpe: c.cpe.clone(),
        ecosystem: package.as_ref().map(|p| p.ecosystem.to_string()),
        package: package.map(|p| p.ecosystem.normalize_name(&p.name)),
    }
}

impl Authority {
    /// Import one feed file, all or nothing.
    pub async fn import_feed(
        &self,
        actor: &Actor,
        source: &str,
        kind: Option<FeedKind>,
        bytes: &[u8],
    ) -> Result<FeedImport, RequestError> {
        let imported = self.import_feed_now(actor, source, kind, bytes).await?;
        self.vuln_review_wanted.notify_one();
        Ok(imported)
    }

    async fn import_feed_now(
        &self,
        actor: &Actor,
        source: &str,
        kind: Option<FeedKind>,
        bytes: &[u8],
    ) -> Result<FeedImport, RequestError> {
        // FIRST publishes EPSS gzip'd; mirrors may compress the others.
        let inflated;
        let bytes = if sigil_vuln::archive::is_gzip(bytes) {
            inflated = sigil_vuln::archive::gunzip(bytes).map_err(refused)?;
            &inflated[..]
        } else {
            bytes
        };
        let kind = kind.or_else(|| FeedKind::detect(bytes)).ok_or_else(|| {
            Refusal::new(
                RefusalKind::Invalid,
                "unknown-feed",
                "not an OSV record or archive, a KEV catalogue or an EPSS file",
            )
        })?;
        let now = self.now();
        // The body's digest goes into the audit entry: which file changed the data.
        let sha256 = hex::encode(sigil_ca::sha256(bytes));
        let counts = |n: usize, c: ImportCounts, kind: &'static str| FeedImport {
            kind,
            records: n as u64,
            added: c.added,
            updated: c.updated,
            unchanged: c.unchanged,
        };
        match kind {
            FeedKind::Osv => {
                let record = OsvRecord::parse(bytes).map_err(refused)?;
                not_an_advisory_id(&record).map_err(refused)?;
                let row = record_row(&record, String::from_utf8_lossy(bytes).into_owned());
                let c = self
                    .store
                    .import_vuln_records(actor, source, &sha256, &[row], now)
                    .await?;
                Ok(counts(1, c, "osv"))
            }
            FeedKind::OsvArchive => {
                let mut rows = Vec::new();
                read_osv_archive(bytes, |record| {
                    not_an_advisory_id(&record)?;
                    let json = serde_json::to_string(&record).unwrap_or_default();
                    rows.push(record_row(&record, json));
                    Ok(())
                })
                .map_err(refused)?;
                let c = self
                    .store
                    .import_vuln_records(actor, source, &sha256, &rows, now)
                    .await?;
                Ok(counts(rows.len(), c, "osv-archive"))
            }
            FeedKind::Kev => {
                let catalogue = KevCatalogue::parse(bytes).map_err(refused)?;
                // An import replaces the catalogue: an empty one would clear every KEV flag.
                if catalogue.vulnerabilities.is_empty() {
                    return Err(Refusal::new(
                        RefusalKind::Invalid,
                        "empty-catalogue",
                        "the KEV catalogue lists no vulnerability; refusing to clear the known exploited list",
                    )
                    .into());
                }
                let rows: Vec<KevRow> = catalogue
                    .vulnerabilities
                    .iter()
                    .map(|e| KevRow {
                        cve: e.cve_id.clone(),
                        date_added: e.date_added.clone(),
                        due_date: e.due_date.clone(),
                        ransomware: e.known_ransomware_campaign_use.clone(),
                        name: e.vulnerability_name.clone(),
                    })
                    .collect();
                self.store
                    .import_kev(actor, &catalogue.catalog_version, &sha256, &rows, now)
                    .await?;
                // The catalogue is replaced whole: every entry counts as added.
                let all = ImportCounts {
                    added: rows.len() as u64,
                    ..ImportCounts::default()
                };
                Ok(counts(rows.len(), all, "kev"))
            }
            FeedKind::Epss => {
                let scores = EpssScores::parse(bytes).map_err(refused)?;
                self.store
                    .import_epss(
                        actor,
                        scores.score_date.as_deref(),
                        &sha256,
                        &scores.scores,
                        now,
                    )
                    .await?;
                let all = ImportCounts {
                    added: scores.scores.len() as u64,
                    ..ImportCounts::default()
                };
                Ok(counts(scores.scores.len(), all, "epss"))
            }
        }
    }

    /// Store the SBOM of `product`'s firmware `version` (a release's, when the product
    /// released that version through Sigil).
    pub async fn upload_sbom(
        &self,
        actor: &Actor,
        product: &str,
        version: &str,
        bytes: &[u8],
    ) -> Result<SbomRecord, RequestError> {
        let product_id: sigil_domain::ProductId = product.parse()?;
        self.store.get_product(product_id).await?;
        if version.is_empty() || version.len() > 64 || version.chars().any(char::is_control) {
            return Err(Refusal::invalid("version: 1 to 64 printable characters").into());
        }
        let sbom = parse_sbom(bytes.to_vec()).await?;
        let release_id = self
            .store
            .releases(product)
            .await?
            .into_iter()
            .find(|r| r.version == version)
            .map(|r| r.id);
        let new = new_sbom(product, version, release_id, bytes, &sbom);
        let stored = self.store.put_sbom(actor, &new, self.now()).await?;
        self.vuln_review_wanted.notify_one();
        Ok(stored)
    }

    /// Create a release; its SBOM (an uploaded artefact), if it names one, is read first (a
    /// malformed one refuses the release, nothing stored) and becomes the SBOM of the
    /// release's version.
    pub async fn create_release(
        &self,
        actor: &Actor,
        product: &str,
        new: crate::updates::NewRelease,
    ) -> Result<sigil_store::ReleaseRecord, RequestError> {
        let sbom = match &new.sbom_sha256 {
            Some(sha256) => {
                let path = self.updates().artefact_path(sha256).ok_or_else(|| {
                    Refusal::new(
                        RefusalKind::NotFound,
                        "unknown-artefact",
                        "no SBOM artefact with that SHA-256 was uploaded",
                    )
                })?;
                // Refused by its size before it is read: an artefact may be a gigabyte.
                let size = tokio::fs::metadata(&path)
                    .await
                    .map(|m| m.len())
                    .unwrap_or(0);
                if size > sigil_vuln::sbom::MAX_SBOM_BYTES as u64 {
                    return Err(refused(VulnError::TooLarge {
                        what: "SBOM",
                        limit: sigil_vuln::sbom::MAX_SBOM_BYTES,
                    }));
                }
                let bytes = match tokio::fs::read(&path).await {
                    Ok(b) => b,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(Refusal::new(
                            RefusalKind::NotFound,
                            "unknown-artefact",
                            "no SBOM artefact with that SHA-256 was uploaded",
                        )
                        .into());
                    }
                    Err(e) => {
                        return Err(crate::AuthorityError::Io { path, source: e }.into());
                    }
                };
                let parsed = parse_sbom(bytes.clone()).await?;
                Some((bytes, parsed))
            }
            None => None,
        };
        let release = self.updates().create_release(actor, product, new).await?;
        if let Some((bytes, parsed)) = sbom {
            let new = new_sbom(
                product,
                &release.version,
                Some(release.id.clone()),
                &bytes,
                &parsed,
            );
            self.store.put_sbom(actor, &new, self.now()).await?;
            self.vuln_review_wanted.notify_one();
        }
        Ok(release)
    }

    /// Record a VEX document (OpenVEX, CycloneDX VEX or CSAF VEX) for `product`: each
    /// statement speaks of one vulnerability in one component of it (or in the whole product).
    pub async fn import_vex(
        &self,
        actor: &Actor,
        product: &str,
        bytes: &[u8],
    ) -> Result<usize, RequestError> {
        let product_id: sigil_domain::ProductId = product.parse()?;
        self.store.get_product(product_id).await?;
        let doc = sigil_vuln::vex::VexDocument::parse(bytes).map_err(refused)?;
        let rows: Vec<sigil_store::VexRow> = doc
            .statements
            .iter()
            .map(|s| sigil_store::VexRow {
                vulnerability: s.vulnerability.clone(),
                component: s.component.clone().unwrap_or_default(),
                status: s.status.as_str().to_owned(),
                justification: s.justification.clone(),
                statement: s.statement.clone(),
            })
            .collect();
        let format = match doc.format {
            sigil_vuln::vex::VexFormat::OpenVex => "openvex",
            sigil_vuln::vex::VexFormat::CycloneDx => "cyclonedx",
            sigil_vuln::vex::VexFormat::Csaf => "csaf",
        };
        let sha256 = hex::encode(sigil_ca::sha256(bytes));
        self.store
            .put_vex(actor, product, format, &sha256, &rows, self.now())
            .await?;
        self.vuln_review_wanted.notify_one();
        Ok(rows.len())
    }

    /// An SBOM as Sigil read it (to write it back in either format).
    pub async fn sbom_document(&self, id: &str) -> Result<(SbomRecord, Sbom), RequestError> {
        let record = self.store.sbom(id).await?;
        let bytes = self.store.sbom_document(id).await?;
        let sbom = parse_sbom(bytes).await?;
        Ok((record, sbom))
    }
}
