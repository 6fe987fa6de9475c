//! The staged rollout the update issue asks to see: a release uploaded, four groups over
//! simulated devices (real agents, real server, real TUF client and A/B slots). Groups advance
//! on success; install failures injected after the first advance (new slots fail their health
//! check and roll back) reach the error threshold and halt the rollout, with the reason in
//! the audit log; after the fix, retrying the failed and resuming completes it.
#![allow(clippy::unwrap_used)]

use sigil_sim::rollout::{RolloutConfig, simulate_rollout};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_groups_advance_halt_on_failures_and_complete_after_the_fix() {
    let work = tempfile::tempdir().unwrap();
    let config = RolloutConfig {
        devices: 40,
        ..RolloutConfig::default()
    };
    let summary = simulate_rollout(&config, work.path()).await.unwrap();
    println!("{summary}");
    assert_eq!(summary.final_state, "completed", "{summary}");
    assert_eq!(summary.updated_in_inventory, 40, "{summary}");
    let halted = summary.halted.as_deref().unwrap_or_default();
    assert!(halted.starts_with("failure threshold:"), "{summary}");
    assert!(
        halted.contains("reached the error threshold 10%"),
        "{summary}"
    );

    // The audit log tells the story in order: created, at least one advance on success,
    // the halt with its threshold, the operator's retry and resume, more advances, completion.
    let actions: Vec<&str> = summary
        .decisions
        .iter()
        .map(|d| d.split(':').next().unwrap())
        .collect();
    let position = |a: &str| {
        actions
            .iter()
            .position(|x| *x == a)
            .unwrap_or_else(|| panic!("no {a}: {summary}"))
    };
    assert!(
        position("rollout.created") < position("rollout.advanced"),
        "{summary}"
    );
    assert!(
        position("rollout.advanced") < position("rollout.halted"),
        "{summary}"
    );
    assert!(
        position("rollout.halted") < position("rollout.retried"),
        "{summary}"
    );
    assert!(
        position("rollout.resumed") < position("rollout.completed"),
        "{summary}"
    );
    let halt = &summary.decisions[position("rollout.halted")];
    assert!(halt.contains("failure threshold"), "{halt}");
    let advance = &summary.decisions[position("rollout.advanced")];
    assert!(advance.contains("success threshold"), "{advance}");
    let groups = summary.rollout["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 4);
    assert_eq!(
        groups
            .iter()
            .map(|g| g["installed"].as_u64().unwrap())
            .sum::<u64>(),
        40,
        "{summary}"
    );
    assert_eq!(
        groups
            .iter()
            .map(|g| g["failed"].as_u64().unwrap())
            .sum::<u64>(),
        0,
        "{summary}"
    );
}

/// The README's `sigil-sim rollout`, the binary itself: the same loop, printed.
#[test]
fn the_rollout_command_completes_and_says_so() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sigil-sim"))
        .args(["rollout", "--devices", "12"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("final state:           completed"),
        "{stdout}"
    );
    assert!(stdout.contains("updated (inventory):   12"), "{stdout}");
    assert!(stdout.contains("rollout.halted: "), "{stdout}");
}
