//! The output format: `name: value unit` lines and `ratio_<name>: x`.
//!
//! A scenario run once per durability prints its figures with a `_full`
//! or `_relaxed` suffix; the sizes it was run at are printed once.

use std::fmt::Display;
use std::time::Duration;

/// Where one run of a scenario prints its lines.
pub(crate) struct Report {
    /// Appended to every figure's name: `""`, `"_full"` or `"_relaxed"`.
    suffix: &'static str,
    /// Whether this is the scenario's first run, the one that prints its
    /// sizes.
    first: bool,
}

impl Report {
    pub(crate) fn new(suffix: &'static str, first: bool) -> Self {
        Report { suffix, first }
    }

    /// Prints a size the scenario was run at, once per scenario.
    pub(crate) fn size(&self, name: &str, value: impl Display) {
        if self.first {
            println!("{name}: {value}");
        }
    }

    /// Prints one figure of this run.
    pub(crate) fn figure(&self, name: &str, value: f64, unit: &str) {
        figure(&format!("{name}{}", self.suffix), value, unit);
    }

    /// Prints a ratio of this run (higher is better).
    pub(crate) fn ratio(&self, name: &str, value: f64) {
        println!("ratio_{name}{}: {value:.2}", self.suffix);
    }

    /// Prints ours and the baseline's throughput and their ratio.
    pub(crate) fn compare(&self, name: &str, ours: f64, baseline: f64) {
        self.figure(name, ours, "events/s");
        self.figure(&format!("baseline_{name}"), baseline, "events/s");
        self.ratio(name, ours / baseline.max(1e-9));
    }
}

/// Events per second over a measured duration.
pub(crate) fn per_second(count: usize, took: Duration) -> f64 {
    count as f64 / took.as_secs_f64().max(1e-9)
}

/// The duration `per_cent` of the way through `sorted` (ascending, not
/// empty): 50 for the median, 100 for the longest.
pub(crate) fn percentile(sorted: &[Duration], per_cent: usize) -> Duration {
    sorted[(sorted.len() - 1) * per_cent / 100]
}

/// A duration in milliseconds.
pub(crate) fn millis(took: Duration) -> f64 {
    took.as_secs_f64() * 1e3
}

/// Prints one figure.
fn figure(name: &str, value: f64, unit: &str) {
    if value >= 100.0 {
        println!("{name}: {value:.0} {unit}");
    } else {
        println!("{name}: {value:.2} {unit}");
    }
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
