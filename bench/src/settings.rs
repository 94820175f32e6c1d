//! The command line: which scenario, and the settings it runs with.

use annals::sqlite::{Durability, OpenError, SqliteStore};

use crate::shape::Shape;

pub(crate) const USAGE: &str = "\
usage: annals-bench <scenario> [--shape realistic|small] [--durability full|relaxed|both]
                    [--size N] [--per-stream N] [--sync-interval MS] [--cache N]
                    [--store sqlite|postgres] [--pg-url URL]

scenarios (default size in brackets):
  append-seq          commands one at a time over 1,000 accounts [4,000 commands]
  append-concurrent   commands from 64 tasks, 10 accounts each [12,800 commands]
  command-seq         1,000 accounts opened, then deposits round-robin [20,000 events]
  command-concurrent  the command-seq workload from 64 tasks [20,000 events]
  load                aggregates of 1,000 events loaded through the repository
                      [--size: events per aggregate]
  load-snapshot       aggregates loaded by replay and from snapshots
                      [--size: events per aggregate, 10,000]
  scan                the whole log read and decoded [1,000,000 events]
  scan-filtered       a category holding 1% of the log read with a filter,
                      beside the unfiltered scan [1,000,000 events]
  read-streams        whole streams read and decoded [--size: 1,000 streams,
                      --per-stream: 1,000 events each]
  rebuild             a read model (one upsert per event) built from a log over
                      10,000 accounts by a new projection, then rebuilt, beside
                      raw rusqlite building it [1,000,000 events]
  live-lag            the command-concurrent workload while a projection
                      follows live: each command's lag until the read model
                      has it [20,000 commands]
  filtered-rebuild    a projection of a category holding 1% of the log catching
                      up, beside one of the whole log [1,000,000 events]
  saga                transfers over 1,000 accounts requested from 64 tasks
                      while a saga debits and credits them; beside one raw
                      two-stream transaction per transfer [10,000 transfers]
  bus                 the log handed by the event bus to 10 subscribers,
                      beside a raw scan of it [100,000 events]
  handlers            every event of the log made a durable request, run by
                      one no-op handler with 4 workers until all are done,
                      beside a raw scan of it; then `bus` [100,000 events]

--shape       realistic (default): payloads of about 200 bytes, metadata of
              about 110 (correlation and causation ids); small: the short
              payloads and no metadata of earlier builds of the bench
--durability  full, relaxed, or both (one run each, figures suffixed _full and
              _relaxed); default both for append-*, command-* and live-lag,
              else full
--sync-interval  with relaxed durability, how often annals syncs the WAL, in
              milliseconds (default: the store's, 50); a large value shows
              what the bound on loss costs
--cache       how many aggregates the repository caches in the command
              scenarios (default: the repository's, 1,024); 0 turns it off
--store       sqlite (default) or postgres: the store annals runs on, and the
              baseline (raw rusqlite, or raw tokio-postgres on a table of the
              same shape); postgres runs append-seq, append-concurrent, load,
              scan and rebuild, each in fresh schemas dropped at the end,
              with its own default sizes (see below), and prints its figures
              suffixed _pg; durability is the server's
--pg-url      the PostgreSQL server for --store postgres (default: the
              ANNALS_PG_URL environment variable, else
              postgres://postgres@127.0.0.1:5432/test)

default sizes with --store postgres: as above, but scan 500,000 events and
rebuild 400,000 events";

/// Settings shared by the scenarios, for one run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) durability: Durability,
    pub(crate) shape: Shape,
    /// The scenario's main size (commands, events, or streams); each
    /// scenario has its own default.
    pub(crate) size: Option<usize>,
    /// Events per stream, for the scenarios that read whole streams.
    pub(crate) per_stream: Option<usize>,
    /// The relaxed store's sync interval, when not the default.
    pub(crate) sync_interval: Option<std::time::Duration>,
    /// The repository's cache size, when not the default.
    pub(crate) cache: Option<usize>,
    /// The store annals runs on, and so the baseline.
    pub(crate) store: StoreKind,
    /// The PostgreSQL server of `--store postgres`.
    pub(crate) pg_url: &'static str,
}

/// The store a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreKind {
    /// An SQLite file beside raw rusqlite (the default).
    Sqlite,
    /// A PostgreSQL schema beside raw tokio-postgres.
    Postgres,
}

/// The server `--store postgres` uses when neither `--pg-url` nor
/// `ANNALS_PG_URL` names one.
const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

impl Settings {
    /// A repository for the command scenarios, with the run's cache size.
    pub(crate) fn repository<A: annals::Aggregate, S: annals::EventStore>(
        &self,
        store: S,
    ) -> Result<annals::Repository<A, S>, annals::AggregateError> {
        let repository = annals::Repository::new(store)?;
        Ok(match self.cache {
            Some(n) => repository.with_cache(annals::CacheSize::entries(n)),
            None => repository,
        })
    }

    /// Opens an annals store at `path` with the run's durability.
    pub(crate) async fn open_store(
        &self,
        path: &std::path::Path,
    ) -> Result<SqliteStore, OpenError> {
        let options = SqliteStore::options()
            .path(path)
            .durability(self.durability);
        match self.sync_interval {
            Some(interval) => options.sync_interval(interval),
            None => options,
        }
        .open()
        .await
    }
}

/// What the command line asks for.
pub(crate) struct Invocation {
    pub(crate) scenario: String,
    /// The durabilities named by `--durability`; `None` for the scenario's
    /// default.
    pub(crate) durabilities: Option<Vec<Durability>>,
    /// The settings, with the first durability.
    pub(crate) settings: Settings,
}

/// Parses the arguments after the program name.
pub(crate) fn parse(args: &[String]) -> Result<Invocation, String> {
    let mut args = args.iter();
    let scenario = args.next().ok_or(USAGE)?.clone();
    let mut durabilities = None;
    let mut settings = Settings {
        durability: Durability::Full,
        shape: Shape::Realistic,
        size: None,
        per_stream: None,
        sync_interval: None,
        cache: None,
        store: StoreKind::Sqlite,
        pg_url: DEFAULT_PG_URL,
    };
    let mut pg_url = std::env::var("ANNALS_PG_URL").ok();
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--durability" => {
                durabilities = Some(match value.as_str() {
                    "full" => vec![Durability::Full],
                    "relaxed" => vec![Durability::Relaxed],
                    "both" => vec![Durability::Full, Durability::Relaxed],
                    other => {
                        return Err(format!(
                            "unknown durability {other:?}: full, relaxed or both"
                        ))
                    }
                });
            }
            "--shape" => {
                settings.shape = match value.as_str() {
                    "realistic" => Shape::Realistic,
                    "small" => Shape::Small,
                    other => return Err(format!("unknown shape {other:?}: realistic or small")),
                }
            }
            "--size" => settings.size = Some(count(flag, value)?),
            "--per-stream" => settings.per_stream = Some(count(flag, value)?),
            "--cache" => {
                let n = value
                    .parse()
                    .map_err(|_| format!("--cache {value:?} is not a number"))?;
                settings.cache = Some(n);
            }
            "--sync-interval" => {
                let millis = u64::try_from(count(flag, value)?).unwrap_or(u64::MAX);
                settings.sync_interval = Some(std::time::Duration::from_millis(millis));
            }
            "--store" => {
                settings.store = match value.as_str() {
                    "sqlite" => StoreKind::Sqlite,
                    "postgres" => StoreKind::Postgres,
                    other => return Err(format!("unknown store {other:?}: sqlite or postgres")),
                }
            }
            "--pg-url" => pg_url = Some(value.clone()),
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    if let Some(url) = pg_url {
        // One URL per process, read by every scenario: leaking it keeps
        // the settings `Copy`.
        settings.pg_url = Box::leak(url.into_boxed_str());
    }
    if settings.store == StoreKind::Postgres && durabilities.is_some() {
        return Err("--durability is for SQLite: PostgreSQL's is the server's".to_owned());
    }
    Ok(Invocation {
        scenario,
        durabilities,
        settings,
    })
}

fn count(flag: &str, value: &str) -> Result<usize, String> {
    match value.parse() {
        Ok(0) => Err(format!("{flag} must be at least 1")),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{flag} {value:?} is not a number")),
    }
}

/// The name of a durability in the output.
pub(crate) fn durability_name(durability: Durability) -> &'static str {
    match durability {
        Durability::Relaxed => "relaxed",
        _ => "full",
    }
}
