//! `sigil disclosure`: the coordinated vulnerability disclosure policy each product publishes
//! (its `security.txt`) and the reports received: list, enter, acknowledge, accept as an
//! advisory, reject.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::cli::ClientArgs;
use crate::client::ApiClient;
use crate::commands::{print, print_record};
use crate::vuln::query;

#[derive(Debug, Subcommand)]
pub enum DisclosureCommand {
    /// Publish a disclosure policy: the organisation's (at /.well-known/security.txt), or a
    /// product's with --product (at /disclosure/PRODUCT/security.txt).
    SetPolicy(SetPolicyArgs),
    /// The organisation's policy, or a product's own with --product.
    Policy {
        #[arg(long)]
        product: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Reports, newest first (undecided ones unless --all).
    Reports {
        #[arg(long)]
        product: Option<String>,
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// One report, with its details and deadlines.
    Show {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Enter a report received elsewhere (mail, a partner, a CSIRT).
    Enter {
        #[arg(long)]
        product: String,
        #[arg(long)]
        summary: String,
        /// A file with the details (what is wrong, how to reproduce it).
        #[arg(long)]
        details: PathBuf,
        #[arg(long)]
        affected: Option<String>,
        #[arg(long)]
        reporter: Option<String>,
        #[arg(long)]
        cvss: Option<String>,
        #[arg(long)]
        exploited: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Acknowledge a report.
    Acknowledge {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Accept a report as a vulnerability of a component: it becomes an advisory (OSV)
    /// matched against every SBOM, with a remediation deadline from the report's receipt.
    Accept {
        id: String,
        /// The affected component's package URL (pkg:cargo/acme-mqtt).
        #[arg(long)]
        component: String,
        #[arg(long)]
        introduced: Option<String>,
        #[arg(long)]
        fixed: Option<String>,
        #[arg(long)]
        last_affected: Option<String>,
        /// Exactly these versions (repeat).
        #[arg(long = "version")]
        versions: Vec<String>,
        #[arg(long)]
        cvss: Option<String>,
        /// CVE or other ids assigned (repeat).
        #[arg(long = "alias")]
        aliases: Vec<String>,
        /// Actively exploited: opens a CRA Article 14 case.
        #[arg(long)]
        exploited: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Reject a report, saying why (the reporter sees the reason).
    Reject {
        id: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// What `set-policy` publishes.
#[derive(Debug, Args)]
pub struct SetPolicyArgs {
    #[arg(long)]
    pub product: Option<String>,
    /// Where to report: mailto:, https:// or tel: (repeat, most preferred first).
    #[arg(long = "contact", required = true)]
    pub contacts: Vec<String>,
    /// When the published file expires (RFC 3339, less than a year ahead).
    #[arg(long)]
    pub expires: String,
    /// The policy document (https://).
    #[arg(long)]
    pub policy: Option<String>,
    /// A key to encrypt reports with (https://, dns: or openpgp4fpr:).
    #[arg(long)]
    pub encryption: Option<String>,
    #[arg(long)]
    pub acknowledgments: Option<String>,
    /// RFC 5646 language tags (repeat).
    #[arg(long = "language")]
    pub languages: Vec<String>,
    /// CSAF provider metadata (https://.../provider-metadata.json).
    #[arg(long)]
    pub csaf: Option<String>,
    /// Days to acknowledge a report (default 5) and to decide it (default 30).
    #[arg(long)]
    pub acknowledge_days: Option<u32>,
    #[arg(long)]
    pub triage_days: Option<u32>,
    #[command(flatten)]
    pub client: ClientArgs,
}

const REPORT_COLUMNS: &[(&str, &str)] = &[
    ("id", "ID"),
    ("product_id", "PRODUCT"),
    ("channel", "CHANNEL"),
    ("state", "STATE"),
    ("summary", "SUMMARY"),
    ("received_at", "RECEIVED"),
    ("acknowledge_by", "ACKNOWLEDGE BY"),
    ("decide_by", "DECIDE BY"),
    ("overdue", "OVERDUE"),
    ("advisory_id", "ADVISORY"),
];

const POLICY_COLUMNS: &[(&str, &str)] = &[
    ("scope", "SCOPE"),
    ("contacts", "CONTACTS"),
    ("expires", "EXPIRES"),
    ("acknowledge_days", "ACK DAYS"),
    ("triage_days", "TRIAGE DAYS"),
];

/// A report's text fields came from a stranger: escape what a terminal would act on.
fn printable(report: &Value) -> Value {
    let mut out = report.clone();
    if let Some(map) = out.as_object_mut() {
        for v in map.values_mut() {
            if let Some(s) = v.as_str() {
                *v = json!(crate::cases::printable(s));
            }
        }
    }
    out
}

/// An accepted report, and the Article 14 case it opened (or why none was).
fn print_accepted(client: &ClientArgs, accepted: &Value) -> Result<()> {
    if client.json {
        return print_record(client, accepted);
    }
    print(
        client,
        &printable(&accepted["report"]),
        REPORT_COLUMNS,
        false,
    )?;
    if let Some(case) = accepted["case"]["id"].as_str() {
        println!("Article 14 case opened: {case}");
    } else if let Some(note) = accepted["case_note"].as_str() {
        println!(
            "no Article 14 case opened: {}",
            crate::cases::printable(note)
        );
    }
    Ok(())
}

fn policy_path(product: Option<&str>) -> String {
    match product {
        Some(p) => format!("/api/v1/products/{}/disclosure-policy", query(p)),
        None => "/api/v1/disclosure-policy".into(),
    }
}

pub async fn disclosure(cmd: DisclosureCommand) -> Result<()> {
    match cmd {
        DisclosureCommand::SetPolicy(a) => {
            let api = ApiClient::from_args(&a.client)?;
            let body = json!({
                "contacts": a.contacts, "expires": a.expires, "policy": a.policy,
                "encryption": a.encryption, "acknowledgments": a.acknowledgments,
                "preferred_languages": a.languages, "csaf": a.csaf,
                "acknowledge_days": a.acknowledge_days, "triage_days": a.triage_days,
            });
            let set = api.put(&policy_path(a.product.as_deref()), &body).await?;
            print(&a.client, &set, POLICY_COLUMNS, false)
        }
        DisclosureCommand::Policy { product, client } => {
            let api = ApiClient::from_args(&client)?;
            let p = api.get(&policy_path(product.as_deref())).await?;
            print_record(&client, &p)
        }
        DisclosureCommand::Reports {
            product,
            all,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let mut path = format!(
                "/api/v1/disclosure-reports?state={}",
                if all { "all" } else { "open" }
            );
            if let Some(p) = product {
                path.push_str(&format!("&product={}", query(&p)));
            }
            let list = api.get(&path).await?;
            let items: Vec<Value> = list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(printable)
                .collect();
            print(&client, &json!({ "items": items }), REPORT_COLUMNS, true)
        }
        DisclosureCommand::Show { id, client } => {
            let api = ApiClient::from_args(&client)?;
            let r = api
                .get(&format!("/api/v1/disclosure-reports/{}", query(&id)))
                .await?;
            print_record(&client, &printable(&r))
        }
        DisclosureCommand::Enter {
            product,
            summary,
            details,
            affected,
            reporter,
            cvss,
            exploited,
            client,
        } => {
            let text = std::fs::read_to_string(&details)
                .with_context(|| format!("reading {}", details.display()))?;
            let api = ApiClient::from_args(&client)?;
            let r = api
                .post(
                    "/api/v1/disclosure-reports",
                    &json!({"product": product, "summary": summary, "details": text,
                            "affected": affected, "reporter": reporter, "cvss": cvss,
                            "exploited": exploited}),
                )
                .await?;
            print(&client, &printable(&r), REPORT_COLUMNS, false)
        }
        DisclosureCommand::Acknowledge { id, client } => {
            let api = ApiClient::from_args(&client)?;
            let r = api
                .post(
                    &format!("/api/v1/disclosure-reports/{}/acknowledge", query(&id)),
                    &json!({}),
                )
                .await?;
            print(&client, &printable(&r), REPORT_COLUMNS, false)
        }
        DisclosureCommand::Accept {
            id,
            component,
            introduced,
            fixed,
            last_affected,
            versions,
            cvss,
            aliases,
            exploited,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let accepted = api
                .post(
                    &format!("/api/v1/disclosure-reports/{}/accept", query(&id)),
                    &json!({"component": component, "introduced": introduced, "fixed": fixed,
                            "last_affected": last_affected, "versions": versions,
                            "cvss": cvss, "aliases": aliases, "exploited": exploited}),
                )
                .await?;
            print_accepted(&client, &accepted)
        }
        DisclosureCommand::Reject { id, reason, client } => {
            let api = ApiClient::from_args(&client)?;
            let r = api
                .post(
                    &format!("/api/v1/disclosure-reports/{}/reject", query(&id)),
                    &json!({ "reason": reason }),
                )
                .await?;
            print(&client, &printable(&r), REPORT_COLUMNS, false)
        }
    }
}
