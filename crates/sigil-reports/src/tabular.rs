//! A posture report as people read it: a self-contained HTML page (no external resources, so
//! it can be archived and mailed) and CSV, one row per check.

use std::fmt::Write as _;

use serde_json::Value;

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn items(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

/// RFC 4180 field: quoted when it holds a comma, quote or line break. A leading `=`, `+`, `-`
/// or `@` is prefixed with `'` so a spreadsheet does not run it as a formula.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// One row per requirement and check.
pub fn csv(report: &Value) -> String {
    let mut out = String::from(
        "framework,requirement,group,requirement_status,check,scope,check_status,pass,fail,unknown,not_applicable,failing,reason\n",
    );
    for r in items(&report["requirements"]) {
        for c in items(&r["checks"]) {
            let failing: Vec<String> = items(&c["failures"])
                .iter()
                .map(|f| str_of(&f["device"]))
                .collect();
            let row = [
                str_of(&report["framework"]),
                str_of(&r["id"]),
                str_of(&r["group"]),
                str_of(&r["status"]),
                str_of(&c["check"]),
                str_of(&c["scope"]),
                str_of(&c["status"]),
                str_of(&c["counts"]["pass"]),
                str_of(&c["counts"]["fail"]),
                str_of(&c["counts"]["unknown"]),
                str_of(&c["counts"]["not_applicable"]),
                failing.join(" "),
                str_of(&c["reason"]),
            ];
            let fields: Vec<String> = row.iter().map(|f| csv_field(f)).collect();
            out.push_str(&fields.join(","));
            out.push('\n');
        }
    }
    out
}

fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn evidence(list: &Value) -> String {
    items(list)
        .iter()
        .map(|e| format!("{} {}", esc(&str_of(&e["type"])), esc(&str_of(&e["ref"]))))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A self-contained page (inline CSS, no scripts, nothing fetched): summary, every requirement
/// with its status and checks, failing devices with reasons and evidence, the attestations
/// and who made them, and the catalogue version.
pub fn html(report: &Value, attestations: &Value) -> String {
    let mut h = String::new();
    let title = esc(&str_of(&report["title"]));
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}: compliance report</title>\
<style>body{{font:14px/1.45 system-ui,sans-serif;margin:2em;max-width:72em}}table{{border-collapse:collapse;width:100%}}\
td,th{{border:1px solid #ccc;padding:.3em .5em;vertical-align:top;text-align:left}}.pass{{color:#05660d}}.fail{{color:#b00020;font-weight:bold}}\
.unknown{{color:#8a5a00}}.not-applicable{{color:#666}}small{{color:#555}}</style></head><body>\n"
    );
    let _ = write!(
        h,
        "<h1>{title}</h1>\n<p>Framework version {} &middot; evaluated {} &middot; {} devices &middot; catalogue {}</p>\n",
        esc(&str_of(&report["framework_version"])),
        esc(&str_of(&report["evaluated_at"])),
        esc(&str_of(&report["devices_evaluated"])),
        esc(&str_of(&report["catalogue_version"])),
    );
    let s = &report["summary"];
    let _ = write!(
        h,
        "<h2>Summary</h2>\n<p><strong>Score {}%</strong> of the requirements that apply and could be decided.</p>\n\
<table><tr><th>pass</th><th>fail</th><th>unknown</th><th>not applicable</th></tr>\
<tr><td class=\"pass\">{}</td><td class=\"fail\">{}</td><td class=\"unknown\">{}</td><td class=\"not-applicable\">{}</td></tr></table>\n",
        esc(&str_of(&report["score"])),
        esc(&str_of(&s["pass"])),
        esc(&str_of(&s["fail"])),
        esc(&str_of(&s["unknown"])),
        esc(&str_of(&s["not_applicable"])),
    );
    h.push_str("<h2>Requirements</h2>\n<table><tr><th>Requirement</th><th>Status</th><th>Checks</th></tr>\n");
    for r in items(&report["requirements"]) {
        let status = esc(&str_of(&r["status"]));
        let _ = write!(
            h,
            "<tr id=\"req-{id}\"><td><strong>{id}</strong> <small>{group} {group_title}</small><br>{summary}</td><td class=\"{status}\">{status}</td><td>",
            id = esc(&str_of(&r["id"])),
            group = esc(&str_of(&r["group"])),
            group_title = esc(&str_of(&r["group_title"])),
            summary = esc(&str_of(&r["summary"])),
        );
        for c in items(&r["checks"]) {
            let cs = esc(&str_of(&c["status"]));
            let _ = write!(
                h,
                "<div><span class=\"{cs}\">{cs}</span> <code>{}</code> {} <small>(pass {}, fail {}, unknown {}, n/a {})</small>",
                esc(&str_of(&c["check"])),
                esc(&str_of(&c["title"])),
                esc(&str_of(&c["counts"]["pass"])),
                esc(&str_of(&c["counts"]["fail"])),
                esc(&str_of(&c["counts"]["unknown"])),
                esc(&str_of(&c["counts"]["not_applicable"])),
            );
            if !c["reason"].is_null() {
                let _ = write!(h, "<br><small>{}</small>", esc(&str_of(&c["reason"])));
            }
            let failures = items(&c["failures"]);
            if !failures.is_empty() {
                h.push_str("<ul>");
                for f in failures {
                    let _ = write!(
                        h,
                        "<li><code>{}</code> {}: {} <small>evidence: {}</small></li>",
                        esc(&str_of(&f["device"])),
                        esc(&str_of(&f["status"])),
                        esc(&str_of(&f["reason"])),
                        evidence(&f["evidence"]),
                    );
                }
                h.push_str("</ul>");
            }
            h.push_str("</div>");
        }
        h.push_str("</td></tr>\n");
    }
    h.push_str("</table>\n<h2>Attestations</h2>\n");
    let list = items(attestations);
    if list.is_empty() {
        h.push_str("<p>None recorded.</p>\n");
    } else {
        h.push_str("<table><tr><th>Check</th><th>Attested by</th><th>Statement</th><th>Evidence document</th><th>Recorded</th><th>Expires</th></tr>\n");
        for a in list {
            let _ = writeln!(
                h,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{} <small>sha256 {}</small></td><td>{} <small>by {}</small></td><td>{}</td></tr>",
                esc(&str_of(&a["check"])),
                esc(&str_of(&a["attested_by"])),
                esc(&str_of(&a["statement"])),
                esc(&str_of(&a["document_name"])),
                esc(&str_of(&a["document_sha256"])),
                esc(&str_of(&a["created_at"])),
                esc(&str_of(&a["recorded_by"])),
                esc(&str_of(&a["expires_at"])),
            );
        }
        h.push_str("</table>\n");
    }
    h.push_str("<p><small>Requirement summaries are Sigil's paraphrases; the framework's own text is authoritative. \
Evidence references name certificates (serial), posture reports, audit log entries (sequence number) and attestations, \
all verifiable in Sigil's audit log and evidence bundles.</small></p>\n</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
    }

    #[test]
    fn html_escapes_everything_it_prints() {
        assert_eq!(esc("<script>&'\""), "&lt;script&gt;&amp;&#39;&quot;");
        let report = json!({"title": "<b>T</b>", "requirements": [{"id": "1", "status": "pass", "checks": [],
            "summary": "<img src=x onerror=alert(1)>"}], "summary": {}});
        let page = html(&report, &json!([]));
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("<b>T"), "{page}");
        assert!(!page.contains("<script"), "{page}");
    }
}
