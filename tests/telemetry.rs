//! Payloads and metadata never reach logs, traces or error messages.
//!
//! A sentinel string is put in payloads, metadata and snapshots; every
//! success and failure path below runs with a subscriber that records every
//! field of every span and event at TRACE level, and the sentinel must not
//! appear in what it recorded, nor in the `Display` or `Debug` of any error.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use annals::prelude::*;
use annals::sqlite::SqliteStore;
use annals::store::Snapshot;
use annals::upcast::{StepError, UpcastEvent, Upcaster, Upcasters};
use annals::{
    CommandContext, ExpectedVersion, Metadata, NewEvent, Payload, ReadAll, Repository,
    SnapshotPolicy, StreamId, Timestamp,
};
use annals_core::testkit::bank::{Account, AccountCommand, AccountEvent};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};

const SENTINEL: &str = "SENTINEL-7f3a";

/// Records every field of every span and event, as text.
#[derive(Clone, Default)]
struct Capture {
    lines: Arc<Mutex<Vec<String>>>,
    ids: Arc<AtomicU64>,
}

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={value:?} ", field.name());
    }
}

impl Capture {
    fn push(&self, line: String) {
        if let Ok(mut lines) = self.lines.lock() {
            lines.push(line);
        }
    }

    fn text(&self) -> String {
        self.lines.lock().map(|l| l.join("\n")).unwrap_or_default()
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut line = format!("span {} ", span.metadata().name());
        span.record(&mut Fields(&mut line));
        self.push(line);
        Id::from_u64(self.ids.fetch_add(1, Ordering::SeqCst) + 1)
    }
    fn record(&self, _: &Id, values: &Record<'_>) {
        let mut line = String::from("record ");
        values.record(&mut Fields(&mut line));
        self.push(line);
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut line = format!("event {} ", event.metadata().level());
        event.record(&mut Fields(&mut line));
        self.push(line);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Fails if the sentinel is in an error's `Display` or `Debug`.
fn assert_clean(what: &str, error: &(impl std::fmt::Display + std::fmt::Debug)) {
    let shown = format!("{error} {error:?}");
    assert!(
        !shown.contains(SENTINEL),
        "{what} shows payload data: {shown}"
    );
}

fn upcasters() -> Vec<Upcaster> {
    vec![Upcaster::reshape(
        "Deposited",
        1,
        |_: &mut serde_json::Value| Err::<(), _>("refused"),
    )]
}

/// An upcaster written the quick way: `?` on serde_json, whose own message
/// quotes the value it tripped on.
fn careless_upcasters() -> Vec<Upcaster> {
    vec![Upcaster::reshape("Deposited", 1, |payload| {
        let amount: u64 = serde_json::from_value(payload["amount"].clone())?;
        *payload = serde_json::json!({ "amount": amount });
        Ok::<(), StepError>(())
    })]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_never_reaches_logs_traces_or_error_messages(
) -> Result<(), Box<dyn std::error::Error>> {
    let capture = Capture::default();
    tracing::subscriber::set_global_default(capture.clone())?;

    let store = SqliteStore::open_temporary().await?;
    let accounts =
        Repository::<Account, _>::new(store.clone())?.with_snapshots(SnapshotPolicy::every(1));
    let ctx = CommandContext::new()
        .tenant(format!("tenant-{SENTINEL}"))
        .field("note", SENTINEL);
    accounts
        .execute(
            "1",
            AccountCommand::Open {
                owner: SENTINEL.into(),
            },
            &ctx,
        )
        .await?;
    let stream = StreamId::new("account-1")?;

    // A payload that does not fit the type: a decode error.
    let mut metadata = Metadata::default();
    metadata.fields.insert("secret".into(), SENTINEL.into());
    let misfit = NewEvent::new(
        "Deposited",
        1,
        Payload::from_json(format!(r#"{{"amount":"{SENTINEL}"}}"#))?,
    )?
    .with_metadata(metadata.clone());
    store
        .append_to_stream(&stream, ExpectedVersion::Exact(1), vec![misfit.clone()])
        .await?;
    let error = accounts.load("1").await.unwrap_err();
    assert_clean("a decode error", &error);

    // The same event id with other content; a conflict.
    let reused = NewEvent::new(
        "Deposited",
        1,
        Payload::from_json(format!(r#"{{"x":"{SENTINEL}"}}"#))?,
    )?
    .with_id(misfit.event_id());
    let error = store
        .append_to_stream(&stream, ExpectedVersion::Any, vec![reused])
        .await
        .unwrap_err();
    assert_clean("a reused event id", &error);
    let error = store
        .append_to_stream(
            &stream,
            ExpectedVersion::Exact(1),
            vec![NewEvent::new("X", 1, Payload::from_json("{}")?)?],
        )
        .await
        .unwrap_err();
    assert_clean("a conflict", &error);

    // Payloads refused at append: malformed text, a duplicate key, a NaN.
    let error = Payload::from_json(format!(r#"{{"a": {SENTINEL}}}"#)).unwrap_err();
    assert_clean("malformed JSON", &error);
    let error = Payload::from_json(format!(r#"{{"{SENTINEL}": 1, "{SENTINEL}": 2}}"#)).unwrap_err();
    assert_clean("a duplicate key", &error);

    // A snapshot that does not decode is logged and ignored.
    store
        .save_snapshot(Snapshot {
            stream_id: StreamId::new("account-2")?,
            version: 1,
            state_version: 1,
            state: Payload::from_json(format!(r#"{{"open":"{SENTINEL}"}}"#))?,
            taken_at: Timestamp::now(),
        })
        .await?;
    let second = StreamId::new("account-2")?;
    let opened = NewEvent::from_domain(
        &AccountEvent::Opened {
            owner: SENTINEL.into(),
        },
        metadata.clone(),
    )?;
    store
        .append_to_stream(&second, ExpectedVersion::NoStream, vec![opened])
        .await?;
    accounts.load("2").await?;

    // An upcaster that fails, on a store that upcasts every read.
    let upcasting = store.clone().with_upcasters(
        Upcasters::builder()
            .current("Deposited", 2)
            .upcaster(upcasters().remove(0))
            .build()?,
    );
    let error = upcasting.read_stream_to_end(&stream).await.unwrap_err();
    assert_clean("an upcast error", &error);
    let careless = store.clone().with_upcasters(
        Upcasters::builder()
            .current("Deposited", 2)
            .upcaster(careless_upcasters().remove(0))
            .build()?,
    );
    let error = careless.read_stream_to_end(&stream).await.unwrap_err();
    assert_clean("a serde error inside an upcaster", &error);

    // A decode of the misfit read from the global log.
    let log = store
        .read_all(ReadAll::after(annals::Position::START))
        .await?;
    let error = log.events[1].decode::<AccountEvent>().unwrap_err();
    assert_clean("a decode of a log event", &error);

    // A tenant the naming rules refuse, in an append and in a command.
    let bad_tenant = Metadata {
        tenant: Some(format!(" tenant-{SENTINEL}")),
        ..Metadata::default()
    };
    let error = store
        .append_to_stream(
            &stream,
            ExpectedVersion::Any,
            vec![NewEvent::new("X", 1, Payload::from_json("{}")?)?.with_metadata(bad_tenant)],
        )
        .await
        .unwrap_err();
    assert_clean("an append with an invalid tenant", &error);
    let error = accounts
        .execute(
            "3",
            AccountCommand::Open { owner: "x".into() },
            &CommandContext::new().tenant(format!("tenant-{SENTINEL}\n")),
        )
        .await
        .unwrap_err();
    assert_clean("a command with an invalid tenant", &error);
    assert_clean(
        "a command with an invalid tenant, as annals::Error",
        &annals::Error::from(error),
    );

    // What an upcaster sees hides the payload too.
    let seen = UpcastEvent {
        event_type: "Deposited".into(),
        schema_version: 1,
        payload: serde_json::json!({ "amount": SENTINEL }),
        metadata: metadata.clone(),
    };
    let shown = format!("{seen:?}");
    assert!(!shown.contains(SENTINEL), "Debug of UpcastEvent: {shown}");

    // Debug of what was read hides payloads and metadata.
    let read = store.read_stream_to_end(&second).await?;
    let shown = format!("{read:?}");
    assert!(
        !shown.contains(SENTINEL),
        "Debug of recorded events shows payload data: {shown}"
    );

    store.close().await;
    let logged = capture.text();
    assert!(!logged.is_empty(), "the subscriber recorded nothing");
    assert!(
        !logged.contains(SENTINEL),
        "telemetry shows payload data:\n{logged}"
    );
    Ok(())
}
