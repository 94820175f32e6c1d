//! `#[derive(EventSet)]` narrows a read of the global log to the set's
//! events and decodes each into the variant of its type and category.
#![cfg(feature = "testkit")]

use std::convert::Infallible;
use std::error::Error;

use annals_core::testkit::bank::{Account, AccountEvent};
use annals_core::testkit::read_log;
use annals_core::upcast::{Upcaster, Upcasters};
use annals_core::{
    Aggregate, DecodeError, DomainEvent, EventDecodeError, EventSet, EventStore, EventStoreExt,
    EventType, ExpectedVersion, InMemoryStore, Metadata, NewEvent, Payload, Position, ReadAll,
    RecordedEvent, StreamId, Timestamp,
};
use serde::{Deserialize, Serialize};

type TestResult = Result<(), Box<dyn Error>>;

/// An order's events. `Placed` is stored as "Opened", the name of the bank's
/// `AccountEvent::Opened`, with the same payload shape: only the stream's
/// category tells the two apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum OrderEvent {
    #[event(name = "Opened")]
    Placed {
        owner: String,
    },
    OrderPaid {
        cents: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum StockEvent {
    Restocked { units: u32 },
}

/// A warehouse's stock, for `#[events(aggregate = Stock)]`.
#[derive(Debug, Clone, Default)]
struct Stock;

impl Aggregate for Stock {
    const CATEGORY: &'static str = "stock";
    type Event = StockEvent;
    type Command = ();
    type Error = Infallible;

    fn apply(&mut self, _: &StockEvent) {}

    fn handle(&self, (): ()) -> Result<Vec<StockEvent>, Infallible> {
        Ok(Vec::new())
    }
}

/// Audit notes, written to any stream. Version 1 of "NoteTaken" was stored
/// as "Noted" and kept its note under `text`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(upcasters = audit_upcasters)]
enum AuditEvent {
    #[event(version = 2)]
    NoteTaken { note: String },
}

fn audit_upcasters() -> Vec<Upcaster> {
    vec![
        Upcaster::rename("Noted", 1, "NoteTaken"),
        Upcaster::reshape("NoteTaken", 1, |payload| {
            let text = payload["text"].take();
            *payload = serde_json::json!({ "note": text });
            Ok::<(), &str>(())
        }),
    ]
}

/// Every variant names its category: by literal or by aggregate.
#[derive(Debug, PartialEq, EventSet)]
enum Shop {
    #[events(category = "order")]
    Order(OrderEvent),
    #[events(aggregate = Account)]
    Account(AccountEvent),
    #[events(aggregate = Stock)]
    Stock(StockEvent),
}

/// One variant whose events may be in any stream.
#[derive(Debug, PartialEq, EventSet)]
enum Watched {
    #[events(category = "order")]
    Order(OrderEvent),
    Audit(AuditEvent),
}

fn recorded(stream: &str, event_type: &str, version: u32, json: &str) -> RecordedEvent {
    let payload = Payload::from_json(json).expect("the test payloads are valid JSON");
    NewEvent::new(event_type, version, payload)
        .expect("the test event types are valid")
        .into_recorded(
            StreamId::new(stream).expect("the test stream ids are valid"),
            1,
            Position(7),
            Timestamp::now(),
        )
}

fn opened(stream: &str) -> RecordedEvent {
    recorded(stream, "Opened", 1, r#"{"owner":"ada"}"#)
}

fn type_names(read: &ReadAll) -> Vec<&str> {
    let mut names: Vec<&str> = read
        .filter()
        .event_types()
        .unwrap_or_default()
        .iter()
        .map(EventType::as_str)
        .collect();
    names.sort_unstable();
    names
}

#[test]
fn set_with_every_category_named_reads_those_categories_of_any_type() {
    let read = Shop::narrow(ReadAll::after(Position::START));
    assert_eq!(read.filter().categories(), ["order", "account", "stock"]);
    assert_eq!(read.filter().event_types(), None);
}

#[test]
fn set_with_a_variant_in_any_stream_reads_every_variant_type_and_old_names() {
    let read = Watched::narrow(ReadAll::after(Position::START));
    assert!(read.filter().all_streams());
    assert_eq!(
        type_names(&read),
        ["NoteTaken", "Noted", "Opened", "OrderPaid"]
    );
}

#[test]
fn narrow_keeps_the_position_and_limit_of_the_read() {
    let read = Shop::narrow(ReadAll::after(Position(9)).limit(3));
    assert_eq!((read.start(), read.max_count()), (Position(9), 3));
}

#[test]
fn set_upcasters_declare_every_variant_type_with_its_upcasters() -> TestResult {
    let upcasters = Watched::upcasters(Upcasters::builder()).build()?;
    assert!(upcasters.needs_upcast("NoteTaken", 1));
    assert!(upcasters.is_old_name("Noted"));
    assert!(!upcasters.is_old_name("OrderPaid"));
    Ok(())
}

#[test]
fn decode_picks_the_variant_by_the_stream_category() -> TestResult {
    let owner = String::from("ada");
    assert_eq!(
        Shop::decode(&opened("order-1"))?,
        Some(Shop::Order(OrderEvent::Placed {
            owner: owner.clone()
        }))
    );
    assert_eq!(
        Shop::decode(&opened("account-1"))?,
        Some(Shop::Account(AccountEvent::Opened { owner }))
    );
    let restocked = recorded("stock-1", "Restocked", 1, r#"{"units":4}"#);
    assert_eq!(
        Shop::decode(&restocked)?,
        Some(Shop::Stock(StockEvent::Restocked { units: 4 }))
    );
    Ok(())
}

#[test]
fn event_outside_the_sets_categories_decodes_as_none() -> TestResult {
    assert_eq!(Shop::decode(&opened("parcel-1"))?, None);
    // A variant with a category is not tried on other streams, even when
    // the set also reads by type.
    let paid = recorded("account-1", "OrderPaid", 1, r#"{"cents":5}"#);
    assert_eq!(Watched::decode(&paid)?, None);
    Ok(())
}

#[test]
fn unknown_type_in_a_wanted_category_decodes_as_none() -> TestResult {
    let shipped = recorded("order-1", "OrderShipped", 1, "{}");
    assert_eq!(Shop::decode(&shipped)?, None);
    assert_eq!(Watched::decode(&shipped)?, None);
    Ok(())
}

#[test]
fn variant_without_category_decodes_its_events_in_any_stream() -> TestResult {
    let note = recorded("parcel-1", "NoteTaken", 2, r#"{"note":"late"}"#);
    let expected = Watched::Audit(AuditEvent::NoteTaken {
        note: "late".into(),
    });
    assert_eq!(Watched::decode(&note)?, Some(expected));
    Ok(())
}

#[test]
fn old_event_is_brought_up_to_date_by_its_types_upcasters() -> TestResult {
    let expected = Some(Watched::Audit(AuditEvent::NoteTaken {
        note: "late".into(),
    }));
    let old_version = recorded("order-1", "NoteTaken", 1, r#"{"text":"late"}"#);
    assert_eq!(Watched::decode(&old_version)?, expected);
    let old_name = recorded("parcel-1", "Noted", 1, r#"{"text":"late"}"#);
    assert_eq!(Watched::decode(&old_name)?, expected);
    Ok(())
}

#[test]
fn decode_of_a_bad_payload_fails_with_invalid_payload_naming_the_event() {
    let bad = recorded("order-7", "Opened", 1, r#"{"owner":5}"#);
    let err: EventDecodeError = Shop::decode(&bad).unwrap_err();
    assert_eq!(err.stream.as_str(), "order-7");
    assert_eq!((err.version, err.position), (1, Position(7)));
    assert!(
        matches!(
            &err.source,
            DecodeError::InvalidPayload { event_type, schema_version: 1, .. }
                if event_type == "Opened"
        ),
        "{err}"
    );
}

#[test]
fn decode_of_a_future_version_fails_with_future_schema_version() {
    let future = recorded("order-1", "OrderPaid", 9, r#"{"cents":5}"#);
    let err = Watched::decode(&future).unwrap_err();
    assert!(
        matches!(err.source, DecodeError::FutureSchemaVersion { .. }),
        "{err}"
    );
}

fn new_event<E: DomainEvent>(event: &E) -> Result<NewEvent, Box<dyn Error>> {
    Ok(NewEvent::from_domain(event, Metadata::default())?)
}

/// A log of five categories: the shop's three, `audit` and `parcel`.
async fn shop_and_other_events() -> Result<InMemoryStore, Box<dyn Error>> {
    let note = AuditEvent::NoteTaken {
        note: "late".into(),
    };
    let log = vec![
        (
            "parcel-1",
            vec![NewEvent::new(
                "ParcelShipped",
                1,
                Payload::from_json("{}")?,
            )?],
        ),
        (
            "account-1",
            vec![new_event(&AccountEvent::Opened {
                owner: "ada".into(),
            })?],
        ),
        ("audit-1", vec![new_event(&note)?]),
        (
            "order-1",
            vec![
                new_event(&OrderEvent::Placed {
                    owner: "bob".into(),
                })?,
                new_event(&OrderEvent::OrderPaid { cents: 5 })?,
            ],
        ),
        (
            "stock-1",
            vec![new_event(&StockEvent::Restocked { units: 2 })?],
        ),
        ("parcel-2", vec![new_event(&note)?]),
    ];
    let store = InMemoryStore::new();
    for (stream, events) in log {
        store
            .append_to_stream(&StreamId::new(stream)?, ExpectedVersion::Any, events)
            .await?;
    }
    Ok(store)
}

/// Reads the set's events and decodes each, as a follower of the log
/// would: each event's stream, and what it decoded to.
async fn read_set<S: EventSet>(
    store: &InMemoryStore,
) -> Result<Vec<(String, Option<S>)>, Box<dyn Error>> {
    let page = store
        .read_all(S::narrow(ReadAll::after(Position::START)))
        .await?;
    let mut events = Vec::new();
    for event in page {
        events.push((event.stream_id.to_string(), S::decode(&event)?));
    }
    Ok(events)
}

fn stream_of<S>(events: &[(String, S)]) -> Vec<&str> {
    events.iter().map(|(stream, _)| stream.as_str()).collect()
}

#[tokio::test]
async fn narrowed_read_by_category_returns_exactly_the_sets_events() -> TestResult {
    let store = shop_and_other_events().await?;
    let events: Vec<(String, Option<Shop>)> = read_set(&store).await?;
    let in_the_shop: Vec<String> = read_log(&store)
        .await?
        .into_iter()
        .filter(|e| ["account", "order", "stock"].contains(&e.stream_id.category()))
        .map(|e| e.stream_id.to_string())
        .collect();
    assert_eq!(stream_of(&events), in_the_shop);
    assert_eq!(
        stream_of(&events),
        ["account-1", "order-1", "order-1", "stock-1"]
    );
    let decoded: Vec<Shop> = events.into_iter().filter_map(|(_, e)| e).collect();
    assert_eq!(
        decoded,
        [
            Shop::Account(AccountEvent::Opened {
                owner: "ada".into()
            }),
            Shop::Order(OrderEvent::Placed {
                owner: "bob".into()
            }),
            Shop::Order(OrderEvent::OrderPaid { cents: 5 }),
            Shop::Stock(StockEvent::Restocked { units: 2 }),
        ]
    );
    Ok(())
}

#[tokio::test]
async fn narrowed_read_by_type_returns_the_sets_types_and_decodes_only_the_sets_events(
) -> TestResult {
    let store = shop_and_other_events().await?;
    let events: Vec<(String, Option<Watched>)> = read_set(&store).await?;
    // Read by type, the account's "Opened" comes too (orders store
    // `Placed` under the same name); decoding leaves it out, since `Order`
    // is tried on order streams only.
    assert_eq!(
        stream_of(&events),
        ["account-1", "audit-1", "order-1", "order-1", "parcel-2"]
    );
    let note = || {
        Some(Watched::Audit(AuditEvent::NoteTaken {
            note: "late".into(),
        }))
    };
    let decoded: Vec<Option<Watched>> = events.into_iter().map(|(_, e)| e).collect();
    assert_eq!(
        decoded,
        [
            None,
            note(),
            Some(Watched::Order(OrderEvent::Placed {
                owner: "bob".into()
            })),
            Some(Watched::Order(OrderEvent::OrderPaid { cents: 5 })),
            note(),
        ]
    );
    Ok(())
}
