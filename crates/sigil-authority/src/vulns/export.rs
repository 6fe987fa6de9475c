//! A product's VEX, published (CRA Annex I Part II (4): fixed vulnerabilities made public):
//! every finding with its status (the product's own statement, else `affected` with what to
//! do), and, for each vulnerability, the firmware versions after an affected one whose
//! component no longer has it, as `fixed`.

use std::collections::{BTreeMap, BTreeSet};

use sigil_update::ReleaseVersion;
use sigil_vuln::csaf::{CsafHeader, to_csaf};
use sigil_vuln::vex::{OutStatement, VexStatus, product_purl, to_openvex};

use crate::{Authority, RequestError, rfc3339};

impl Authority {
    /// The product's VEX as an OpenVEX document.
    pub async fn product_openvex(&self, product: &str) -> Result<serde_json::Value, RequestError> {
        let (record, out) = self.product_vex(product, None).await?;
        let now = self.now();
        let now = now.replace_nanosecond(0).unwrap_or(now);
        Ok(to_openvex(
            &format!("Sigil, for {}", record.manufacturer),
            &format!(
                "https://sigil.invalid/vex/{product}/{}",
                now.unix_timestamp()
            ),
            &rfc3339(now),
            &out,
        ))
    }

    /// What the disclosure desk publishes of the product's VEX (CRA Annex I Part II (4) asks
    /// for *fixed* vulnerabilities): only `fixed` and `not_affected` statements, and only for a
    /// product with a disclosure policy of its own (publication is each product's choice; the
    /// organisation's policy alone publishes nothing). `None` otherwise.
    pub async fn public_vex(
        &self,
        product: &str,
    ) -> Result<Option<serde_json::Value>, RequestError> {
        if product.parse::<sigil_domain::ProductId>().is_err()
            || self.disclosure_policy(Some(product)).await?.is_none()
        {
            return Ok(None);
        }
        let (record, out) = self.product_vex(product, None).await?;
        let published: Vec<OutStatement> = out
            .into_iter()
            .filter(|s| matches!(s.status, VexStatus::Fixed | VexStatus::NotAffected))
            .collect();
        let now = self.now();
        let now = now.replace_nanosecond(0).unwrap_or(now);
        Ok(Some(to_openvex(
            &format!("Sigil, for {}", record.manufacturer),
            &format!(
                "https://sigil.invalid/vex/{product}/{}",
                now.unix_timestamp()
            ),
            &rfc3339(now),
            &published,
        )))
    }

    /// The product's VEX as a CSAF 2.0 document (profile `csaf_vex`).
    pub async fn product_csaf(&self, product: &str) -> Result<serde_json::Value, RequestError> {
        let (record, out) = self.product_vex(product, None).await?;
        if out.is_empty() {
            // CSAF requires at least one vulnerability (and a product tree to name).
            return Err(crate::Refusal::new(
                crate::RefusalKind::Conflict,
                "nothing-to-publish",
                "the product has no finding yet: a CSAF VEX document needs at least one vulnerability",
            )
            .into());
        }
        let now = self.now();
        let now = now.replace_nanosecond(0).unwrap_or(now);
        let stamp = rfc3339(now);
        let tracking_id = format!("sigil-vex-{product}-{}", now.unix_timestamp());
        Ok(to_csaf(
            &CsafHeader {
                manufacturer: &record.manufacturer,
                product: &record.name,
                namespace: "https://sigil.invalid",
                tracking_id: &tracking_id,
                now: &stamp,
            },
            &out,
        ))
    }

    /// The statements of the product's VEX, whatever format they are written in, from its
    /// findings (`found`, when the caller has them already).
    pub(super) async fn product_vex(
        &self,
        product: &str,
        found: Option<&super::ProductFindings>,
    ) -> Result<(sigil_domain::Product, Vec<OutStatement>), RequestError> {
        let product_id: sigil_domain::ProductId = product.parse()?;
        let record = self.store.get_product(product_id).await?;
        let computed;
        let found = match found {
            Some(f) => f,
            None => {
                computed = self.product_findings(product).await?;
                &computed
            }
        };
        let scheme = self.version_scheme(product).await?;
        let mut out = Vec::new();
        // (vulnerability, component name) -> firmware versions it affects.
        let mut affected: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for f in &found.findings {
            let vex = f.vex.as_ref();
            let status = vex
                .and_then(|v| VexStatus::parse(&v.status))
                .unwrap_or(VexStatus::Affected);
            if status == VexStatus::Affected || status == VexStatus::UnderInvestigation {
                affected
                    .entry((f.vulnerability.clone(), f.component.clone()))
                    .or_default()
                    .insert(f.firmware_version.clone());
            }
            let statement = match (status, vex.and_then(|v| v.statement.clone())) {
                (_, Some(s)) => Some(s),
                (VexStatus::Affected, None) => Some(match &f.fixed {
                    Some(v) => format!("update {} to {v} or later", f.component),
                    None => format!("no fixed version of {} is known yet", f.component),
                }),
                _ => None,
            };
            out.push(OutStatement {
                vulnerability: f.vulnerability.clone(),
                aliases: f
                    .ids
                    .iter()
                    .filter(|i| **i != f.vulnerability)
                    .cloned()
                    .collect(),
                product: product_purl(&record.name, &f.firmware_version),
                component: f.purl.clone(),
                status,
                justification: vex
                    .filter(|_| status == VexStatus::NotAffected)
                    .and_then(|v| v.justification.clone()),
                statement,
            });
        }
        // Fixed: a later firmware version whose SBOM has the component, at a version no
        // record finds affected.
        let order = |v: &str| ReleaseVersion::parse(scheme, v).ok();
        for sbom in self.store.sboms(product).await? {
            let Some(this) = order(&sbom.firmware_version) else {
                continue;
            };
            let components = self.store.sbom_components(&sbom.id).await?;
            for ((vulnerability, component), versions) in &affected {
                if versions.contains(&sbom.firmware_version) {
                    continue;
                }
                let after_affected = versions
                    .iter()
                    .filter_map(|v| order(v))
                    .any(|v| v.precedence(&this).is_lt());
                let Some(c) = components.iter().find(|c| &c.name == component) else {
                    continue;
                };
                if after_affected {
                    out.push(OutStatement {
                        vulnerability: vulnerability.clone(),
                        aliases: Vec::new(),
                        product: product_purl(&record.name, &sbom.firmware_version),
                        component: c.purl.clone(),
                        status: VexStatus::Fixed,
                        justification: None,
                        statement: None,
                    });
                }
            }
        }
        Ok((record, out))
    }
}
