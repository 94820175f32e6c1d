//! `annals-bench`: figures for annals beside raw SQLite (or raw PostgreSQL)
//! doing the same work.
//!
//! ```text
//! cargo run --release -p annals-bench -- <scenario> [--shape realistic|small]
//!     [--durability full|relaxed|both] [--size N] [--per-stream N]
//!     [--store sqlite|postgres] [--pg-url URL]
//! ```
//!
//! Each scenario runs the same workload through annals and through raw
//! rusqlite (the baseline), in alternating rounds so that a slow moment of
//! the machine hits both alike, and prints one `name: value unit` line per
//! figure and `ratio_<name>: x` (ours divided by the baseline; higher is
//! better). The scenarios, by family:
//!
//! - writes (`append.rs`, `command.rs`): `append-seq`, `append-concurrent`,
//!   `command-seq`, `command-concurrent`: commands through the repository
//!   (load or cache, decide, append);
//! - aggregates (`read.rs`): `load`, `load-snapshot`, and `read-streams`,
//!   whole streams read and decoded;
//! - the log (`scan.rs`): `scan`, the whole log decoded, and
//!   `scan-filtered`, one category of it;
//! - the read side (`project/`): `rebuild`, a read model built from the
//!   log by a new projection and by a rebuild, `live-lag`, a projection
//!   following commands live, and `filtered-rebuild`, a projection of one
//!   category of the log;
//! - processes (`saga/`): `saga`, transfers between accounts driven by a
//!   saga while they are requested;
//! - the event bus (`bus.rs`): `bus`, the log handed to ten subscribers.
//! - durable handlers (`handlers.rs`): `handlers`, a request per event
//!   made and run to done.
//!
//! Events have the realistic shape by default (payloads of about 200 bytes,
//! metadata of about 110); `--shape small` gives the short payloads and no
//! metadata of earlier builds, whose scenarios then do exactly the work
//! they did. `--durability both` (the default of the write scenarios) runs
//! the scenario once per durability and suffixes its figures `_full` and
//! `_relaxed`.
//!
//! `--store postgres` (`pg/`) runs `append-seq`, `append-concurrent`,
//! `load`, `scan` and `rebuild` on annals' PostgreSQL store beside raw
//! tokio-postgres, on the server of `--pg-url` (default: `ANNALS_PG_URL`,
//! else `postgres://postgres@127.0.0.1:5432/test`), in fresh schemas that
//! are dropped at the end; their figures are suffixed `_pg`.

mod append;
mod bus;
mod command;
mod handlers;
mod model;
mod pg;
mod project;
mod raw;
mod read;
mod report;
mod saga;
mod scan;
mod settings;
mod shape;
mod sizes;

use std::error::Error;

use annals::sqlite::Durability;

use crate::report::Report;
pub(crate) use crate::settings::Settings;
use crate::settings::{durability_name, StoreKind, USAGE};

/// The scenarios, as named on the command line.
const SCENARIOS: [&str; 15] = [
    "append-seq",
    "append-concurrent",
    "command-seq",
    "command-concurrent",
    "load",
    "load-snapshot",
    "read-streams",
    "scan",
    "scan-filtered",
    "rebuild",
    "live-lag",
    "filtered-rebuild",
    "saga",
    "bus",
    "handlers",
];

/// Runs one scenario once, with one durability.
async fn run(scenario: &str, settings: Settings, report: &Report) -> Result<(), Box<dyn Error>> {
    if settings.store == StoreKind::Postgres {
        return pg::run(scenario, settings, report).await;
    }
    match scenario {
        "append-seq" => append::sequential(settings, report).await,
        "append-concurrent" => append::concurrent(settings, report).await,
        "command-seq" => command::sequential(settings, report).await,
        "command-concurrent" => command::concurrent(settings, report).await,
        "load" => read::load(settings, report).await,
        "load-snapshot" => read::load_snapshot(settings, report).await,
        "read-streams" => read::streams(settings, report).await,
        "scan" => scan::whole(settings, report).await,
        "scan-filtered" => scan::filtered(settings, report).await,
        "rebuild" => project::rebuild(settings, report).await,
        "live-lag" => project::lag(settings, report).await,
        "filtered-rebuild" => project::filtered(settings, report).await,
        "saga" => saga::transfers(settings, report).await,
        "bus" => bus::subscribers(settings, report).await,
        "handlers" => handlers::durable(settings, report).await,
        other => Err(format!("unknown scenario {other:?}\n{USAGE}").into()),
    }
}

/// The durabilities a scenario runs with when none is named: writes (and
/// a projection following them) are measured with both, reads with full
/// (they do not sync).
fn default_durabilities(scenario: &str) -> Vec<Durability> {
    if scenario.starts_with("append-") || scenario.starts_with("command-") || scenario == "live-lag"
    {
        vec![Durability::Full, Durability::Relaxed]
    } else {
        vec![Durability::Full]
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let invocation = match settings::parse(&args) {
        Ok(invocation) => invocation,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let scenario = invocation.scenario;
    if !SCENARIOS.contains(&scenario.as_str()) {
        eprintln!("unknown scenario {scenario:?}\n{USAGE}");
        std::process::exit(2);
    }
    let postgres = invocation.settings.store == StoreKind::Postgres;
    if postgres && !pg::SCENARIOS.contains(&scenario.as_str()) {
        eprintln!(
            "{scenario} does not run on PostgreSQL; these do: {}",
            pg::SCENARIOS.join(", ")
        );
        std::process::exit(2);
    }
    // PostgreSQL's durability is the server's: one run.
    let durabilities = match invocation.durabilities {
        Some(durabilities) => durabilities,
        None if postgres => vec![Durability::Full],
        None => default_durabilities(&scenario),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start a runtime: {e}");
            std::process::exit(1);
        }
    };
    println!("scenario: {scenario}");
    println!("shape: {}", invocation.settings.shape.name());
    match durabilities.as_slice() {
        _ if postgres => println!("store: postgres"),
        [one] => println!("durability: {}", durability_name(*one)),
        _ => println!("durability: both"),
    }
    for (n, durability) in durabilities.iter().enumerate() {
        let suffix = match (durabilities.len(), durability) {
            _ if postgres => "_pg",
            (1, _) => "",
            (_, Durability::Relaxed) => "_relaxed",
            _ => "_full",
        };
        let settings = Settings {
            durability: *durability,
            ..invocation.settings
        };
        let report = Report::new(suffix, n == 0);
        if let Err(e) = runtime.block_on(run(&scenario, settings, &report)) {
            eprintln!("{scenario} failed: {e}");
            std::process::exit(1);
        }
    }
}
