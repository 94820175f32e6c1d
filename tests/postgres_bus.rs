//! The in-process event bus over a PostgreSQL log: commits made through
//! another store instance on the schema (as another process makes them)
//! reach the subscribers their patterns select, in log order, woken by
//! notifications alone.

mod on_postgres;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals::postgres::PostgresStore;
use annals::projections::bus::EventBus;
use annals::{EventStoreExt, ExpectedVersion, NewEvent, Payload, Position, StreamId};
use annals_core::testkit::read_log;
use on_postgres::{on_postgres, TestResult};

/// Appends one event of type `event_type` to `stream`; returns its position.
async fn emit(
    store: &PostgresStore,
    stream: &str,
    event_type: &str,
) -> Result<Position, Box<dyn std::error::Error + Send + Sync>> {
    let event = NewEvent::new(event_type, 1, Payload::from_json("{}")?)?;
    let outcome = store
        .append_to_stream(&StreamId::new(stream)?, ExpectedVersion::Any, vec![event])
        .await?;
    Ok(outcome.last_position().ok_or("an append records events")?)
}

type Seen = Arc<Mutex<Vec<Position>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_hands_another_stores_commits_to_the_subscribers_their_patterns_select(
) -> TestResult {
    on_postgres(
        "the_bus_hands_another_stores_commits_to_the_subscribers_their_patterns_select",
        |pg| async move {
            let store = pg.notified_store().await?;
            let saved = emit(&store, "account-0", "Opened").await?;
            emit(&store, "account-0", "Deposited").await?;
            // No poll: only notifications wake the bus.
            let bus = EventBus::with_poll_interval(store.clone(), Duration::from_secs(3600));
            let seen: [Seen; 3] = Default::default();
            let mut subscriptions = Vec::new();
            for (pattern, seen) in ["*.Opened", "account.*", "*"].into_iter().zip(&seen) {
                let seen = seen.clone();
                subscriptions.push(bus.subscribe(pattern, move |event| {
                    seen.lock().expect("not poisoned").push(event.position);
                    std::future::ready(Ok(()))
                })?);
            }
            let running = bus.start_at(saved)?;
            let other = pg.same_schema(&store).await?;
            for n in 1..=20 {
                emit(&other, &format!("account-{n}"), "Opened").await?;
                emit(&other, &format!("parcel-{n}"), "Opened").await?;
                emit(&other, &format!("account-{n}"), "Deposited").await?;
            }
            let log = read_log(&store).await?;
            let after: Vec<_> = log.iter().filter(|e| e.position > saved).collect();
            let selected = |keep: &dyn Fn(&str, &str) -> bool| -> Vec<Position> {
                after
                    .iter()
                    .filter(|e| keep(e.stream_id.category(), e.event_type.as_str()))
                    .map(|e| e.position)
                    .collect()
            };
            let expected = [
                selected(&|_, t| t == "Opened"),
                selected(&|c, _| c == "account"),
                selected(&|_, _| true),
            ];
            let total: usize = expected.iter().map(Vec::len).sum();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while bus.counts().delivered < u64::try_from(total)? {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "not delivered: {:?}",
                    bus.counts()
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            running.stop().await;
            for (seen, expected) in seen.iter().zip(&expected) {
                assert_eq!(&*seen.lock().expect("not poisoned"), expected);
            }
            assert_eq!(expected[2].len(), 61, "what came after the saved position");
            Ok(())
        },
    )
    .await
}
