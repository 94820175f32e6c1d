//! Kill -9 the process running a transfer saga, over and over, while
//! another process asks for transfers: every transfer still ends exactly
//! once, no account moves money twice for one transfer, and no money is
//! made or lost.
//!
//! The child is this test binary run again with `ANNALS_SAGA_CHILD` naming
//! the store's file. It runs the transfer saga of `transfers/mod.rs`
//! (debit; on the debit, credit; a refused credit refunded; a transfer
//! that waits for an approval refunded by a deadline) until it is killed.
//! The parent opens the accounts (two of them closed, some poor), then
//! appends a fixed workload of transfer requests and approvals, a share per
//! cycle, while it kills the child at random moments (while it starts,
//! catches up, reacts live, or fires deadlines) and starts it again. After
//! each kill it checks what must hold at any moment; at the end a last
//! child runs until settled, and every transfer must have ended once, with
//! exactly the moves its outcome means.
//!
//! Deadlines run on a `ManualClock`, not on the system's: a real deadline
//! short enough for this test would race the machine's load, and the last
//! child could not tell a deadline still to come from one that was lost.
//! Each child's clock starts where the parent says, further on each cycle
//! by more than two approval windows, so every deadline set in one cycle
//! is due when the next child starts (it fires during that child's
//! catch-up, when a kill may land); some children also move their clock
//! past the window at a random moment of their life. The last child moves
//! it once it is settled, and settles again. `ANNALS_TEST_SEED` repeats a
//! run's choices.

mod common;
mod transfers;

use std::error::Error;
use std::path::Path;
use std::time::Duration;

use annals_core::{CheckpointStore, EventStore, Position, Timestamp};
use annals_projections::saga::{ManualClock, Saga};
use annals_projections::Projections;
use annals_sqlite::SqliteStore;
use common::{
    expect_line, kill_at_random_moment, run_until_killed, say, seed, spawn_child, Dice, SEED,
};
use transfers::{Request, Step, Transfers, APPROVAL_WINDOW, NEEDS_APPROVAL};

const TEST: &str = "transfer_saga_acts_exactly_once_across_sigkill_restarts";
const CHILD: &str = "ANNALS_SAGA_CHILD";
const CHILD_BATCH: &str = "ANNALS_SAGA_BATCH";
const CHILD_CLOCK: &str = "ANNALS_SAGA_CLOCK";
const CHILD_ADVANCE: &str = "ANNALS_SAGA_ADVANCE";
const CHILD_FINISH: &str = "ANNALS_SAGA_FINISH";

const TRANSFERS: usize = 300;
const CYCLES: u64 = 24;
/// Where the children's clocks start, in microseconds since the epoch.
const CLOCK_START: i64 = 1_700_000_000_000_000;

/// The accounts: name, opening deposit, closed.
fn accounts() -> Vec<(String, u64, bool)> {
    [
        (20_000, false),
        (20_000, false),
        (5_000, false),
        (2_000, false),
        (300, false),
        (100, false),
        (500, true),
        (0, true),
    ]
    .iter()
    .enumerate()
    .map(|(n, (cents, closed))| (format!("a{n}"), *cents, *closed))
    .collect()
}

/// The workload: each outcome once to begin with, then random transfers
/// (one in eight large enough to wait for an approval, which half of them
/// get a few steps later), some from or to a closed account, some more
/// than their source holds.
fn workload(dice: &mut Dice) -> Vec<Step> {
    let request = |id: usize, from: u64, to: u64, cents| {
        Step::Request(Request {
            id: format!("t{id}"),
            from: format!("a{from}"),
            to: format!("a{to}"),
            cents,
        })
    };
    let mut steps = vec![
        request(0, 0, 1, 100),   // completed
        request(1, 0, 6, 100),   // compensated: a6 is closed
        request(2, 5, 1, 5_000), // rejected: a5 is short
        request(3, 0, 1, 1_500), // timed out: never approved
    ];
    let count = accounts().len() as u64;
    let mut approvals: Vec<(usize, String)> = Vec::new();
    for id in 4..TRANSFERS {
        let from = dice.roll(count);
        let to = (from + 1 + dice.roll(count - 1)) % count;
        let large = dice.roll(8) == 0;
        let cents = if large {
            NEEDS_APPROVAL + dice.roll(2_000)
        } else {
            1 + dice.roll(500)
        };
        steps.push(request(id, from, to, cents));
        if large && dice.roll(2) == 0 {
            let at = steps.len() + 1 + usize::try_from(dice.roll(15)).unwrap_or(0);
            approvals.push((at, format!("t{id}")));
        }
        approvals.sort();
        while approvals.first().is_some_and(|(at, _)| *at <= steps.len()) {
            steps.push(Step::Approve(approvals.remove(0).1));
        }
    }
    steps.extend(approvals.into_iter().map(|(_, id)| Step::Approve(id)));
    steps
}

/// Where child `cycle`'s clock starts: far enough on that every deadline
/// set before is due.
fn clock_start(cycle: u64) -> i64 {
    let step = i64::try_from(APPROVAL_WINDOW.as_micros() * 3).unwrap_or(i64::MAX);
    CLOCK_START + i64::try_from(cycle).unwrap_or(0) * step
}

#[test]
fn transfer_saga_acts_exactly_once_across_sigkill_restarts() -> Result<(), Box<dyn Error>> {
    if let Ok(path) = std::env::var(CHILD) {
        return child(Path::new(&path));
    }
    let seed = seed();
    println!("seed {seed} (set {SEED} to repeat)");
    let mut dice = Dice::new(seed);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("log.db");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let store = runtime.block_on(SqliteStore::open(&path))?;
    let accounts = accounts();
    runtime.block_on(transfers::open_accounts(&store, &accounts))?;
    let put_in: u64 = accounts.iter().map(|a| a.1).sum();
    let steps = workload(&mut dice);
    let requests = transfers::requests(&steps);
    let total = steps.len() as u64;
    for cycle in 0..CYCLES {
        let mut envs = child_env(&path, &mut dice, cycle);
        if dice.roll(3) > 0 {
            envs.push((CHILD_ADVANCE, dice.roll(200).to_string()));
        }
        let (mut child, lines) = spawn_child(TEST, &envs)?;
        let share = usize::try_from(total * cycle / CYCLES)?
            ..usize::try_from(total * (cycle + 1) / CYCLES)?;
        let appending = runtime.spawn(append_share(
            store.clone(),
            steps[share].to_vec(),
            dice.roll(u64::MAX),
        ));
        // While the child starts, catches up, reacts live or fires
        // deadlines.
        kill_at_random_moment(
            &mut child,
            &lines,
            &mut dice,
            150,
            &format!("cycle {cycle} (seed {seed})"),
        )?;
        runtime.block_on(appending)??;
        let log = runtime.block_on(annals_core::testkit::read_log(&store))?;
        if let Err(broken) = transfers::check_consistent(&log, &requests) {
            panic!("cycle {cycle}: {broken} (seed {seed})");
        }
        let tracking = runtime.block_on(tracking(&store))?;
        assert!(
            tracking <= Position(log.len() as u64),
            "cycle {cycle}: the saga's tracking position {tracking} is past the head (seed {seed})"
        );
        println!(
            "cycle {cycle}: log at {}, saga tracking at {tracking}",
            log.len()
        );
    }

    // The last start: it must settle, and say so.
    let mut envs = child_env(&path, &mut dice, CYCLES);
    envs.push((CHILD_FINISH, "1".to_owned()));
    let (mut child, lines) = spawn_child(TEST, &envs)?;
    let settled = expect_line(&lines, "SETTLED", Duration::from_secs(60))
        .map_err(|e| format!("the last child: {e} (seed {seed})"))?;
    assert!(
        child.wait()?.success(),
        "the last child failed (seed {seed})"
    );
    let reported: Vec<u64> = settled
        .split(' ')
        .map(str::parse)
        .collect::<Result<_, _>>()?;

    let log = runtime.block_on(annals_core::testkit::read_log(&store))?;
    annals_core::testkit::assert_no_gaps(&log, &format!("seed {seed}"));
    let head = runtime.block_on(store.head())?;
    let tally = transfers::check_settled(&log, &requests, i64::try_from(put_in)?)
        .unwrap_or_else(|broken| panic!("{broken} (seed {seed})"));
    println!("{} transfers: {}", requests.len(), tally.summary());
    let tracking = runtime.block_on(tracking(&store))?;
    assert_eq!(
        reported,
        [head.0, tracking.0, 0],
        "the last child's head, tracking position and skipped events (seed {seed})"
    );
    assert!(
        tracking <= head,
        "the saga's tracking position {tracking} is past the head {head} (seed {seed})"
    );
    for outcome in [
        transfers::Outcome::Completed,
        transfers::Outcome::Compensated,
        transfers::Outcome::Rejected,
        transfers::Outcome::TimedOut,
    ] {
        assert!(
            tally.count(outcome) > 0,
            "no transfer ended {outcome:?}: the workload missed a path (seed {seed})"
        );
    }
    runtime.block_on(store.close());
    Ok(())
}

/// The variables every child gets: its store, batch size and clock.
fn child_env(path: &Path, dice: &mut Dice, cycle: u64) -> Vec<(&'static str, String)> {
    vec![
        (CHILD, path.display().to_string()),
        (CHILD_BATCH, (1 + dice.roll(32)).to_string()),
        (CHILD_CLOCK, clock_start(cycle).to_string()),
    ]
}

/// The saga's tracking position, as stored.
async fn tracking(store: &SqliteStore) -> Result<Position, Box<dyn Error>> {
    let stored = store.load_checkpoint(<Transfers as Saga>::NAME).await?;
    Ok(stored.map_or(Position::START, |c| c.position))
}

/// Appends `steps`, one append each, with short pauses so that they spread
/// over the child's life.
async fn append_share(store: SqliteStore, steps: Vec<Step>, seed: u64) -> Result<(), String> {
    let mut dice = Dice::new(seed);
    for step in &steps {
        transfers::append_step(&store, step).await?;
        tokio::time::sleep(Duration::from_millis(dice.roll(6))).await;
    }
    Ok(())
}

/// The child: runs the saga until killed, or, told to finish, until
/// settled with every deadline due, then says where it is and stops.
fn child(path: &Path) -> Result<(), Box<dyn Error>> {
    let batch: usize = std::env::var(CHILD_BATCH)?.parse()?;
    let start: i64 = std::env::var(CHILD_CLOCK)?.parse()?;
    let advance: Option<u64> = std::env::var(CHILD_ADVANCE)
        .ok()
        .map(|ms| ms.parse())
        .transpose()?;
    let finish = std::env::var(CHILD_FINISH).is_ok();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = SqliteStore::open(path).await?;
        let clock = ManualClock::starting_at(Timestamp::from_unix_micros(start));
        let running = Projections::new(store.clone())
            .batch_size(batch)
            .clock(clock.clone())
            .saga(Transfers::default())
            .start()?;
        let deadlines = format!("{}.deadlines", <Transfers as Saga>::NAME);
        say("READY");
        let past_the_window = APPROVAL_WINDOW + Duration::from_secs(1);
        if !finish {
            let meanwhile = async {
                if let Some(ms) = advance {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    clock.advance(past_the_window);
                }
            };
            let names = [<Transfers as Saga>::NAME, deadlines.as_str()];
            run_until_killed(&running, &names, meanwhile).await;
            return Ok(());
        }
        let settle = async {
            running.wait_settled().await?;
            clock.advance(past_the_window);
            running.wait_settled().await
        };
        match tokio::time::timeout(Duration::from_secs(60), settle).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                say(&format!("FAILED {e}"));
                return Err(e.into());
            }
            Err(_) => {
                say("FAILED not settled within a minute");
                return Err("not settled".into());
            }
        }
        let head = store.head().await?;
        let tracking = tracking(&store).await?;
        let mut skipped = running
            .skipped_events(<Transfers as Saga>::NAME)
            .await?
            .len();
        skipped += running.skipped_events(&deadlines).await?.len();
        say(&format!("SETTLED {head} {tracking} {skipped}"));
        running.stop().await;
        store.close().await;
        Ok::<_, Box<dyn Error>>(())
    })
}
