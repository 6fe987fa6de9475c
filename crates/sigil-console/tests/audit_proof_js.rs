//! The console's in-browser proof checker (`assets/audit-proof.js`) under Node's test runner
//! (`tests/audit-proof.test.mjs`): every leaf of trees of 1 to 17 entries against an
//! independent RFC 9162 tree, keys whose base64 holds `+`, and each kind of tampering.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn the_in_browser_proof_checker_passes_its_node_tests() {
    let out = Command::new("node")
        .args(["--test", "tests/audit-proof.test.mjs"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("node on PATH (the console's tools need it: npm ci --prefix tools/console)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("# pass 3"), "{report}");
}
