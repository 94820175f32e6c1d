//! Writing commands: one at a time, and from 64 tasks at once. Each
//! command goes through the repository: load the aggregate (or take it from
//! the cache), decide, append its event with the version it decided on.

use std::collections::HashMap;
use std::error::Error;
use std::ops::Range;
use std::path::Path;
use std::time::{Duration, Instant};

use annals::{EventStore, Repository};

use crate::model::{command, event_for, Account};
use crate::raw::{self, RawLog};
use crate::report::{self, Report};
use crate::shape::Shape;
use crate::sizes::{commands_per_task, ACCOUNTS, ACCOUNTS_PER_TASK, APPEND_SEQ_COMMANDS, TASKS};
use crate::Settings;

/// Ours and the baseline run in alternating rounds, so that a slow moment of
/// the machine hits both alike.
pub(crate) const ROUNDS: usize = 4;

/// `append-seq`: 4,000 commands one at a time over 1,000 accounts (each
/// account opened by its first command, then deposits round-robin).
/// Baseline: read the stream's version and insert, in one `IMMEDIATE`
/// transaction per event.
pub(crate) async fn sequential(settings: Settings, report: &Report) -> Result<(), Box<dyn Error>> {
    commands_in_sequence(settings, report, "append_seq", APPEND_SEQ_COMMANDS).await
}

/// One command at a time over at most 1,000 accounts, round-robin; the
/// baseline reads each stream's version and inserts, one `IMMEDIATE`
/// transaction per event. Prints `name`'s figures.
pub(crate) async fn commands_in_sequence(
    settings: Settings,
    report: &Report,
    name: &str,
    default_commands: usize,
) -> Result<(), Box<dyn Error>> {
    let commands = settings.size.unwrap_or(default_commands);
    let accounts = commands.min(ACCOUNTS);
    let shape = settings.shape;
    let Sides {
        dir,
        repository,
        mut raw,
    } = Sides::open(&settings).await?;
    let path = dir.path().join(ANNALS_DB);
    let (mut ours, mut baseline) = (Duration::ZERO, Duration::ZERO);
    let per_round = commands.div_ceil(ROUNDS);
    for round in 0..ROUNDS {
        let range = round * per_round..((round + 1) * per_round).min(commands);
        ours += execute_in_sequence(&repository, range.clone(), accounts, shape).await?;
        baseline += raw_commands(&mut raw, range, accounts, shape)?;
    }
    report.size("commands", commands);
    report.size("accounts", accounts);
    same_shape(&path, &raw, settings, report)?;
    report.compare(
        name,
        report::per_second(commands, ours),
        report::per_second(commands, baseline),
    );
    Ok(())
}

/// `append-concurrent`: 64 tasks issue commands at once, each to its own 10
/// accounts. Baseline: one connection inserting the same events, one
/// transaction each, at versions it tracks in memory.
pub(crate) async fn concurrent(settings: Settings, report: &Report) -> Result<(), Box<dyn Error>> {
    let shape = settings.shape;
    let per_task = commands_per_task(settings.size);
    let total = per_task * TASKS;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("annals.db");
    let store = settings.open_store(&path).await?;
    let repository = settings.repository::<Account, _>(store)?;
    let mut raw = RawLog::open(&dir.path().join("raw.db"), settings.durability, shape)?;
    let mut versions: HashMap<String, i64> = HashMap::new();
    let (mut ours, mut baseline) = (Duration::ZERO, Duration::ZERO);
    let per_round = per_task.div_ceil(ROUNDS);
    for round in 0..ROUNDS {
        let range = round * per_round..((round + 1) * per_round).min(per_task);
        ours +=
            execute_from_tasks(&repository, TASKS, range.clone(), ACCOUNTS_PER_TASK, shape).await?;
        let start = Instant::now();
        for task in 0..TASKS {
            for n in range.clone() {
                let (id, command) = command(n, ACCOUNTS_PER_TASK, shape);
                let stream = format!("account-{task}.{id}");
                let version = versions.entry(stream.clone()).or_default();
                *version += 1;
                raw.insert_at(&stream, *version, &event_for(command))?;
            }
        }
        baseline += start.elapsed();
    }
    report.size("tasks", TASKS);
    report.size("commands", total);
    same_shape(&path, &raw, settings, report)?;
    report.compare(
        "append_concurrent",
        report::per_second(total, ours),
        report::per_second(total, baseline),
    );
    Ok(())
}

/// Ours' side of a sequential round: the commands numbered `range` through
/// `repository`, one at a time. Returns the time they took.
pub(crate) async fn execute_in_sequence<S: EventStore>(
    repository: &Repository<Account, S>,
    range: Range<usize>,
    accounts: usize,
    shape: Shape,
) -> Result<Duration, Box<dyn Error>> {
    let start = Instant::now();
    for n in range {
        let (id, command) = command(n, accounts, shape);
        repository.execute(&id, command, &shape.context()).await?;
    }
    Ok(start.elapsed())
}

/// Ours' side of a concurrent round: `tasks` tasks at once, each issuing
/// the commands numbered `range` to its own `accounts` accounts (task `t`'s
/// account `a` is `account-t.a`). Returns the time until all were done.
pub(crate) async fn execute_from_tasks<S: EventStore + Clone + 'static>(
    repository: &Repository<Account, S>,
    tasks: usize,
    range: Range<usize>,
    accounts: usize,
    shape: Shape,
) -> Result<Duration, Box<dyn Error>> {
    let start = Instant::now();
    let running: Vec<_> = (0..tasks)
        .map(|task| {
            let (repository, range) = (repository.clone(), range.clone());
            tokio::spawn(async move {
                for n in range {
                    let (id, command) = command(n, accounts, shape);
                    repository
                        .execute(&format!("{task}.{id}"), command, &shape.context())
                        .await?;
                }
                Ok::<_, annals::CommandError<crate::model::Refused>>(())
            })
        })
        .collect();
    for task in running {
        task.await??;
    }
    Ok(start.elapsed())
}

/// The baseline's side of a round: the commands numbered `range`, one
/// `IMMEDIATE` transaction each. Returns the time they took.
pub(crate) fn raw_commands(
    raw: &mut RawLog,
    range: Range<usize>,
    accounts: usize,
    shape: Shape,
) -> Result<Duration, Box<dyn Error>> {
    let start = Instant::now();
    for n in range {
        let (id, command) = command(n, accounts, shape);
        raw.read_version_then_insert(&format!("account-{id}"), &event_for(command))?;
    }
    Ok(start.elapsed())
}

/// Prints the size of the events written, and checks that ours and the
/// baseline wrote events of the same size.
pub(crate) fn same_shape(
    ours: &Path,
    raw: &RawLog,
    settings: Settings,
    report: &Report,
) -> Result<(), Box<dyn Error>> {
    let sizes = raw::event_sizes(&raw::open_read_only(ours)?, settings.shape)?;
    let baseline = raw.event_sizes()?;
    if !sizes.matches(&baseline) {
        return Err(format!("ours wrote events of {sizes:?}, the baseline {baseline:?}").into());
    }
    sizes.report(report);
    Ok(())
}

/// The annals database of a command scenario, in its directory.
pub(crate) const ANNALS_DB: &str = "annals.db";

/// Both sides of a command scenario, in one temporary directory: a
/// repository on an annals store, and the raw baseline's log.
pub(crate) struct Sides {
    /// Holds both databases; removed when the scenario ends.
    pub(crate) dir: tempfile::TempDir,
    pub(crate) repository: annals::Repository<Account, annals::sqlite::SqliteStore>,
    pub(crate) raw: RawLog,
}

impl Sides {
    pub(crate) async fn open(settings: &Settings) -> Result<Sides, Box<dyn Error>> {
        let dir = tempfile::tempdir()?;
        let store = settings.open_store(&dir.path().join(ANNALS_DB)).await?;
        let repository = settings.repository::<Account, _>(store)?;
        let raw = RawLog::open(
            &dir.path().join("raw.db"),
            settings.durability,
            settings.shape,
        )?;
        Ok(Sides {
            dir,
            repository,
            raw,
        })
    }
}
