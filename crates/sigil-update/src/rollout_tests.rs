#![allow(clippy::unwrap_used)]
use proptest::prelude::*;

use super::*;

/// The same counts for everything so far and for the newest group.
fn both(t: Tally) -> Progress {
    Progress {
        cumulative: t,
        newest_group: t,
        ..Progress::default()
    }
}

fn plan() -> Plan {
    Plan {
        groups: vec![100, 1000, 5000, 10_000],
        success_threshold: 9500,
        error_threshold: 500,
        min_sample: 3,
        approval: false,
    }
}

#[test]
fn percentages_parse_to_basis_points() {
    assert_eq!(parse_percent("95%").unwrap(), 9500);
    assert_eq!(parse_percent("0.5%").unwrap(), 50);
    assert_eq!(parse_percent("100").unwrap(), 10_000);
    for bad in ["", "%", "101%", "-1%", "1.234%", "abc", "1e2", "95 %x"] {
        assert!(parse_percent(bad).is_err(), "{bad}");
    }
}

#[test]
fn plans_are_checked() {
    plan().validate().unwrap();
    for groups in [
        vec![],
        vec![5000],
        vec![1000, 1000, 10_000],
        vec![0, 10_000],
        vec![5000, 1000, 10_000],
    ] {
        assert!(Plan { groups, ..plan() }.validate().is_err());
    }
    assert!(
        Plan {
            error_threshold: 0,
            ..plan()
        }
        .validate()
        .is_err()
    );
    assert!(
        Plan {
            min_sample: 0,
            ..plan()
        }
        .validate()
        .is_err()
    );
}

#[test]
fn groups_reach_their_share_and_at_least_one_device_each() {
    let p = plan();
    assert_eq!(
        (0..4).map(|g| p.reach(g, 10_000)).collect::<Vec<_>>(),
        [100, 1000, 5000, 10_000]
    );
    assert_eq!(
        (0..4).map(|g| p.reach(g, 10)).collect::<Vec<_>>(),
        [1, 2, 5, 10]
    );
    assert_eq!(p.reach(0, 0), 0);
    assert_eq!(p.reach(9, 7), 7);
}

#[test]
fn a_group_advances_on_success_and_the_last_completes() {
    let p = plan();
    let t = Tally {
        assigned: 100,
        installed: 96,
        ..Tally::default()
    };
    assert!(matches!(
        decide(&p, &Phase::Running { group: 0 }, &both(t), None),
        Decision::Advance { to: 1, .. }
    ));
    assert!(matches!(
        decide(&p, &Phase::Running { group: 3 }, &both(t), None),
        Decision::Complete { .. }
    ));
    let approval = Plan {
        approval: true,
        ..p.clone()
    };
    assert!(matches!(
        decide(&approval, &Phase::Running { group: 0 }, &both(t), None),
        Decision::AwaitApproval { .. }
    ));
    let slow = Tally {
        assigned: 100,
        installed: 90,
        ..Tally::default()
    };
    assert_eq!(
        decide(&p, &Phase::Running { group: 0 }, &both(slow), None),
        Decision::Wait
    );
    assert_eq!(
        decide(
            &p,
            &Phase::Paused {
                group: 0,
                reason: "x".into()
            },
            &both(t),
            None
        ),
        Decision::Wait
    );
}

#[test]
fn each_failure_kind_halts_on_its_own_with_the_threshold_named() {
    let p = plan();
    for (tally, kind) in [
        (
            Tally {
                assigned: 40,
                failed: 3,
                ..Tally::default()
            },
            "failure",
        ),
        (
            // Each kind below its minimum sample, and 95% can still install.
            Tally {
                assigned: 40,
                rejected: 1,
                failed: 1,
                ..Tally::default()
            },
            "",
        ),
        (
            Tally {
                assigned: 40,
                timed_out: 4,
                ..Tally::default()
            },
            "timeout",
        ),
    ] {
        let d = decide(&p, &Phase::Running { group: 1 }, &both(tally), None);
        match (kind, &d) {
            ("", Decision::Wait) => {}
            (kind, Decision::Halt { reason }) if !kind.is_empty() => {
                assert!(reason.starts_with(&format!("{kind} threshold")), "{reason}");
                assert!(
                    reason.contains("5%") && reason.contains("minimum sample 3"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
    // Below the minimum sample, a high share does not halt yet (while the group's other 98
    // devices, not assigned yet, can still make the success threshold).
    let early = Tally {
        assigned: 2,
        failed: 2,
        ..Tally::default()
    };
    let early = Progress {
        unassigned_in_reach: 98,
        ..both(early)
    };
    assert_eq!(
        decide(&p, &Phase::Running { group: 0 }, &early, None),
        Decision::Wait
    );
    let signal = decide(
        &p,
        &Phase::Running { group: 2 },
        &both(Tally {
            assigned: 10,
            installed: 10,
            ..Tally::default()
        }),
        Some("dev-1"),
    );
    assert!(
        matches!(signal, Decision::Halt { ref reason } if reason.contains("dev-1")),
        "{signal}"
    );
}

#[test]
fn a_group_that_fails_entirely_halts_even_when_earlier_groups_dilute_it() {
    let p = plan();
    let progress = Progress {
        cumulative: Tally {
            assigned: 1000,
            installed: 990,
            failed: 10,
            ..Tally::default()
        },
        newest_group: Tally {
            assigned: 10,
            failed: 10,
            ..Tally::default()
        },
        ..Progress::default()
    };
    match decide(&p, &Phase::Running { group: 2 }, &progress, None) {
        Decision::Halt { reason } => assert!(reason.contains("of group 3"), "{reason}"),
        other => panic!("{other}"),
    }
    // Success needs the newest group too.
    let lagging = Progress {
        cumulative: Tally {
            assigned: 1000,
            installed: 960,
            ..Tally::default()
        },
        newest_group: Tally {
            assigned: 100,
            installed: 60,
            ..Tally::default()
        },
        ..Progress::default()
    };
    assert_eq!(
        decide(&p, &Phase::Running { group: 1 }, &lagging, None),
        Decision::Wait
    );
}

#[test]
fn windows_parse_and_wrap_past_midnight() {
    let night = Window::parse("22:30-04:00").unwrap();
    assert!(night.contains(23 * 60) && night.contains(60) && !night.contains(12 * 60));
    let day = Window::parse("09:00-17:00").unwrap();
    assert!(day.contains(9 * 60) && !day.contains(17 * 60));
    for bad in [
        "",
        "9:00-17:00",
        "09:00",
        "24:00-01:00",
        "09:00-09:00",
        "09:60-10:00",
    ] {
        assert!(Window::parse(bad).is_err(), "{bad}");
    }
}

proptest! {
    /// Never advance while any failure kind at or past its minimum sample is at or above the
    /// error threshold; a success needs the success share.
    #[test]
    fn decisions_respect_both_thresholds(assigned in 1u64..2000, installed in 0u64..2000, failed in 0u64..200,
                                         rejected in 0u64..200, timed_out in 0u64..200, group in 0usize..4) {
        let p = plan();
        let t = Tally { assigned, installed: installed.min(assigned), failed, rejected, timed_out };
        let d = decide(&p, &Phase::Running { group }, &both(t), None);
        let over = [failed, rejected, timed_out].iter().any(|&c| c >= 3 && c * 10_000 / assigned >= 500);
        if over {
            prop_assert!(matches!(d, Decision::Halt { .. }), "{d}");
        } else if matches!(d, Decision::Advance { .. } | Decision::Complete { .. }) {
            prop_assert!(t.installed * 10_000 / assigned >= 9500);
        }
    }

    #[test]
    fn reach_is_monotone_and_ends_at_everyone(total in 0u64..1_000_000) {
        let p = plan();
        let reached: Vec<u64> = (0..4).map(|g| p.reach(g, total)).collect();
        prop_assert!(reached.windows(2).all(|w| w[0] <= w[1]));
        prop_assert_eq!(reached[3], total);
    }

    #[test]
    fn parsers_never_panic(s in "\\PC{0,16}") {
        let _ = parse_percent(&s);
        let _ = Window::parse(&s);
    }
}

#[test]
fn a_group_adding_no_device_is_judged_on_everything_so_far_and_unassigned_devices_hold_success() {
    // Two devices, 1/10/50/100%: group 3 reaches no one new.
    let plan = plan();
    assert_eq!((plan.reach(1, 2), plan.reach(2, 2)), (2, 2));
    let done = Tally {
        assigned: 2,
        installed: 2,
        ..Tally::default()
    };
    let progress = Progress {
        cumulative: done,
        newest_group: Tally::default(),
        unassigned_in_reach: 0,
    };
    assert!(matches!(
        decide(&plan, &Phase::Running { group: 2 }, &progress, None),
        Decision::Advance { to: 3, .. }
    ));
    // Everyone assigned so far installed, but the rate held devices of the group back.
    let held = Progress {
        unassigned_in_reach: 5,
        ..both(done)
    };
    assert_eq!(
        decide(&plan, &Phase::Running { group: 0 }, &held, None),
        Decision::Wait
    );
}

#[test]
fn a_group_that_can_no_longer_succeed_halts_instead_of_waiting() {
    // 95% of 6 devices needs all six: one failure (below the minimum sample of 3) ends it.
    let plan = plan();
    let t = Tally {
        assigned: 6,
        installed: 4,
        failed: 1,
        ..Tally::default()
    };
    match decide(&plan, &Phase::Running { group: 1 }, &both(t), None) {
        Decision::Halt { reason } => {
            assert!(
                reason.starts_with("success threshold unreachable: 1 of 6 devices of group 2"),
                "{reason}"
            );
            assert!(
                reason.contains("at most 83.33% can install, below 95%"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Still possible: wait.
    let t = Tally {
        assigned: 100,
        installed: 50,
        failed: 2,
        ..Tally::default()
    };
    assert_eq!(
        decide(&plan, &Phase::Running { group: 1 }, &both(t), None),
        Decision::Wait
    );
}
