//! `sigil policy`: validate Cedar policies and run policy test suites, offline.

use std::path::Path;

use anyhow::{Context, Result, bail};

use sigil_policy::{DEFAULT_POLICIES, PolicyEngine, SCHEMA, parse_suite, run_case};

use serde_json::json;

use crate::cli::PolicyCommand;
use crate::client::ApiClient;

fn load(file: Option<&Path>) -> Result<PolicyEngine> {
    let text = match file {
        Some(f) => {
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
        }
        None => DEFAULT_POLICIES.to_owned(),
    };
    Ok(PolicyEngine::new(&text)?)
}

pub async fn policy(cmd: PolicyCommand) -> Result<()> {
    match cmd {
        PolicyCommand::Apply {
            file,
            comment,
            client,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            // Validate locally first: a clear error without a round trip.
            let engine = PolicyEngine::new(&text)?;
            let api = ApiClient::from_args(&client)?;
            let applied = api
                .post("/api/v1/policy", &json!({"text": text, "comment": comment}))
                .await?;
            println!(
                "applied {} as version {} ({} policies, sha256 {})",
                file.display(),
                applied["version"],
                engine.policy_count(),
                applied["sha256"].as_str().unwrap_or_default()
            );
            Ok(())
        }
        PolicyCommand::Rollback {
            version,
            comment,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let mut body = json!({"version": version});
            if let Some(c) = comment {
                body["comment"] = json!(c);
            }
            let applied = api.post("/api/v1/policy/rollback", &body).await?;
            println!(
                "restored version {version} as version {}",
                applied["version"]
            );
            Ok(())
        }
        PolicyCommand::Versions { client } => {
            let api = ApiClient::from_args(&client)?;
            let versions = api.get("/api/v1/policy/versions").await?;
            crate::commands::print(
                &client,
                &versions,
                &[
                    ("version", "VERSION"),
                    ("created_at", "APPLIED"),
                    ("created_by", "BY"),
                    ("comment", "COMMENT"),
                    ("sha256", "SHA-256"),
                ],
                true,
            )
        }
        PolicyCommand::Validate { file } => {
            let engine = load(Some(&file))?;
            println!(
                "{}: {} policies, valid against Sigil's schema",
                file.display(),
                engine.policy_count()
            );
            Ok(())
        }
        PolicyCommand::Test { dir, policies } => {
            let engine = load(policies.as_deref())?;
            let mut files: Vec<_> = std::fs::read_dir(&dir)
                .with_context(|| format!("reading {}", dir.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            files.sort();
            if files.is_empty() {
                bail!("no *.json test suites in {}", dir.display());
            }
            let (mut passed, mut failed) = (0, 0);
            for file in files {
                let text = std::fs::read_to_string(&file)?;
                let cases = parse_suite(&text).with_context(|| format!("in {}", file.display()))?;
                for case in cases {
                    match run_case(&engine, &case) {
                        None => passed += 1,
                        Some(why) => {
                            failed += 1;
                            println!("FAIL {}: {}: {why}", file.display(), case.name);
                        }
                    }
                }
            }
            println!("{passed} passed, {failed} failed");
            if failed > 0 {
                bail!("{failed} policy test case(s) failed");
            }
            Ok(())
        }
        PolicyCommand::Show { what } => {
            match what.as_str() {
                "schema" => print!("{SCHEMA}"),
                "defaults" => print!("{DEFAULT_POLICIES}"),
                other => bail!("show `schema` or `defaults`, not `{other}`"),
            }
            Ok(())
        }
    }
}
