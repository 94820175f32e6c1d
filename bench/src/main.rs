//! `annals-bench`: figures for annals beside raw SQLite doing the same work.
//!
//! ```text
//! cargo run --release -p annals-bench -- <scenario> [--durability full|relaxed] [--size N]
//! ```
//!
//! Scenarios: `append-seq`, `append-concurrent`, `load`, `scan`,
//! `load-snapshot`. Each prints one `name: value unit` line per figure and,
//! where the scenario has a baseline measured in the same run,
//! `ratio_<name>: x` (ours divided by the baseline; higher is better).

mod append;
mod model;
mod raw;
mod read;
mod report;

use annals::sqlite::Durability;

/// Settings shared by the scenarios.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) durability: Durability,
    /// The scenario's main size (commands, events, or streams); each
    /// scenario has its own default.
    pub(crate) size: Option<usize>,
}

impl Settings {
    /// Opens an annals store at `path` with the run's durability.
    pub(crate) async fn open_store(
        &self,
        path: &std::path::Path,
    ) -> Result<annals::sqlite::SqliteStore, annals::sqlite::OpenError> {
        annals::sqlite::SqliteStore::options()
            .path(path)
            .durability(self.durability)
            .open()
            .await
    }
}

const USAGE: &str = "usage: annals-bench <append-seq|append-concurrent|load|scan|load-snapshot> \
                     [--durability full|relaxed] [--size N]";

fn parse(args: &[String]) -> Result<(String, Settings), String> {
    let mut args = args.iter();
    let scenario = args.next().ok_or(USAGE)?.clone();
    let mut settings = Settings {
        durability: Durability::Full,
        size: None,
    };
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--durability" => {
                settings.durability = match value.as_str() {
                    "full" => Durability::Full,
                    "relaxed" => Durability::Relaxed,
                    other => return Err(format!("unknown durability {other:?}: full or relaxed")),
                }
            }
            "--size" => {
                let size = value
                    .parse()
                    .map_err(|_| format!("--size {value:?} is not a number"))?;
                if size == 0 {
                    return Err("--size must be at least 1".into());
                }
                settings.size = Some(size);
            }
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    Ok((scenario, settings))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (scenario, settings) = match parse(&args) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
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
    let durability = match settings.durability {
        Durability::Relaxed => "relaxed",
        _ => "full",
    };
    println!("scenario: {scenario}");
    println!("durability: {durability}");
    let result = runtime.block_on(async {
        match scenario.as_str() {
            "append-seq" => append::sequential(settings).await,
            "append-concurrent" => append::concurrent(settings).await,
            "load" => read::load(settings).await,
            "scan" => read::scan(settings).await,
            "load-snapshot" => read::load_snapshot(settings).await,
            other => Err(format!("unknown scenario {other:?}\n{USAGE}").into()),
        }
    });
    if let Err(e) = result {
        eprintln!("{scenario} failed: {e}");
        std::process::exit(1);
    }
}
