//! The command workload: 1,000 accounts opened, then deposits round-robin,
//! each command through the repository (load or cache, decide, append).
//! Run one command at a time, and from 64 concurrent tasks.

use std::error::Error;
use std::time::{Duration, Instant};

use crate::append::{commands_in_sequence, raw_commands, same_shape, Sides, ANNALS_DB, ROUNDS};
use crate::model::{command, Refused};
use crate::report::{self, Report};
use crate::Settings;

/// Events written by default: the 1,000 openings, then deposits.
const DEFAULT_EVENTS: usize = 20_000;
/// Accounts at most.
const ACCOUNTS: usize = 1_000;
/// Concurrent tasks in `command-concurrent`.
const TASKS: usize = 64;

/// `command-seq`: the workload one command at a time. Baseline: read the
/// stream's version, then insert, in one `IMMEDIATE` transaction per
/// command.
pub(crate) async fn sequential(settings: Settings, report: &Report) -> Result<(), Box<dyn Error>> {
    commands_in_sequence(settings, report, "command_seq", DEFAULT_EVENTS).await
}

/// `command-concurrent`: the workload from 64 concurrent tasks, each with
/// its own accounts (account `a` belongs to task `a % 64`) and issuing its
/// commands in the workload's order. Baseline: the same commands one at a
/// time, each reading the stream's version and inserting in one `IMMEDIATE`
/// transaction (one event per transaction, as in `command-seq`).
pub(crate) async fn concurrent(settings: Settings, report: &Report) -> Result<(), Box<dyn Error>> {
    let commands = settings.size.unwrap_or(DEFAULT_EVENTS);
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
        // Which commands each task issues, worked out before the clock starts.
        let mut mine: Vec<Vec<usize>> = vec![Vec::new(); TASKS];
        for n in range.clone() {
            mine[(n % accounts) % TASKS].push(n);
        }
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(TASKS);
        for numbers in mine {
            let repository = repository.clone();
            tasks.push(tokio::spawn(async move {
                for n in numbers {
                    let (id, command) = command(n, accounts, shape);
                    repository.execute(&id, command, &shape.context()).await?;
                }
                Ok::<_, annals::CommandError<Refused>>(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        ours += start.elapsed();
        baseline += raw_commands(&mut raw, range, accounts, shape)?;
    }
    report.size("tasks", TASKS);
    report.size("commands", commands);
    report.size("accounts", accounts);
    same_shape(&path, &raw, settings, report)?;
    report.compare(
        "command_concurrent",
        report::per_second(commands, ours),
        report::per_second(commands, baseline),
    );
    Ok(())
}
