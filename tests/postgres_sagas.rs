//! The transfer saga on a PostgreSQL log. Two runners on two store
//! instances of one schema (as in two processes) race on every event, and
//! each reaction still happens once; a refused credit is compensated, a
//! refused debit rejects, a missed approval times out; the tracking
//! position is kept in the database; and a reaction whose account another
//! store instance changed meanwhile is decided again.

#[path = "../projections/tests/transfers/mod.rs"]
mod transfers;

mod on_postgres;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use annals::postgres::PostgresStore;
use annals::projections::saga::ManualClock;
use annals::projections::{Projections, Running};
use annals::{CheckpointStore, EventStore, Timestamp};
use annals_core::testkit::read_log;
use on_postgres::{on_postgres, TestResult};
use transfers::{Interference, Outcome, Request, Step, Transfers, APPROVAL_WINDOW};

/// A bound for settling a few dozen transfers on a local server.
const PATIENCE: Duration = Duration::from_secs(20);

fn transfer(id: &str, from: &str, to: &str, cents: u64) -> Step {
    Step::Request(Request {
        id: id.into(),
        from: from.into(),
        to: to.into(),
        cents,
    })
}

fn runner(store: &PostgresStore, batch: usize, clock: &ManualClock, saga: Transfers) -> Running {
    Projections::new(store.clone())
        .batch_size(batch)
        .clock(clock.clone())
        .saga(saga)
        .start()
        .expect("the saga starts")
}

/// Waits until every runner is settled and the log stopped moving: one
/// runner's reactions are events the other reads.
async fn settle(
    runners: &[&Running],
    store: &PostgresStore,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    loop {
        let before = store.head().await?;
        for running in runners {
            running.wait_settled_within(PATIENCE).await?;
        }
        if store.head().await? == before {
            return Ok(());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_on_two_store_instances_react_to_each_transfer_exactly_once_with_compensation(
) -> TestResult {
    on_postgres(
        "two_runners_on_two_store_instances_react_to_each_transfer_exactly_once_with_compensation",
        |pg| async move {
            let here = pg.store().await?;
            let there = pg.same_schema(&here).await?;
            let accounts = [
                ("rich".to_owned(), 100_000, false),
                ("poor".to_owned(), 50, false),
                ("shut".to_owned(), 0, true),
                ("dest".to_owned(), 0, false),
            ];
            transfers::open_accounts(&here, &accounts).await?;
            let clock =
                ManualClock::starting_at(Timestamp::from_unix_micros(1_700_000_000_000_000));
            let reactions = [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))];
            let saga = |n: usize| Transfers {
                reactions: reactions[n].clone(),
                interference: None,
            };
            // Batches of different sizes, so that one runner's batches overlap
            // the other's commits in every way.
            let first = runner(&here, 3, &clock, saga(0));
            let second = runner(&there, 7, &clock, saga(1));

            let mut steps = Vec::new();
            for n in 0..24 {
                steps.push(transfer(&format!("ok{n}"), "rich", "dest", 10));
            }
            for n in 0..4 {
                steps.push(transfer(&format!("closed{n}"), "rich", "shut", 20));
                steps.push(transfer(&format!("short{n}"), "poor", "dest", 100));
            }
            steps.push(transfer("approved", "rich", "dest", 2_000));
            steps.push(Step::Approve("approved".into()));
            steps.push(transfer("forgotten", "rich", "dest", 3_000));
            // Both processes take requests.
            for (n, step) in steps.iter().enumerate() {
                let store = if n % 2 == 0 { &here } else { &there };
                transfers::append_step(store, step).await?;
            }
            settle(&[&first, &second], &here).await?;
            // The forgotten transfer's approval window passes.
            clock.advance(APPROVAL_WINDOW + Duration::from_secs(1));
            settle(&[&first, &second], &here).await?;
            first.stop().await;
            second.stop().await;

            let log = read_log(&here).await?;
            let requests = transfers::requests(&steps);
            let tally = transfers::check_settled(&log, &requests, 100_050)?;
            assert_eq!(
                [
                    Outcome::Completed,
                    Outcome::Compensated,
                    Outcome::Rejected,
                    Outcome::TimedOut
                ]
                .map(|o| tally.count(o)),
                [25, 4, 4, 1],
                "{}",
                tally.summary()
            );
            let count = |kind: &str| log.iter().filter(|e| e.event_type.as_str() == kind).count();
            assert_eq!(
                (
                    count("Debited"),
                    count("Credited"),
                    count("Refunded"),
                    count("SagaDeadlineFired")
                ),
                (30, 25, 5, 1),
                "each command decided once, by one of the runners"
            );
            assert!(
                reactions.iter().all(|r| r.load(Ordering::SeqCst) > 0),
                "both runners reacted"
            );

            // The tracking position is in the database, at the head...
            let head = here.head().await?;
            let tracked = there.load_checkpoint("transfers").await?.ok_or("tracked")?;
            assert_eq!(tracked.position, head);
            // ...so a runner in a third process has nothing left to do.
            let third = pg.same_schema(&here).await?;
            let late = runner(&third, 50, &clock, saga(0));
            late.wait_settled_within(PATIENCE).await?;
            late.stop().await;
            assert_eq!(third.head().await?, head, "nothing reacted twice");
            Ok(())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reaction_whose_account_another_store_changed_is_decided_again_on_fresh_state(
) -> TestResult {
    on_postgres(
        "a_reaction_whose_account_another_store_changed_is_decided_again_on_fresh_state",
        |pg| async move {
            let store = pg.store().await?;
            let other = pg.same_schema(&store).await?;
            let accounts = [("a0".to_owned(), 100, false), ("a1".to_owned(), 0, false)];
            transfers::open_accounts(&store, &accounts).await?;
            let reactions = Arc::new(AtomicU64::new(0));
            // While the reaction to the request decides, another process takes
            // 50 of the 100: the debit of 80 it decided no longer fits.
            let saga = Transfers {
                reactions: reactions.clone(),
                interference: Some(Interference {
                    store: Arc::new(other.clone()),
                    armed: Arc::new(AtomicBool::new(true)),
                    change: Step::Withdraw("a0".into(), 50),
                }),
            };
            let steps = [transfer("t1", "a0", "a1", 80)];
            let running = runner(&store, 10, &ManualClock::default(), saga);
            transfers::append_step(&store, &steps[0]).await?;
            settle(&[&running], &store).await?;
            running.stop().await;

            let log = read_log(&store).await?;
            let tally = transfers::check_settled(&log, &transfers::requests(&steps), 50)?;
            assert_eq!(
                tally.outcomes["t1"],
                Outcome::Rejected,
                "{}",
                tally.summary()
            );
            assert!(
                reactions.load(Ordering::SeqCst) >= 2,
                "the reaction ran again after the conflict"
            );
            Ok(())
        },
    )
    .await
}
