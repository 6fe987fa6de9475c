//! `sigil policy`: the shipped suites pass against the default policies (this is how CI runs
//! them), a policy that grants too much fails them, and invalid policies are refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

fn sigil(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn suites() -> String {
    format!(
        "{}/../sigil-policy/policies/tests",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn the_shipped_policy_suites_pass() {
    let dir = tempfile::tempdir().unwrap();
    let out = sigil(dir.path(), &["policy", "test", &suites()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(" passed, 0 failed"), "{}", text(&out));
}

#[test]
fn a_policy_that_grants_too_much_fails_the_suites() {
    let dir = tempfile::tempdir().unwrap();
    let defaults = sigil(dir.path(), &["policy", "show", "defaults"]);
    assert!(defaults.status.success());
    let mut loose = String::from_utf8(defaults.stdout).unwrap();
    loose.push_str(
        "\n@id(\"auditors-revoke\")\npermit(principal in Sigil::Role::\"auditor\", action == Sigil::Action::\"certificate.revoke\", resource);\n",
    );
    std::fs::write(dir.path().join("loose.cedar"), &loose).unwrap();
    let out = sigil(dir.path(), &["policy", "validate", "loose.cedar"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = sigil(
        dir.path(),
        &["policy", "test", &suites(), "--policies", "loose.cedar"],
    );
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("FAIL") && t.contains("auditor cannot revoke"),
        "{t}"
    );
    assert!(
        t.contains("auditors-revoke"),
        "the decision names the policy: {t}"
    );
}

#[test]
fn invalid_policies_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.cedar"),
        "@id(\"x\")\npermit(principal is Sigil::Device, action == Sigil::Action::\"publish\", resource) when { principal.colour == \"red\" };\n",
    )
    .unwrap();
    let out = sigil(dir.path(), &["policy", "validate", "bad.cedar"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("do not validate"), "{}", text(&out));
    std::fs::write(
        dir.path().join("noid.cedar"),
        "permit(principal, action, resource);",
    )
    .unwrap();
    let out = sigil(dir.path(), &["policy", "validate", "noid.cedar"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("@id"), "{}", text(&out));
}
