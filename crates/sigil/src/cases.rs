//! `sigil case` and `sigil site`: CRA Article 14 cases (deadlines, drafts, submitted
//! reports), and the country each site is in.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use serde_json::{Value, json};

use crate::cli::ClientArgs;
use crate::client::ApiClient;
use crate::commands::{print, print_record};
use crate::vuln::query;

#[derive(Debug, Subcommand)]
pub enum CaseCommand {
    /// Article 14 cases, newest first (open ones unless --all).
    List {
        #[arg(long)]
        product: Option<String>,
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A case: its deadlines, submitted reports and the alerts sent.
    Show {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Open a case for a finding known to be actively exploited (KEV entries open their own).
    Open {
        #[arg(long)]
        product: String,
        /// The vulnerability (any of its ids).
        #[arg(long)]
        vulnerability: String,
        /// Why it is known to be actively exploited.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Draft one of the case's reports, as text (the default) or JSON.
    Draft {
        id: String,
        /// `early-warning`, `notification` or `final-report`.
        #[arg(long)]
        stage: String,
        #[arg(long, default_value = "text")]
        format: String,
        /// Write it to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Record that a report was submitted to the CSIRT (once per stage).
    Submitted {
        id: String,
        #[arg(long)]
        stage: String,
        /// The submission's reference at the CSIRT or the single reporting platform.
        #[arg(long)]
        reference: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum SiteCommand {
    /// Register the country (ISO 3166-1 alpha-2) a site is in.
    Set {
        name: String,
        #[arg(long)]
        country: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
}

const CASE_COLUMNS: &[(&str, &str)] = &[
    ("id", "ID"),
    ("product_id", "PRODUCT"),
    ("vulnerability", "VULNERABILITY"),
    ("cause", "CAUSE"),
    ("state", "STATE"),
    ("aware_at", "AWARE SINCE"),
    ("early_warning", "EARLY WARNING"),
    ("notification", "NOTIFICATION"),
    ("final_report", "FINAL REPORT"),
];

/// A case with each deadline as one cell: `due (status)`.
fn flatten(case: &Value) -> Value {
    let mut out = case.clone();
    for d in case["deadlines"].as_array().into_iter().flatten() {
        let key = d["stage"].as_str().unwrap_or("").replace('-', "_");
        let due = d["due"].as_str().unwrap_or("-");
        let status = d["status"].as_str().unwrap_or("");
        out[key] = json!(format!("{due} ({status})"));
    }
    out
}

/// Text for a terminal: drafts quote advisories' summaries, and a control character there
/// (an ANSI escape sequence) must not reach the terminal as one. Lines and tabs stay.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let keep = !c.is_control() || c == '\n' || c == '\t';
            let shown: Vec<char> = if keep {
                vec![c]
            } else {
                c.escape_default().collect()
            };
            shown
        })
        .collect()
}

pub async fn case(cmd: CaseCommand) -> Result<()> {
    match cmd {
        CaseCommand::List {
            product,
            all,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let mut path = format!("/api/v1/cases?state={}", if all { "all" } else { "open" });
            if let Some(p) = product {
                path.push_str(&format!("&product={}", query(&p)));
            }
            // Every page, newest first.
            let mut all_items = Vec::new();
            let mut page_path = path.clone();
            loop {
                let page = api.get(&page_path).await?;
                all_items.extend(page["items"].as_array().into_iter().flatten().cloned());
                match page["next_cursor"].as_str() {
                    Some(next) => page_path = format!("{path}&after={}", query(next)),
                    None => break,
                }
            }
            let list = json!({ "items": all_items });
            let items: Vec<Value> = list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(flatten)
                .collect();
            let shown = if client.json {
                list
            } else {
                json!({ "items": items })
            };
            print(&client, &shown, CASE_COLUMNS, true)
        }
        CaseCommand::Show { id, client } => {
            let api = ApiClient::from_args(&client)?;
            let case = api.get(&format!("/api/v1/cases/{}", query(&id))).await?;
            if client.json {
                return print_record(&client, &case);
            }
            print_record(&client, &flatten(&case))
        }
        CaseCommand::Open {
            product,
            vulnerability,
            reason,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let case = api
                .post(
                    "/api/v1/cases",
                    &json!({"product_id": product, "vulnerability": vulnerability, "reason": reason}),
                )
                .await?;
            print(&client, &flatten(&case), CASE_COLUMNS, false)
        }
        CaseCommand::Draft {
            id,
            stage,
            format,
            out,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let path = format!(
                "/api/v1/cases/{}/drafts/{}?format={}",
                query(&id),
                query(&stage),
                query(&format)
            );
            match out {
                Some(out) => {
                    let bytes = api.download(&path, &out).await?;
                    println!("wrote {} ({bytes} bytes)", out.display());
                }
                None => {
                    let text = api.text(reqwest::Method::GET, &path).await?;
                    print!("{}", printable(&text));
                }
            }
            Ok(())
        }
        CaseCommand::Submitted {
            id,
            stage,
            reference,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let case = api
                .post(
                    &format!("/api/v1/cases/{}/reports", query(&id)),
                    &json!({"stage": stage, "reference": reference}),
                )
                .await?;
            print(&client, &flatten(&case), CASE_COLUMNS, false)
        }
    }
}

const SITE_COLUMNS: &[(&str, &str)] = &[
    ("name", "SITE"),
    ("country", "COUNTRY"),
    ("member_state", "EU"),
    ("updated_at", "UPDATED"),
];

pub async fn site(cmd: SiteCommand) -> Result<()> {
    match cmd {
        SiteCommand::Set {
            name,
            country,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let site = api
                .put(
                    &format!("/api/v1/sites/{}", query(&name)),
                    &json!({ "country": country }),
                )
                .await?;
            print(&client, &site, SITE_COLUMNS, false)
        }
        SiteCommand::List { client } => {
            let api = ApiClient::from_args(&client)?;
            let list = api.get("/api/v1/sites").await?;
            print(&client, &list, SITE_COLUMNS, true)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_escaped_lines_kept() {
        assert_eq!(
            super::printable("a\u{1b}[31mred\n\tb"),
            "a\\u{1b}[31mred\n\tb"
        );
    }
}
