//! Events as they come: split by an upcaster, of a type the projection
//! does not know, faster than a slow projection can keep up.

use std::time::Duration;

use annals_core::testkit::bank::AccountEvent;
use annals_core::upcast::Upcaster;
use annals_core::{
    AppendRequest, DomainEvent, EventSet, EventStore, ExpectedVersion, NewEvent, Payload, Position,
    StreamId,
};
use annals_projections::{
    Envelope, HandlerError, Projection, ProjectionState, Projections, SqliteProjection,
    UnknownEvents, WaitError,
};
use rusqlite::{params, Transaction};
use serde::{Deserialize, Serialize};

use crate::fixtures::*;

/// A ledger whose old `Transferred` events are split, when read, into a
/// debit and a credit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(upcasters = ledger_upcasters)]
enum LedgerEvent {
    Debited { amount: u64 },
    Credited { amount: u64 },
}

fn ledger_upcasters() -> Vec<Upcaster> {
    vec![Upcaster::new(
        "Transferred",
        1,
        &[("Debited", 1), ("Credited", 1)],
        |event: annals_core::upcast::UpcastEvent| {
            let amount = event.payload["amount"].clone();
            let part = |name: &str| annals_core::upcast::UpcastEvent {
                event_type: name.to_owned(),
                schema_version: 1,
                payload: serde_json::json!({ "amount": amount }),
                metadata: event.metadata.clone(),
            };
            Ok::<_, &str>(vec![part("Debited"), part("Credited")])
        },
    )]
}

/// Records each part it applies; fails on a credit of the unlucky amount.
struct Entries;

impl SqliteProjection for Entries {
    type Events = LedgerEvent;
    const NAME: &'static str = "entries";

    fn create(&self, db: &Transaction<'_>) -> Result<(), HandlerError> {
        db.execute_batch("CREATE TABLE entries (position INTEGER NOT NULL, kind TEXT NOT NULL)")?;
        Ok(())
    }

    fn handle(
        &mut self,
        db: &Transaction<'_>,
        event: &Envelope<LedgerEvent>,
    ) -> Result<(), HandlerError> {
        if event.event == (LedgerEvent::Credited { amount: UNLUCKY }) {
            return Err("an unlucky credit".into());
        }
        db.execute(
            "INSERT INTO entries VALUES (?1, ?2)",
            params![i64::try_from(event.position.0)?, event.event_type.as_str()],
        )?;
        Ok(())
    }
}

async fn transfer(store: &annals_core::InMemoryStore, amount: u64) -> Position {
    let old = NewEvent::new(
        "Transferred",
        1,
        Payload::from_json(format!(r#"{{"amount":{amount}}}"#)).expect("JSON"),
    )
    .expect("valid type");
    store
        .append(AppendRequest::to_stream(
            StreamId::new("ledger-1").expect("valid"),
            ExpectedVersion::Any,
            vec![old],
        ))
        .await
        .expect("append")
        .last_position()
        .expect("one event")
}

fn entries(path: &std::path::Path) -> Vec<(u64, String)> {
    let db = rusqlite::Connection::open(path).expect("open");
    let mut query = db
        .prepare("SELECT position, kind FROM entries ORDER BY rowid")
        .expect("prepare");
    let rows = query
        .query_map([], |r| {
            Ok((u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0), r.get(1)?))
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_of_a_split_event_share_its_position_and_one_batch() -> TestResult {
    let (_dir, model, store) = setup();
    let first = transfer(&store, 5).await;
    let unlucky = transfer(&store, UNLUCKY).await;
    transfer(&store, 7).await;
    let running = Projections::new(store.clone())
        .batch_size(1)
        .sqlite(&model, Entries)
        .start()?;
    let error = running
        .wait_idle()
        .await
        .expect_err("fails on the unlucky credit");
    let WaitError::Failed(failure) = &error else {
        panic!("{error:?}")
    };
    assert_eq!(failure.position(), Some(unlucky));
    // The unlucky transfer's debit was rolled back with its credit: the
    // checkpoint never falls between the parts of one position.
    assert_eq!(
        entries(&model),
        [
            (first.0, "Debited".to_owned()),
            (first.0, "Credited".to_owned())
        ]
    );
    assert_eq!(running.status()[0].checkpoint, first);
    running.stop().await;
    Ok(())
}

/// Reads the account category, with a type the bank does not know in it.
#[derive(Debug, annals_core::EventSet)]
enum AccountsOnly {
    #[events(category = "account")]
    Account(AccountEvent),
}

struct Count(UnknownEvents, Seen);

#[async_trait::async_trait]
impl Projection for Count {
    type Events = AccountsOnly;
    const NAME: &'static str = "count";
    const IN_MEMORY: bool = true;
    async fn handle(&mut self, event: &Envelope<AccountsOnly>) -> Result<(), HandlerError> {
        let AccountsOnly::Account(account) = &event.event;
        if matches!(account, AccountEvent::Withdrawn { .. }) {
            return Err("the bank here never withdraws".into());
        }
        self.1.lock().map_err(|_| "poisoned")?.push(event.position);
        Ok(())
    }
    async fn reset(&mut self) -> Result<(), HandlerError> {
        Ok(())
    }
    fn on_unknown_event(&self) -> UnknownEvents {
        self.0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_event_type_in_a_read_category_fails_unless_the_projection_skips_it() -> TestResult
{
    let (_dir, _model, store) = setup();
    assert_eq!(
        AccountsOnly::narrow(annals_core::ReadAll::after(Position::START))
            .filter()
            .categories(),
        ["account"]
    );
    busy_bank(&store, 1, 2).await;
    let frozen = NewEvent::new("AccountFrozen", 1, Payload::from_json("{}")?)?;
    let stranger = store
        .append(AppendRequest::to_stream(
            StreamId::new("account-0")?,
            ExpectedVersion::Any,
            vec![frozen],
        ))
        .await?
        .last_position()
        .expect("one event");
    let head = busy_bank(&store, 1, 2).await;

    let seen = Seen::default();
    let running = Projections::new(store.clone())
        .projection(Count(UnknownEvents::Fail, seen.clone()))
        .start()?;
    let error = running
        .wait_for("count", head)
        .await
        .expect_err("fails by default");
    assert!(error.to_string().contains("AccountFrozen"), "{error}");
    let WaitError::Failed(failure) = &error else {
        panic!("{error:?}")
    };
    assert_eq!(failure.position(), Some(stranger));
    running.stop().await;

    let seen = Seen::default();
    let running = Projections::new(store.clone())
        .projection(Count(UnknownEvents::Skip, seen.clone()))
        .start()?;
    running.wait_for("count", head).await?;
    let positions: Vec<u64> = seen.lock().expect("lock").iter().map(|p| p.0).collect();
    assert_eq!(
        positions,
        (1..=head.0)
            .filter(|p| *p != stranger.0)
            .collect::<Vec<_>>()
    );
    running.stop().await;
    Ok(())
}

/// Takes a while per event, like a projection writing to a slow service.
struct Sluggish(Seen);

#[async_trait::async_trait]
impl Projection for Sluggish {
    type Events = AccountEvent;
    const NAME: &'static str = "sluggish";
    const IN_MEMORY: bool = true;
    async fn handle(&mut self, event: &Envelope<AccountEvent>) -> Result<(), HandlerError> {
        tokio::time::sleep(Duration::from_micros(300)).await;
        self.0.lock().map_err(|_| "poisoned")?.push(event.position);
        Ok(())
    }
    async fn reset(&mut self) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_projection_reports_lag_and_ends_with_every_event_once_in_order() -> TestResult {
    let (_dir, _model, store) = setup();
    let seen = Seen::default();
    let running = Projections::new(store.clone())
        .batch_size(50)
        .projection(Sluggish(seen.clone()))
        .start()?;
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..250_u64 {
                    let amount = if n % 50 + 1 == UNLUCKY { 1 } else { n % 50 + 1 };
                    record(&store, &w.to_string(), AccountEvent::Deposited { amount }).await;
                }
            })
        })
        .collect();
    // Watch the status until the projection has caught up with everything.
    let mut most_behind = 0;
    loop {
        let status = running.status_of("sluggish").expect("registered");
        most_behind = most_behind.max(status.lag);
        if status.checkpoint.0 >= 1_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for writer in writers {
        writer.await?;
    }
    running.wait_idle().await?;
    assert!(
        most_behind > 0,
        "the status never showed the projection behind"
    );
    let positions: Vec<u64> = seen.lock().expect("lock").iter().map(|p| p.0).collect();
    assert_eq!(positions, (1..=1_000).collect::<Vec<_>>());
    assert!(matches!(running.status()[0].state, ProjectionState::Live));
    running.stop().await;
    Ok(())
}
