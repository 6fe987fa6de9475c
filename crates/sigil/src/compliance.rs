//! `sigil compliance report`: the server's posture report for one framework, as a
//! self-contained HTML page for auditors, JSON, or CSV.

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::cli::ComplianceCommand;
use crate::client::ApiClient;

pub async fn compliance(cmd: ComplianceCommand) -> Result<()> {
    match cmd {
        ComplianceCommand::Report {
            framework,
            format,
            out,
            client,
        } => {
            if !["html", "json", "csv", "oscal"].contains(&format.as_str()) {
                bail!("--format must be html, json, csv or oscal, not `{format}`");
            }
            let api = ApiClient::from_args(&client)?;
            let report = api.get(&format!("/api/v1/compliance/{framework}")).await?;
            let attestations = api.get("/api/v1/compliance/attestations").await?;
            let text = match format.as_str() {
                "json" => serde_json::to_string_pretty(
                    &json!({"report": report, "attestations": attestations}),
                )?,
                "csv" => sigil_reports::csv(&report),
                "oscal" => {
                    // The catalogue goes beside the results, which link to it by file name.
                    let catalogue = sigil_compliance::Catalogue::shipped()?;
                    let definition = component_definition_path(&out);
                    let href = definition
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or("component-definition.json")
                        .to_owned();
                    let results =
                        sigil_reports::oscal::assessment_results(&report, &catalogue, &href)?;
                    let now = report["evaluated_at"].as_str().unwrap_or_default();
                    let doc = sigil_reports::oscal::component_definition(&catalogue, now);
                    std::fs::write(&definition, serde_json::to_string_pretty(&doc)?)
                        .with_context(|| format!("writing {}", definition.display()))?;
                    println!(
                        "OSCAL component-definition written to {}",
                        definition.display()
                    );
                    serde_json::to_string_pretty(&results)?
                }
                _ => sigil_reports::html(&report, &attestations),
            };
            std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "{}: {} requirements ({} pass, {} fail, {} unknown, {} not applicable), score {}%; written to {}",
                report["framework"].as_str().unwrap_or_default(),
                report["requirements"].as_array().map_or(0, Vec::len),
                report["summary"]["pass"],
                report["summary"]["fail"],
                report["summary"]["unknown"],
                report["summary"]["not_applicable"],
                report["score"],
                out.display()
            );
            Ok(())
        }
    }
}

/// `report.json` -> `report.component-definition.json`, in the same folder.
pub fn component_definition_path(out: &std::path::Path) -> std::path::PathBuf {
    let stem = out
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("sigil-assessment");
    out.with_file_name(format!("{stem}.component-definition.json"))
}
