//! A live projection following commands as they are acknowledged: how long
//! after its acknowledgement each command's event is in the read model.

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals::projections::{Running, SqliteProjection, WaitError};
use annals::Position;

use super::{start, Balances};
use crate::model::{command, Account, BankEvent, Refused};
use crate::report::{self, Report};
use crate::Settings;

/// Commands by default, one event each.
const DEFAULT_COMMANDS: usize = 20_000;
/// Concurrent tasks issuing commands.
const TASKS: usize = 64;
/// Accounts at most, as in `command-concurrent`.
const ACCOUNTS: usize = 1_000;

/// When the projection had handled the log through a position.
type Progress = Vec<(Instant, Position)>;

/// `live-lag`: the `command-concurrent` workload, 20,000 commands
/// (`--size`) of one event each from 64 tasks through the repository, while
/// the balances projection follows live, exactly once into its SQLite
/// model. For each command, its lag is the time from its acknowledgement
/// (the repository returning) to the first moment the projection's
/// checkpoint covered its position (the batch holding it committed in the
/// model); a command the model held before its task saw the
/// acknowledgement has no lag. Prints the median and 99th percentile lag,
/// the commands per second, and the events per second the projection
/// sustained: the events over the time from the first command until the
/// projection had handled the last. The baseline for keeping up is the
/// append rate of the same run: `ratio_keeps_up` is the projection's rate
/// over it (1 when the projection keeps up).
pub(crate) async fn lag(settings: Settings, report: &Report) -> Result<(), Box<dyn Error>> {
    let commands = settings.size.unwrap_or(DEFAULT_COMMANDS);
    let accounts = commands.min(ACCOUNTS);
    let shape = settings.shape;
    let dir = tempfile::tempdir()?;
    let store = settings.open_store(&dir.path().join("annals.db")).await?;
    let repository = settings.repository::<Account, _>(store.clone())?;
    let running = Arc::new(start::<BankEvent, _>(
        &store,
        &dir.path().join("balances.db"),
    )?);
    // The model exists and the projection waits for commits.
    running.wait_idle().await?;
    // Which commands each task issues, worked out before the clock starts.
    let mut mine: Vec<Vec<usize>> = vec![Vec::new(); TASKS];
    for n in 0..commands {
        mine[(n % accounts) % TASKS].push(n);
    }
    // The log holds only these commands' events, at positions 1 to
    // `commands` (the embedded store's positions have no gaps).
    let last = Position(u64::try_from(commands)?);
    let progress = tokio::spawn(follow(Arc::clone(&running), last));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(TASKS);
    for numbers in mine {
        let repository = repository.clone();
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = Vec::with_capacity(numbers.len());
            for n in numbers {
                let (id, command) = command(n, accounts, shape);
                let done = repository.execute(&id, command, &shape.context()).await?;
                acknowledged.push((done.position(), Instant::now()));
            }
            Ok::<_, annals::CommandError<Refused>>(acknowledged)
        }));
    }
    let mut acknowledged = Vec::with_capacity(commands);
    for task in tasks {
        acknowledged.extend(task.await??);
    }
    let progress = progress.await??;
    let (Some(appended), Some(handled)) = (
        acknowledged.iter().map(|(_, at)| *at).max(),
        progress.last().map(|(at, _)| *at),
    ) else {
        return Err("no command was run".into());
    };
    let mut lags = acknowledged
        .iter()
        .map(|&(position, acknowledged)| {
            // The first time the checkpoint covered `position`.
            let covered = progress.partition_point(|(_, through)| *through < position);
            progress
                .get(covered)
                .map(|(at, _)| at.saturating_duration_since(acknowledged))
                .ok_or_else(|| format!("the projection never handled position {position}"))
        })
        .collect::<Result<Vec<Duration>, _>>()?;
    lags.sort_unstable();
    let percentile = |per_cent: usize| report::percentile(&lags, per_cent);
    let appends = report::per_second(commands, appended - started);
    let projected = report::per_second(commands, handled - started);
    report.size("tasks", TASKS);
    report.size("commands", commands);
    report.size("accounts", accounts);
    report.figure("lag_p50", report::millis(percentile(50)), "ms");
    report.figure("lag_p99", report::millis(percentile(99)), "ms");
    report.figure("lag_max", report::millis(percentile(100)), "ms");
    report.figure("appends", appends, "events/s");
    report.figure("projection", projected, "events/s");
    report.ratio("keeps_up", projected / appends.max(1e-9));
    if let Ok(running) = Arc::try_unwrap(running) {
        running.stop().await;
    }
    Ok(())
}

/// Records each move of the projection's checkpoint, with the moment it
/// was seen, until it reaches `last`.
///
/// The projection publishes its checkpoint on a watch channel once a
/// batch has committed in the model; waiting on that watch wakes this task
/// once per batch, costs the projection nothing (no query of its model,
/// which would contend with its writes, and no poll, which would add its
/// interval to every lag), and sees every command of a batch at the
/// moment the batch became visible. A wait per command in the appending
/// task would instead hold that task back from its next command, slowing
/// the appends the projection has to keep up with.
async fn follow(running: Arc<Running>, last: Position) -> Result<Progress, WaitError> {
    let name = Balances::<BankEvent>::NAME;
    let mut progress = Vec::new();
    let mut through = Position::START;
    while through < last {
        running.wait_for(name, Position(through.0 + 1)).await?;
        // The checkpoint first, then the clock: a batch that commits in
        // between is counted late rather than early.
        through = running
            .status()
            .iter()
            .find(|s| s.name == name)
            .map_or(through, |s| s.checkpoint);
        progress.push((Instant::now(), through));
    }
    Ok(progress)
}
