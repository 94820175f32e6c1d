//! Appending commands: one at a time, and from 64 tasks at once.

use std::collections::HashMap;
use std::error::Error;
use std::time::{Duration, Instant};

use annals::{CommandContext, Repository};

use crate::model::{command, Account, BankCommand, BankEvent};
use crate::raw;
use crate::report;
use crate::Settings;

/// Ours and the baseline run in alternating rounds, so that a slow moment of
/// the machine hits both alike.
const ROUNDS: usize = 4;

fn event_for(command: BankCommand) -> BankEvent {
    match command {
        BankCommand::Open { owner } => BankEvent::Opened { owner },
        BankCommand::Deposit { amount } => BankEvent::Deposited {
            amount,
            reference: format!("deposit of {amount}"),
        },
    }
}

/// `append-seq`: one command at a time over 1,000 accounts: load the
/// aggregate, decide, append one event with the loaded version. Baseline:
/// read the version and insert, in one `IMMEDIATE` transaction per event.
pub(crate) async fn sequential(settings: Settings) -> Result<(), Box<dyn Error>> {
    let commands = settings.size.unwrap_or(4_000);
    let accounts = commands.min(1_000);
    let dir = tempfile::tempdir()?;
    let store = settings.open_store(&dir.path().join("annals.db")).await?;
    let repository = Repository::<Account, _>::new(store)?;
    let ctx = CommandContext::new();
    let mut raw = raw::open(&dir.path().join("raw.db"), settings.durability)?;
    let (mut ours, mut baseline) = (Duration::ZERO, Duration::ZERO);
    let per_round = commands.div_ceil(ROUNDS);
    for round in 0..ROUNDS {
        let range = round * per_round..((round + 1) * per_round).min(commands);
        let start = Instant::now();
        for n in range.clone() {
            let (id, command) = command(n, accounts);
            repository.execute(&id, command, &ctx).await?;
        }
        ours += start.elapsed();
        let start = Instant::now();
        for n in range {
            let (id, command) = command(n, accounts);
            raw::read_version_then_insert(&mut raw, &format!("account-{id}"), &event_for(command))?;
        }
        baseline += start.elapsed();
    }
    println!("commands: {commands}");
    println!("accounts: {accounts}");
    report::compare(
        "append_seq",
        report::per_second(commands, ours),
        report::per_second(commands, baseline),
    );
    Ok(())
}

/// `append-concurrent`: 64 tasks issue commands at once, each to its own
/// accounts (load, decide, append). Baseline: one connection inserting the
/// same events one transaction each.
pub(crate) async fn concurrent(settings: Settings) -> Result<(), Box<dyn Error>> {
    const TASKS: usize = 64;
    const ACCOUNTS_PER_TASK: usize = 10;
    let per_task = settings
        .size
        .unwrap_or(12_800)
        .div_ceil(TASKS)
        .max(ACCOUNTS_PER_TASK);
    let total = per_task * TASKS;
    let dir = tempfile::tempdir()?;
    let store = settings.open_store(&dir.path().join("annals.db")).await?;
    let repository = Repository::<Account, _>::new(store)?;
    let mut raw = raw::open(&dir.path().join("raw.db"), settings.durability)?;
    let mut versions: HashMap<String, i64> = HashMap::new();
    let (mut ours, mut baseline) = (Duration::ZERO, Duration::ZERO);
    let per_round = per_task.div_ceil(ROUNDS);
    for round in 0..ROUNDS {
        let range = round * per_round..((round + 1) * per_round).min(per_task);
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(TASKS);
        for task in 0..TASKS {
            let (repository, range) = (repository.clone(), range.clone());
            tasks.push(tokio::spawn(async move {
                let ctx = CommandContext::new();
                for n in range {
                    let (id, command) = command(n, ACCOUNTS_PER_TASK);
                    repository
                        .execute(&format!("{task}.{id}"), command, &ctx)
                        .await?;
                }
                Ok::<_, annals::CommandError<crate::model::Refused>>(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        ours += start.elapsed();
        let start = Instant::now();
        for task in 0..TASKS {
            for n in range.clone() {
                let (id, command) = command(n, ACCOUNTS_PER_TASK);
                let stream = format!("account-{task}.{id}");
                let version = versions.entry(stream.clone()).or_default();
                *version += 1;
                raw::insert_at(&mut raw, &stream, *version, &event_for(command))?;
            }
        }
        baseline += start.elapsed();
    }
    println!("tasks: {TASKS}");
    println!("commands: {total}");
    report::compare(
        "append_concurrent",
        report::per_second(total, ours),
        report::per_second(total, baseline),
    );
    Ok(())
}
