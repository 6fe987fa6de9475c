//! `sigil-sim monitor`, the binary itself: a simulated fleet whose agents report metrics from
//! simulated `/proc/net` tables to a real server; three devices misbehave (a port scan, a new
//! listening port, a burst of refused topics through the EMQX hook), each raises its alarm
//! within seconds, the port scanner is quarantined (the broker hook refuses its publishing),
//! and the devices that behaved raise no alarm.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[test]
fn each_misbehaviour_raises_its_alarm_and_the_good_devices_none() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sigil-sim"))
        .args(["monitor", "--devices", "24"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (what, alarm) in [
        ("port scan:", "port-scan raised within"),
        (
            "new listening port:",
            "new-listening-tcp-port raised within",
        ),
        (
            "authorization burst:",
            "authorization-failures raised within",
        ),
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(what))
            .unwrap_or_else(|| panic!("no `{what}` line: {stdout}"));
        // The run fails when an alarm comes later than the stated time (10 s,
        // `ALARM_DEADLINE`): its success means each came within it.
        assert!(line.contains(alarm), "{line}");
    }
    assert!(
        stdout.contains("port scanner quarantined: yes (its publishing refused)"),
        "{stdout}"
    );
    assert!(stdout.contains("alarms on good devices:  none"), "{stdout}");
}
