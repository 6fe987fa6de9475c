//! CPU time spent by a responder, from `/proc`: the in-process server's threads, or an
//! external responder's process group.

/// Where to read a responder's CPU time from.
#[derive(Clone, Copy)]
pub(crate) enum CpuOf {
    /// This process's threads whose name starts with this (the in-process server runtime).
    Threads(&'static str),
    /// Every process in this process group (openssl and its `-multi` workers).
    ProcessGroup(u32),
}

/// utime + stime in seconds from a `/proc/.../stat` line (fields 14 and 15, after the
/// parenthesised command name).
fn stat_cpu_seconds(stat: &str) -> Option<(f64, i64)> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // After the name: state(0) ppid(1) pgrp(2) ... utime(11) stime(12).
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let pgrp: i64 = fields.get(2)?.parse().ok()?;
    // USER_HZ is 100 on Linux.
    Some((ticks / 100.0, pgrp))
}

pub(crate) fn cpu_seconds(of: CpuOf) -> f64 {
    let read_dir = |dir: &str| std::fs::read_dir(dir).into_iter().flatten().flatten();
    match of {
        CpuOf::Threads(prefix) => read_dir("/proc/self/task")
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix))
            })
            .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
            .filter_map(|s| stat_cpu_seconds(&s).map(|(cpu, _)| cpu))
            .sum(),
        CpuOf::ProcessGroup(group) => read_dir("/proc")
            .filter_map(|p| std::fs::read_to_string(p.path().join("stat")).ok())
            .filter_map(|s| stat_cpu_seconds(&s))
            .filter(|(_, pgrp)| *pgrp == i64::from(group))
            .map(|(cpu, _)| cpu)
            .sum(),
    }
}
