//! A process across aggregates: transfers driven by a saga, beside the
//! same money moved by one hand-built two-stream transaction per transfer.

mod completions;
mod transfers;

use std::error::Error;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use annals::projections::Projections;

use self::completions::Completions;
use self::transfers::{
    encode_raw, Ledger, LedgerCommand, LedgerEvent, Request, Transfer, Transfers,
};
use crate::raw::{self, Encoded, RawLog};
use crate::report::{self, Report};
use crate::shape::Shape;
use crate::Settings;

/// Transfers by default.
const DEFAULT_TRANSFERS: usize = 10_000;
/// Accounts, opened before the clock starts.
const ACCOUNTS: usize = 1_000;
/// What each account is opened with: more than any run moves out of it.
const DEPOSIT: u64 = 1_000_000_000;
/// Concurrent tasks requesting transfers, as in `command-concurrent`.
const TASKS: usize = 64;

/// `saga`: 10,000 transfers (`--size`) between 1,000 accounts, each
/// requested by one command from one of 64 tasks while a saga runs live:
/// on the request it debits the source, on the debit it credits the target
/// and ends (two reactions, each one append with its tracking position).
/// Prints the transfers per second from the first request until the last
/// credit was committed, how fast the requests themselves were
/// acknowledged, and the median and 99th percentile of the time from a
/// request's acknowledgement to its credit's commit.
///
/// Baseline: raw rusqlite moving the same money with no framework, one
/// `IMMEDIATE` transaction per transfer reading both accounts' versions and
/// inserting the debit and the credit, from the same 64 tasks sharing one
/// connection (SQLite has one writer; 64 connections would only take turns
/// through its busy handler's sleeps). `ratio_saga` is the saga's rate over
/// the baseline's: what running the transfer as a process costs, with its
/// request, two reactions and their instance's events, against one atomic
/// append. The runner's deadline index follows the instance streams too
/// (though this saga sets no deadline), reading the log after each
/// reaction's commit: its cost is in the saga's figure.
pub(crate) async fn transfers(settings: Settings, report: &Report) -> Result<(), Box<dyn Error>> {
    let transfers = settings.size.unwrap_or(DEFAULT_TRANSFERS);
    let shape = settings.shape;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("annals.db");
    let store = settings.open_store(&path).await?;
    let accounts = settings.repository::<Ledger, _>(store.clone())?;
    for account in 0..ACCOUNTS {
        let open = LedgerCommand::Open {
            owner: shape.owner(account),
            deposit: DEPOSIT,
        };
        accounts
            .execute(&account.to_string(), open, &shape.context())
            .await?;
    }
    let requests = settings.repository::<Transfer, _>(store.clone())?;
    let completions = Completions::new(store.clone());
    let running = Projections::new(completions.clone())
        .saga(Transfers)
        .start()?;
    // The saga has read the openings and waits for commits.
    running.wait_settled().await?;
    let plan = plan(transfers);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(TASKS);
    for numbers in plan.clone() {
        let requests = requests.clone();
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = Vec::with_capacity(numbers.len());
            for n in numbers {
                let request = request(n, shape);
                requests
                    .execute(&n.to_string(), request, &shape.context())
                    .await?;
                acknowledged.push((n, Instant::now()));
            }
            Ok::<_, annals::CommandError<crate::model::Refused>>(acknowledged)
        }));
    }
    let mut acknowledged: Vec<Option<Instant>> = vec![None; transfers];
    for task in tasks {
        for (n, at) in task.await?? {
            acknowledged[n] = Some(at);
        }
    }
    // Done when the saga has nothing left to do. Waiting for that watches
    // its status and reads the head a few times: nothing the run would
    // notice, where following the log for the credits would read it after
    // every commit. The times come from the completions, noted as each
    // credit's append was acknowledged (see `completions`).
    running.wait_settled().await?;
    running.stop().await;
    let Some(last_request) = acknowledged.iter().flatten().max().copied() else {
        return Err("no transfer was requested".into());
    };
    let mut latencies = Vec::with_capacity(transfers);
    let mut finished = Vec::with_capacity(transfers);
    for (n, completed) in completions.completed() {
        let requested = acknowledged
            .get_mut(n)
            .and_then(Option::take)
            .ok_or_else(|| format!("transfer {n} completed twice, or was never requested"))?;
        latencies.push(completed.saturating_duration_since(requested));
        finished.push(completed);
    }
    if latencies.len() != transfers {
        let missing = transfers - latencies.len();
        return Err(format!("{missing} transfers never completed").into());
    }
    latencies.sort_unstable();
    let Some(&last_credit) = finished.iter().max() else {
        return Err("no transfer completed".into());
    };
    let saga = report::per_second(transfers, last_credit - started);
    let requests = report::per_second(transfers, last_request - started);
    let (baseline, raw_sizes) = raw_transfers(&dir, &plan, settings).await?;
    report.size("tasks", TASKS);
    report.size("transfers", transfers);
    report.size("accounts", ACCOUNTS);
    let moved = ["Debited", "Credited"];
    let sizes = raw::event_sizes_of(&raw::open_read_only(&path)?, shape, &moved)?;
    if !sizes.matches(&raw_sizes) {
        return Err(
            format!("ours moved money in events of {sizes:?}, the baseline {raw_sizes:?}").into(),
        );
    }
    sizes.report(report);
    report.figure("requests", requests, "transfers/s");
    report.figure("saga", saga, "transfers/s");
    report.figure(
        "completion_p50",
        report::millis(report::percentile(&latencies, 50)),
        "ms",
    );
    report.figure(
        "completion_p99",
        report::millis(report::percentile(&latencies, 99)),
        "ms",
    );
    report.figure("baseline_saga", baseline, "transfers/s");
    report.ratio("saga", saga / baseline.max(1e-9));
    store.close().await;
    Ok(())
}

/// Which transfers each task requests (transfer `n` from task `n % 64`),
/// worked out before the clock starts.
fn plan(transfers: usize) -> Vec<Vec<usize>> {
    let mut mine: Vec<Vec<usize>> = vec![Vec::new(); TASKS];
    for n in 0..transfers {
        mine[n % TASKS].push(n);
    }
    mine
}

/// Transfer `n`: from account `n % 1,000` to one of the next few, a small
/// amount with a bank transfer's reference.
fn request(n: usize, shape: Shape) -> Request {
    let from = n % ACCOUNTS;
    let to = (from + 1 + (n / ACCOUNTS) % (ACCOUNTS - 1)) % ACCOUNTS;
    let number = u64::try_from(n).unwrap_or(u64::MAX);
    Request {
        from: from.to_string(),
        to: to.to_string(),
        amount: 1 + number % 100,
        reference: shape.reference(number),
    }
}

/// The baseline: the accounts opened in one transaction, then each
/// transfer's debit and credit in one transaction of their own, from the
/// 64 tasks of `plan` sharing one connection. Returns its transfers per
/// second and the sizes of its debits and credits.
async fn raw_transfers(
    dir: &tempfile::TempDir,
    plan: &[Vec<usize>],
    settings: Settings,
) -> Result<(f64, raw::EventSizes), Box<dyn Error>> {
    let shape = settings.shape;
    let mut raw = RawLog::open(&dir.path().join("raw.db"), settings.durability, shape)?;
    let openings: Vec<(String, Encoded)> = (0..ACCOUNTS)
        .map(|account| {
            let opened = LedgerEvent::Opened {
                owner: shape.owner(account),
                deposit: DEPOSIT,
            };
            (format!("account-{account}"), encode_raw(&opened))
        })
        .collect();
    raw.append_atomically(&openings)?;
    let raw = Arc::new(Mutex::new(raw));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(plan.len());
    for numbers in plan.iter().cloned() {
        let raw = Arc::clone(&raw);
        tasks.push(tokio::task::spawn_blocking(move || {
            for n in numbers {
                let Request {
                    from,
                    to,
                    amount,
                    reference,
                } = request(n, shape);
                let transfer = n.to_string();
                let debit = LedgerEvent::Debited {
                    amount,
                    transfer: transfer.clone(),
                    reference: reference.clone(),
                };
                let credit = LedgerEvent::Credited {
                    amount,
                    transfer,
                    reference,
                };
                let events = [
                    (format!("account-{from}"), encode_raw(&debit)),
                    (format!("account-{to}"), encode_raw(&credit)),
                ];
                raw.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .append_atomically(&events)?;
            }
            Ok::<_, rusqlite::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let took = started.elapsed();
    let transfers = plan.iter().map(Vec::len).sum();
    let sizes = raw
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .event_sizes_of(&["Debited", "Credited"])?;
    Ok((report::per_second(transfers, took), sizes))
}
