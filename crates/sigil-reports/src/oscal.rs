//! NIST OSCAL output: the catalogue as a `component-definition` (which Sigil checks implement
//! which requirement of each framework) and a posture report as `assessment-results`.
//!
//! Hand-built with serde_json rather than a typed OSCAL crate: Sigil emits a small subset of
//! two models, and the suite validates every document against NIST's published JSON schemas
//! (`tests/data/oscal`), which is the check that matters to an OSCAL consumer.

use serde_json::{Value, json};
use uuid::Uuid;

use sigil_compliance::{Catalogue, CheckKind};

use crate::ReportError;

/// The OSCAL version the documents declare: that of the vendored schemas they are validated
/// against, which current compliance-trestle also validates.
pub const OSCAL_VERSION: &str = "1.2.3";
/// Namespace of Sigil's own properties (OSCAL requires one for names it does not define).
pub const SIGIL_NS: &str = "https://github.com/sigil-iot/sigil/ns/oscal";
/// Media type of the component-definition, for links to it.
const COMPONENT_DEFINITION_MEDIA_TYPE: &str = "application/oscal.component-definition+json";

/// UUIDs that stay the same for the same subject across documents (OSCAL asks for that of
/// definitions): version 5 under a Sigil namespace.
fn stable_uuid(name: &str) -> String {
    const NAMESPACE: Uuid = Uuid::from_u128(0x6f1d_9c2e_4b7a_4e0f_9d3c_2a5b_8e7f_1c60);
    Uuid::new_v5(&NAMESPACE, name.as_bytes()).to_string()
}

fn fresh_uuid() -> String {
    Uuid::new_v4().to_string()
}

/// An OSCAL token (`^(\p{L}|_)(\p{L}|\p{N}|[.\-_])*$`) naming `requirement` of `framework`:
/// requirement ids such as `5.1-1` start with a digit, so the framework id leads.
pub fn control_id(framework: &str, requirement: &str) -> String {
    format!("{framework}_{requirement}")
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// One line of text as OSCAL strings want it: no line breaks, no surrounding or repeated
/// whitespace, never empty.
fn line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.is_empty() {
        "-".to_owned()
    } else {
        joined
    }
}

fn prop(name: &str, value: impl std::fmt::Display) -> Value {
    json!({"name": name, "ns": SIGIL_NS, "value": line(&value.to_string())})
}

fn metadata(title: &str, last_modified: &str, version: &str) -> Value {
    json!({
        "title": line(title),
        "last-modified": last_modified,
        "version": line(version),
        "oscal-version": OSCAL_VERSION,
    })
}

/// The catalogue as an OSCAL component-definition: one software component (Sigil) with one
/// control implementation per framework, each requirement implemented by the Sigil checks the
/// catalogue maps to it (with their AWS IoT Device Defender equivalents).
pub fn component_definition(catalogue: &Catalogue, last_modified: &str) -> Value {
    let version = catalogue.version();
    let implementations: Vec<Value> = catalogue
        .frameworks()
        .iter()
        .map(|f| {
            let fw = &f.info.id;
            let requirements: Vec<Value> = f
                .requirements
                .iter()
                .map(|r| {
                    let mut props = vec![prop("label", &r.id)];
                    let mut titles = Vec::new();
                    for check_id in &r.checks {
                        props.push(prop("sigil-check", check_id));
                        if let Some(check) = catalogue.check(check_id) {
                            titles.push(format!("{} ({check_id})", check.title));
                            props.extend(
                                check
                                    .aws_device_defender
                                    .iter()
                                    .map(|a| prop("aws-iot-device-defender-check", a)),
                            );
                        }
                    }
                    json!({
                        "uuid": stable_uuid(&format!("{version}/{fw}/{}", r.id)),
                        "control-id": control_id(fw, &r.id),
                        "description": format!("{} Sigil checks: {}.", line(&r.summary), titles.join("; ")),
                        "props": props,
                    })
                })
                .collect();
            json!({
                "uuid": stable_uuid(&format!("{version}/{fw}")),
                "source": f.info.source,
                "description": line(&format!(
                    "{} {}: requirements mapped to Sigil's automated checks and attestations.",
                    f.info.title, f.info.version
                )),
                "props": [prop("framework", fw)],
                "implemented-requirements": requirements,
            })
        })
        .collect();
    json!({
        "component-definition": {
            "uuid": stable_uuid(&format!("catalogue/{version}")),
            "metadata": metadata("Sigil compliance control catalogue", last_modified, version),
            "components": [{
                "uuid": stable_uuid("component/sigil"),
                "type": "software",
                "title": "Sigil",
                "description": "IoT device identity and compliance platform: device inventory, its own CA hierarchy, enrolment (EST), revocation (CRL, OCSP), access policy (Cedar), posture reports and continuous compliance evaluation.",
                "purpose": "Continuous evidence that every device has a strong identity managed over its life.",
                "control-implementations": implementations,
            }],
        }
    })
}

/// A report's status as an OSCAL objective status: `pass` satisfied, `fail` not satisfied;
/// `unknown` (no data) is not satisfied, since nothing shows it is; `not-applicable` is
/// satisfied with reason `other`. Sigil's own word is kept in a property.
fn objective_status(status: &str) -> Value {
    match status {
        "pass" => json!({"state": "satisfied", "reason": "pass"}),
        "fail" => json!({"state": "not-satisfied", "reason": "fail"}),
        "not-applicable" => {
            json!({"state": "satisfied", "reason": "other", "remarks": "Not applicable: no device, product or organisational fact this requirement covers is in scope."})
        }
        _ => {
            json!({"state": "not-satisfied", "reason": "other", "remarks": "Unknown: Sigil has no data to decide on (no posture report, no declaration, or an expired attestation)."})
        }
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// One check's result as an OSCAL observation: its counts and reason, and the failing
/// subjects with their evidence.
fn check_observation(c: &Value, catalogue: &Catalogue, evaluated_at: &str) -> Value {
    let check = text(&c["check"]);
    let attestation = catalogue
        .check(&check)
        .is_some_and(|d| d.kind == CheckKind::Attestation);
    let counts = &c["counts"];
    let mut description = format!(
        "{} ({check}): {}. Evaluated: {} pass, {} fail, {} unknown, {} not applicable.",
        text(&c["title"]),
        text(&c["status"]),
        counts["pass"],
        counts["fail"],
        counts["unknown"],
        counts["not_applicable"],
    );
    if let Some(reason) = c["reason"].as_str() {
        description.push_str(&format!(" {reason}."));
    }
    let evidence: Vec<Value> = array(&c["failures"])
        .iter()
        .map(|f| {
            let refs: Vec<String> = array(&f["evidence"])
                .iter()
                .map(|e| format!("{} {}", text(&e["type"]), text(&e["ref"])))
                .collect();
            let mut props = vec![
                prop("subject", text(&f["device"])),
                prop("sigil-status", text(&f["status"])),
            ];
            props.extend(refs.iter().map(|r| prop("evidence", r)));
            json!({
                "description": line(&format!("{}: {}", text(&f["device"]), text(&f["reason"]))),
                "props": props,
            })
        })
        .collect();
    let mut observation = json!({
        "uuid": fresh_uuid(),
        "title": line(&text(&c["title"])),
        "description": line(&description),
        "props": [
            prop("sigil-check", &check),
            prop("sigil-status", text(&c["status"])),
            prop("scope", text(&c["scope"])),
        ],
        "methods": [if attestation { "EXAMINE" } else { "TEST" }],
        "types": [if text(&c["status"]) == "fail" { "finding" } else { "control-objective" }],
        "collected": evaluated_at,
    });
    if !evidence.is_empty() {
        observation["relevant-evidence"] = Value::Array(evidence);
    }
    observation
}

/// A posture report (`GET /api/v1/compliance/{framework}`) as OSCAL assessment-results: one
/// result with an observation per check evaluated for each requirement (its counts, reason and
/// the failing subjects' evidence) and a finding per requirement. The assessment plan it
/// imports is the component-definition at `definition_href`, listed in the back matter.
pub fn assessment_results(
    report: &Value,
    catalogue: &Catalogue,
    definition_href: &str,
) -> Result<Value, ReportError> {
    let fw = text(&report["framework"]);
    let Some(framework) = catalogue.framework(&fw) else {
        return Err(ReportError::UnknownFramework(fw));
    };
    let report_version = text(&report["catalogue_version"]);
    if report_version != catalogue.version() {
        return Err(ReportError::CatalogueVersion {
            report: report_version,
            catalogue: catalogue.version().to_owned(),
        });
    }
    let evaluated_at = text(&report["evaluated_at"]);
    let plan = fresh_uuid();
    let mut observations = Vec::new();
    let mut findings = Vec::new();
    let mut controls = Vec::new();
    for r in array(&report["requirements"]) {
        let id = text(&r["id"]);
        let control = control_id(&fw, &id);
        controls.push(json!({"control-id": control}));
        let mut related = Vec::new();
        for c in array(&r["checks"]) {
            let observation = check_observation(c, catalogue, &evaluated_at);
            related.push(json!({"observation-uuid": observation["uuid"]}));
            observations.push(observation);
        }
        let status = text(&r["status"]);
        let mut finding = json!({
            "uuid": fresh_uuid(),
            "title": line(&format!("{} {}", framework.info.id, id)),
            "description": line(&text(&r["summary"])),
            "props": [prop("sigil-status", &status)],
            "target": {
                "type": "objective-id",
                "target-id": control,
                "status": objective_status(&status),
            },
        });
        if !related.is_empty() {
            finding["related-observations"] = Value::Array(related);
        }
        findings.push(finding);
    }
    let mut result = json!({
        "uuid": fresh_uuid(),
        "title": line(&format!("Sigil continuous assessment: {}", framework.info.title)),
        "description": line(&format!(
            "Automated evaluation of the fleet at {evaluated_at}: device, product and organisation checks, and attestations, rolled up per requirement."
        )),
        "start": evaluated_at,
        "end": evaluated_at,
        "props": [
            prop("score", &report["score"]),
            prop("devices-evaluated", &report["devices_evaluated"]),
            prop("catalogue-version", catalogue.version()),
        ],
        "reviewed-controls": {
            "control-selections": [{"include-controls": controls}],
        },
    });
    if !observations.is_empty() {
        result["observations"] = Value::Array(observations);
        result["findings"] = Value::Array(findings);
    }
    Ok(json!({
        "assessment-results": {
            "uuid": fresh_uuid(),
            "metadata": metadata(
                &format!("Sigil compliance assessment results: {}", framework.info.title),
                &evaluated_at,
                catalogue.version(),
            ),
            "import-ap": {
                "href": format!("#{plan}"),
                "remarks": "Sigil assesses continuously against its control catalogue; the catalogue (an OSCAL component-definition, in the back matter) stands in for an assessment plan.",
            },
            "results": [result],
            "back-matter": {
                "resources": [{
                    "uuid": plan,
                    "title": "Sigil compliance control catalogue",
                    "description": format!("Catalogue version {}", catalogue.version()),
                    "rlinks": [{"href": definition_href, "media-type": COMPONENT_DEFINITION_MEDIA_TYPE}],
                }],
            },
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_ids_are_oscal_tokens() {
        assert_eq!(
            control_id("etsi-en-303-645", "5.1-1"),
            "etsi-en-303-645_5.1-1"
        );
        assert_eq!(control_id("eu-cra", "I.2(a)"), "eu-cra_I.2_a_");
    }

    #[test]
    fn lines_have_no_breaks_or_padding() {
        assert_eq!(line("  a\n b\t c "), "a b c");
        assert_eq!(line(" \n "), "-");
    }

    #[test]
    fn a_report_from_another_catalogue_is_refused() {
        let catalogue = Catalogue::shipped().unwrap_or_else(|e| panic!("{e}"));
        let report =
            json!({"framework": "eu-cra", "catalogue_version": "other", "requirements": []});
        let err = assessment_results(&report, &catalogue, "x.json").unwrap_err();
        assert!(
            err.to_string()
                .contains("evaluated against catalogue other"),
            "{err}"
        );
        let report = json!({"framework": "nope", "catalogue_version": catalogue.version()});
        assert!(assessment_results(&report, &catalogue, "x.json").is_err());
    }
}
