//! The output format: `name: value unit` lines and `ratio_<name>: x`.

use std::time::Duration;

/// Events per second over a measured duration.
pub(crate) fn per_second(count: usize, took: Duration) -> f64 {
    count as f64 / took.as_secs_f64().max(1e-9)
}

/// Prints one figure.
pub(crate) fn figure(name: &str, value: f64, unit: &str) {
    if value >= 100.0 {
        println!("{name}: {value:.0} {unit}");
    } else {
        println!("{name}: {value:.2} {unit}");
    }
}

/// Prints ours and the baseline's throughput and their ratio.
pub(crate) fn compare(name: &str, ours: f64, baseline: f64) {
    figure(name, ours, "events/s");
    figure(&format!("baseline_{name}"), baseline, "events/s");
    println!("ratio_{name}: {:.2}", ours / baseline.max(1e-9));
}

/// Resets the process's peak resident memory (Linux), so that the next
/// reading of [`peak_rss_mib`] covers only what follows.
pub(crate) fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak resident memory since start or the last reset, in
/// MiB (Linux; `None` elsewhere).
pub(crate) fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The process's resident memory now, in MiB (Linux; `None` elsewhere).
pub(crate) fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
