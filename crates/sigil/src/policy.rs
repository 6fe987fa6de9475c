//! `sigil policy`: validate Cedar policies and run policy test suites, offline.

use std::path::Path;

use anyhow::{Context, Result, bail};

use sigil_policy::{DEFAULT_POLICIES, PolicyEngine, SCHEMA, parse_suite, run_case};

use crate::cli::PolicyCommand;

fn load(file: Option<&Path>) -> Result<PolicyEngine> {
    let text = match file {
        Some(f) => {
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
        }
        None => DEFAULT_POLICIES.to_owned(),
    };
    Ok(PolicyEngine::new(&text)?)
}

pub fn policy(cmd: PolicyCommand) -> Result<()> {
    match cmd {
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
