//! Properties of the transfer saga of `transfers/mod.rs`, on random
//! workloads:
//!
//! - whatever the interleaving of requests, approvals and deposits (made
//!   outside the saga, racing the reactions of its runner's tasks), and
//!   wherever its runners crash (a clean stop, or the runtime shut down
//!   under them, dropping whatever reaction was in flight), every transfer
//!   ends once, in one of its four outcomes, with exactly the moves that
//!   outcome means, and no money is made or lost;
//! - a reaction whose source account changes underneath it (another
//!   writer deposits or withdraws between its load and its commit) ends
//!   as if it had run alone: after the change if it decided on the
//!   account (its commit meets a conflict and it runs again), before it
//!   if it only read it.
//!
//! A crashed runner is gone before the next one starts: two runners of
//! one saga at once are another matter. The cases come from
//! `ANNALS_TEST_SEED` when set, so a failing run repeats its cases (not
//! the threads' timing within them).

#[allow(dead_code)] // Only the seed is used here.
mod common;
mod transfers;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use annals_core::{CheckpointStore, EventStore, InMemoryStore, Position, Repository, Timestamp};
use annals_projections::saga::{ManualClock, Saga};
use annals_projections::{Projections, Running};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use tokio::runtime::Runtime;
use transfers::{
    Account, Interference, Outcome, Request, Step, Transfers, APPROVAL_WINDOW, NEEDS_APPROVAL,
};

const ACCOUNTS: usize = 4;

/// The cases' seed, printed so that a failure can be repeated.
fn config(cases: u32) -> ProptestConfig {
    let seed = common::seed();
    println!("seed {seed} (set {} to repeat the cases)", common::SEED);
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        ..ProptestConfig::default()
    }
}

fn runtime() -> Result<Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

fn name(account: usize) -> String {
    format!("a{account}")
}

/// How a runner's life ends.
#[derive(Debug, Clone, Copy)]
enum Crash {
    /// `Running::stop`: the batch in flight is dropped, the task waited for.
    Stop,
    /// The runtime is shut down under the runner: every task is dropped at
    /// its next await, mid-reaction or mid-deadline.
    Abort,
}

/// One runner's life.
#[derive(Debug, Clone)]
struct Life {
    /// Steps of the workload appended during it.
    steps: usize,
    /// Deposits made during it, alongside the steps.
    deposits: usize,
    /// It crashes once this many more reactions have run (or once it has
    /// settled).
    reactions: u64,
    /// Whether its clock moves past the approval window.
    advance: bool,
    crash: Crash,
}

#[derive(Debug, Clone)]
struct Case {
    /// Opening cents and closed, per account; the first is open.
    accounts: Vec<(u64, bool)>,
    /// Requests and approvals, in the order they are appended.
    steps: Vec<Step>,
    /// Deposits, into open accounts.
    deposits: Vec<Step>,
    lives: Vec<Life>,
    batch: usize,
}

impl Case {
    fn put_in(&self) -> i64 {
        let opened: u64 = self.accounts.iter().map(|a| a.0).sum();
        let deposited: u64 = self
            .deposits
            .iter()
            .map(|d| match d {
                Step::Deposit(_, cents) => *cents,
                _ => 0,
            })
            .sum();
        i64::try_from(opened + deposited).unwrap_or(i64::MAX)
    }
}

/// Transfers between `ACCOUNTS` accounts, mostly small, one in five large
/// enough to wait for an approval; an approval for an earlier large one
/// now and then.
fn case() -> impl Strategy<Value = Case> {
    let accounts = prop::collection::vec((0u64..2_000, prop::bool::weighted(0.25)), ACCOUNTS);
    let steps = prop::collection::vec(
        (
            0..ACCOUNTS,
            1..ACCOUNTS,
            prop::bool::weighted(0.2),
            1u64..400,
            0..8u8,
        ),
        1..40,
    );
    let deposits = prop::collection::vec((0..ACCOUNTS, 1u64..500), 0..12);
    let lives = prop::collection::vec(
        (
            0usize..15,
            0usize..5,
            0u64..12,
            prop::bool::weighted(0.3),
            prop::bool::ANY,
        ),
        1..5,
    );
    (accounts, steps, deposits, lives, 1usize..20).prop_map(
        |(mut accounts, raw, deposits, lives, batch)| {
            accounts[0].1 = false;
            let mut steps = Vec::new();
            let mut large = Vec::new();
            for (n, (from, offset, big, cents, approve)) in raw.into_iter().enumerate() {
                let id = format!("t{n}");
                let cents = if big { NEEDS_APPROVAL + cents } else { cents };
                if big {
                    large.push(id.clone());
                }
                steps.push(Step::Request(Request {
                    id,
                    from: name(from),
                    to: name((from + offset) % ACCOUNTS),
                    cents,
                }));
                if approve == 0 && !large.is_empty() {
                    steps.push(Step::Approve(large[n % large.len()].clone()));
                }
            }
            let open: Vec<usize> = (0..ACCOUNTS).filter(|a| !accounts[*a].1).collect();
            let deposits = deposits
                .into_iter()
                .map(|(to, cents)| Step::Deposit(name(open[to % open.len()]), cents))
                .collect();
            let lives = lives
                .into_iter()
                .map(|(steps, deposits, reactions, advance, stop)| Life {
                    steps,
                    deposits,
                    reactions,
                    advance,
                    crash: if stop { Crash::Stop } else { Crash::Abort },
                })
                .collect();
            Case {
                accounts,
                steps,
                deposits,
                lives,
                batch,
            }
        },
    )
}

/// A runner of the saga on `store`.
fn start(
    store: &InMemoryStore,
    clock: &ManualClock,
    batch: usize,
    reactions: &Arc<AtomicU64>,
) -> Result<Running, String> {
    let saga = Transfers {
        reactions: reactions.clone(),
        interference: None,
    };
    Projections::new(store.clone())
        .batch_size(batch)
        .clock(clock.clone())
        .saga(saga)
        .start()
        .map_err(|e| e.to_string())
}

/// Appends `steps` one by one, letting others run between them, and
/// counts each in `appended` once it is in the log.
async fn append_each(
    store: &InMemoryStore,
    steps: &[Step],
    appended: &mut usize,
) -> Result<(), String> {
    for step in steps {
        // The in-memory store appends within one poll: a crash, which
        // drops this future at an await, comes before or after the count.
        transfers::append_step(store, step).await?;
        *appended += 1;
        tokio::task::yield_now().await;
    }
    Ok(())
}

/// Waits until `reactions` reaches `target`.
async fn reactions_reach(reactions: &AtomicU64, target: u64) {
    while reactions.load(Ordering::SeqCst) < target {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// Settles `running`, moves the clock past every deadline set, settles
/// again.
async fn settle(running: &Running, clock: &ManualClock) -> Result<(), String> {
    let settled = async {
        running.wait_settled().await?;
        clock.advance(APPROVAL_WINDOW + Duration::from_secs(1));
        running.wait_settled().await
    };
    match tokio::time::timeout(Duration::from_secs(30), settled).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err("not settled within 30 s".to_owned()),
    }
}

fn run_case(case: &Case) -> Result<(), String> {
    let store = InMemoryStore::new();
    let clock = ManualClock::starting_at(Timestamp::from_unix_micros(0));
    let reactions = Arc::new(AtomicU64::new(0));
    let accounts: Vec<(String, u64, bool)> = case
        .accounts
        .iter()
        .enumerate()
        .map(|(n, (cents, closed))| (name(n), *cents, *closed))
        .collect();
    runtime()?.block_on(transfers::open_accounts(&store, &accounts))?;
    // How many steps and deposits are in the log: a crash may come before
    // a life's share is, and the rest waits for the next life.
    let (mut stepped, mut deposited) = (0, 0);
    for life in &case.lives {
        let runtime = runtime()?;
        let running = runtime.block_on(async { start(&store, &clock, case.batch, &reactions) })?;
        let steps = &case.steps[stepped..(stepped + life.steps).min(case.steps.len())];
        let deposits =
            &case.deposits[deposited..(deposited + life.deposits).min(case.deposits.len())];
        runtime.block_on(async {
            let target = reactions.load(Ordering::SeqCst) + life.reactions;
            let work = async {
                let appending = append_each(&store, steps, &mut stepped);
                let depositing = append_each(&store, deposits, &mut deposited);
                let (appended, deposited) = tokio::join!(appending, depositing);
                appended.and(deposited)?;
                if life.advance {
                    clock.advance(APPROVAL_WINDOW + Duration::from_secs(1));
                }
                running.wait_settled().await.map_err(|e| e.to_string())
            };
            tokio::select! {
                done = work => done,
                () = reactions_reach(&reactions, target) => Ok(()),
            }
        })?;
        match life.crash {
            Crash::Stop => runtime.block_on(running.stop()),
            Crash::Abort => {
                runtime.shutdown_timeout(Duration::from_secs(5));
                drop(running);
            }
        }
    }
    // The last runner gets the rest of the workload, and settles.
    let runtime = runtime()?;
    runtime.block_on(async {
        let running = start(&store, &clock, case.batch, &reactions)?;
        for step in case.steps[stepped..]
            .iter()
            .chain(&case.deposits[deposited..])
        {
            transfers::append_step(&store, step).await?;
        }
        settle(&running, &clock).await?;
        running.stop().await;
        let log = annals_core::testkit::read_log(&store)
            .await
            .map_err(|e| e.to_string())?;
        transfers::check_settled(&log, &transfers::requests(&case.steps), case.put_in())?;
        let head = store.head().await.map_err(|e| e.to_string())?;
        let tracking = store
            .load_checkpoint(<Transfers as Saga>::NAME)
            .await
            .map_err(|e| e.to_string())?
            .map_or(Position::START, |c| c.position);
        if tracking > head {
            return Err(format!("tracking position {tracking} past the head {head}"));
        }
        Ok(())
    })
}

/// How a single transfer from `a0` to `a1` ended.
#[derive(Debug, Clone, PartialEq)]
struct Ending {
    outcome: Outcome,
    balances: (u64, u64),
}

/// Runs one transfer of `cents` from `a0` (`balance`) to `a1` (closed or
/// not) to its end, with `change` to `a0` appended before the request,
/// after the transfer ended, or (`interfere`) between the request's
/// reaction's load of `a0` and its commit. Returns how it ended and how
/// many reactions ran.
fn one_transfer(
    balance: u64,
    closed: bool,
    cents: u64,
    change: &Step,
    when: When,
) -> Result<(Ending, u64), String> {
    runtime()?.block_on(async {
        let store = InMemoryStore::new();
        let clock = ManualClock::starting_at(Timestamp::from_unix_micros(0));
        let accounts = [(name(0), balance, false), (name(1), 0, closed)];
        transfers::open_accounts(&store, &accounts).await?;
        if when == When::Before {
            transfers::append_step(&store, change).await?;
        }
        let saga = Transfers {
            reactions: Arc::new(AtomicU64::new(0)),
            interference: (when == When::Underneath).then(|| Interference {
                store: Arc::new(store.clone()),
                armed: Arc::new(AtomicBool::new(true)),
                change: change.clone(),
            }),
        };
        let reactions = saga.reactions.clone();
        let running = Projections::new(store.clone())
            .clock(clock.clone())
            .saga(saga)
            .start()
            .map_err(|e| e.to_string())?;
        let request = Request {
            id: "t0".into(),
            from: name(0),
            to: name(1),
            cents,
        };
        transfers::append_step(&store, &Step::Request(request.clone())).await?;
        settle(&running, &clock).await?;
        running.stop().await;
        if when == When::After {
            transfers::append_step(&store, change).await?;
        }
        let log = annals_core::testkit::read_log(&store)
            .await
            .map_err(|e| e.to_string())?;
        let put_in = i64::try_from(balance).map_err(|e| e.to_string())?
            + match change {
                Step::Deposit(_, cents) => i64::try_from(*cents).map_err(|e| e.to_string())?,
                Step::Withdraw(_, cents) => -i64::try_from(*cents).map_err(|e| e.to_string())?,
                _ => 0,
            };
        let tally = transfers::check_settled(&log, &[request], put_in)?;
        let accounts = Repository::<Account, _>::new(store.clone()).map_err(|e| e.to_string())?;
        let mut cents = [0; 2];
        for (n, held) in cents.iter_mut().enumerate() {
            *held = accounts
                .load(&name(n))
                .await
                .map_err(|e| e.to_string())?
                .state
                .cents;
        }
        let ending = Ending {
            outcome: tally.outcomes["t0"],
            balances: (cents[0], cents[1]),
        };
        Ok((ending, reactions.load(Ordering::SeqCst)))
    })
}

/// When the other writer's change to the source lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    Before,
    Underneath,
    After,
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn every_transfer_ends_once_and_money_is_conserved_whatever_the_crashes(case in case()) {
        let result = run_case(&case);
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn reaction_whose_source_changes_underneath_ends_as_if_it_ran_alone(
        balance in 0u64..2_000,
        closed in prop::bool::ANY,
        cents in prop_oneof![1u64..1_000, NEEDS_APPROVAL..NEEDS_APPROVAL + 500],
        withdraw in prop::bool::ANY,
        amount in 1u64..1_000,
    ) {
        // A withdrawal never takes more than the account holds.
        let change = if withdraw && balance > 0 {
            Step::Withdraw(name(0), amount.min(balance))
        } else {
            Step::Deposit(name(0), amount)
        };
        let run = |when| one_transfer(balance, closed, cents, &change, when);
        let (underneath, ran) = run(When::Underneath).map_err(TestCaseError::fail)?;
        // A debit decided on the account meets the change at its commit,
        // and the reaction runs again on the changed account: as if alone
        // after the change. A refused debit decides nothing on the account,
        // so nothing conflicts: as if alone before the change.
        let (alone, reruns) = if cents <= balance {
            (When::Before, 1)
        } else {
            (When::After, 0)
        };
        let (alone, alone_ran) = run(alone).map_err(TestCaseError::fail)?;
        prop_assert_eq!(&underneath, &alone);
        prop_assert_eq!(ran, alone_ran + reruns, "reactions run, against {} alone", alone_ran);
    }
}
