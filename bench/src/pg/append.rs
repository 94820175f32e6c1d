//! Writing commands on PostgreSQL: one at a time, and from 64 tasks at
//! once, through the repository on a `PostgresStore`.

use std::error::Error;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{on_each, PgRun, RawWriter};
use crate::append::{execute_from_tasks, execute_in_sequence, ROUNDS};
use crate::model::{command, event_for, Account};
use crate::report::{self, Report};
use crate::shape::Shape;
use crate::sizes::{commands_per_task, ACCOUNTS, ACCOUNTS_PER_TASK, APPEND_SEQ_COMMANDS, TASKS};
use crate::Settings;

/// `append-seq`: 4,000 commands (`--size`) one at a time over 1,000
/// accounts, as on SQLite. Baseline: one connection appending the same
/// events one at a time as on SQLite: read the stream's version, then one
/// `INSERT` per transaction (autocommit).
pub(crate) async fn sequential(
    run: &PgRun,
    settings: Settings,
    report: &Report,
) -> Result<(), Box<dyn Error>> {
    let commands = settings.size.unwrap_or(APPEND_SEQ_COMMANDS);
    let accounts = commands.min(ACCOUNTS);
    let shape = settings.shape;
    let repository = settings.repository::<Account, _>(run.store.clone())?;
    let raw = RawWriter::new(run, run.connect().await?, shape).await?;
    let (mut ours, mut baseline) = (Duration::ZERO, Duration::ZERO);
    let per_round = commands.div_ceil(ROUNDS);
    for round in 0..ROUNDS {
        let range = round * per_round..((round + 1) * per_round).min(commands);
        ours += execute_in_sequence(&repository, range.clone(), accounts, shape).await?;
        let start = Instant::now();
        for n in range {
            let (stream, version, event) = raw_event(n, accounts, shape, "");
            raw.insert_at(&stream, version, &event)
                .await
                .map_err(|e| e.to_string())?;
        }
        baseline += start.elapsed();
    }
    run.report_durability(report).await?;
    report.size("commands", commands);
    report.size("accounts", accounts);
    run.same_shape(report).await?;
    report.compare(
        "append_seq",
        report::per_second(commands, ours),
        report::per_second(commands, baseline),
    );
    Ok(())
}

/// `append-concurrent`: 64 tasks issue commands at once, each to its own 10
/// accounts, through one store (whose writer commits the appends that queue
/// up together). 12,800 commands (`--size`), as on SQLite. Baseline: the same 64 tasks,
/// each with a connection of its own, reading the stream's version and
/// then one `INSERT` per transaction (autocommit).
pub(crate) async fn concurrent(
    run: &PgRun,
    settings: Settings,
    report: &Report,
) -> Result<(), Box<dyn Error>> {
    let shape = settings.shape;
    let per_task = commands_per_task(settings.size);
    let total = per_task * TASKS;
    let repository = settings.repository::<Account, _>(run.store.clone())?;
    let mut writers = Vec::with_capacity(TASKS);
    for _ in 0..TASKS {
        writers.push(Arc::new(
            RawWriter::new(run, run.connect().await?, shape).await?,
        ));
    }
    let (mut ours, mut baseline) = (Duration::ZERO, Duration::ZERO);
    let per_round = per_task.div_ceil(ROUNDS);
    for round in 0..ROUNDS {
        let range = round * per_round..((round + 1) * per_round).min(per_task);
        ours +=
            execute_from_tasks(&repository, TASKS, range.clone(), ACCOUNTS_PER_TASK, shape).await?;
        let start = Instant::now();
        on_each(&writers, |task, writer| {
            raw_inserts(writer, range.clone(), ACCOUNTS_PER_TASK, shape, task)
        })
        .await?;
        baseline += start.elapsed();
    }
    run.report_durability(report).await?;
    report.size("tasks", TASKS);
    report.size("commands", total);
    run.same_shape(report).await?;
    report.compare(
        "append_concurrent",
        report::per_second(total, ours),
        report::per_second(total, baseline),
    );
    Ok(())
}

/// One task of the concurrent baseline: the events of the commands numbered
/// `range` to task `task`'s accounts, one transaction each.
async fn raw_inserts(
    writer: Arc<RawWriter>,
    range: Range<usize>,
    accounts: usize,
    shape: Shape,
    task: usize,
) -> Result<(), Box<dyn Error + Send + Sync>> {
    for n in range {
        let (stream, version, event) = raw_event(n, accounts, shape, &format!("{task}."));
        writer.insert_at(&stream, version, &event).await?;
    }
    Ok(())
}

/// The stream, version and event the baseline writes for command `n`: the
/// commands go round-robin over the accounts, so the `k`-th command of an
/// account writes its version `k + 1`.
fn raw_event(
    n: usize,
    accounts: usize,
    shape: Shape,
    prefix: &str,
) -> (String, i64, crate::model::BankEvent) {
    let (id, command) = command(n, accounts, shape);
    let version = i64::try_from(n / accounts + 1).unwrap_or(i64::MAX);
    (format!("account-{prefix}{id}"), version, event_for(command))
}
