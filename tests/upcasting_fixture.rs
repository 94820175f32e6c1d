//! Events stored by the first version of the bank load into today's types.
//!
//! `tests/fixtures/bank-v1.jsonl` holds what the first version of the bank
//! wrote: three accounts, nine events, every one at schema version 1 and
//! under its old name. Each line is one stored event: `stream_id`,
//! `version`, `event_id`, `event_type`, `schema_version`, `payload` (the
//! JSON text as a string, kept byte for byte) and `metadata`.
//!
//! The file was generated, not written by hand: [`generate_bank_v1_fixture`]
//! below encodes the old event types (module [`v1`]) with
//! `#[derive(DomainEvent)]` and writes it, with fixed event ids. It was run
//! once with
//!
//! ```text
//! ANNALS_WRITE_FIXTURES=1 cargo test -p annals --test upcasting_fixture -- --ignored --exact generate_bank_v1_fixture
//! ```
//!
//! and its output checked in. A fixture is never edited afterwards (the
//! generator refuses to overwrite one that differs): a new schema version
//! gets a new fixture.
//!
//! Today's types ([`CurrentEvent`]) reach the old shapes through this chain:
//!
//! | stored (v1) | step | current |
//! |---|---|---|
//! | `AccountCreated` v1 `{name, initial_euros}` | rename → `Opened` v1, reshape → v2 `{owner, initial_cents}`, split → | `Opened` v3 `{owner}` + `Deposited` v2 `{cents}` (when the initial deposit is not 0) |
//! | `MoneyDeposited` v1 `{euros}` | rename → `Deposited` v1, reshape → | `Deposited` v2 `{cents}` |
//! | `MoneyWithdrawn` v1 `{euros}` | rename → `Withdrawn` v1, reshape → | `Withdrawn` v2 `{cents}` |
//! | `AccountClosed` v1 `{}` | none | `AccountClosed` v1 (variant `Closed`) |
//!
//! Every test runs on the in-memory store and on a temporary SQLite store.

use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;

use annals::sqlite::SqliteStore;
use annals::upcast::{RegistryError, StepError, UpcastEvent, Upcaster, Upcasters};
use annals::{
    Aggregate, AggregateError, CommandContext, DecodeError, DomainEvent, EventId, EventStore,
    EventStoreExt, EventType, ExpectedVersion, InMemoryStore, LoadError, Metadata, NewEvent,
    Payload, Position, ReadAll, RecordedEvent, Repository, StreamId,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

type TestResult = Result<(), Box<dyn Error>>;

// ---------------------------------------------------------------------------
// The first version of the bank, as the generator encodes it.

/// The event types of the bank's first version, as they were written then.
pub mod v1 {
    use annals::DomainEvent;
    use serde::{Deserialize, Serialize};

    /// What the first version recorded.
    #[derive(Debug, Clone, Serialize, Deserialize, DomainEvent)]
    pub enum AccountEvent {
        /// An account was created, with an opening deposit in whole euros.
        AccountCreated {
            /// The holder's name.
            name: String,
            /// The opening deposit, in euros.
            initial_euros: u64,
        },
        /// Money came in, in whole euros.
        MoneyDeposited {
            /// How much.
            euros: u64,
        },
        /// Money went out, in whole euros.
        MoneyWithdrawn {
            /// How much.
            euros: u64,
        },
        /// The account was closed.
        AccountClosed,
    }
}

// ---------------------------------------------------------------------------
// Today's bank.

/// What happens to an account, as today's code writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, DomainEvent)]
#[event(upcasters = bank_upcasters)]
pub enum CurrentEvent {
    /// The account was opened (the opening deposit is its own event since v3).
    #[event(version = 3)]
    Opened {
        /// Who owns it.
        owner: String,
    },
    /// Money came in.
    #[event(version = 2)]
    Deposited {
        /// How much, in cents.
        cents: u64,
    },
    /// Money went out.
    #[event(version = 2)]
    Withdrawn {
        /// How much, in cents.
        cents: u64,
    },
    /// The account was closed; unchanged since v1, and still stored under its
    /// old name.
    #[event(name = "AccountClosed")]
    Closed,
}

/// Reads a whole-euro amount from a payload field and turns it into cents.
fn cents_from_euros(payload: &Value, field: &str) -> Result<u64, StepError> {
    // The messages name the field (from the code), never its value.
    let euros = payload[field]
        .as_u64()
        .ok_or_else(|| StepError::new(format!("{field} is not a whole number")))?;
    euros
        .checked_mul(100)
        .ok_or_else(|| StepError::new(format!("{field} is too large to count in cents")))
}

/// The chain from the first version's shapes to today's.
pub fn bank_upcasters() -> Vec<Upcaster> {
    vec![
        // 1. Rename: "AccountCreated" became "Opened" (same version, same payload).
        Upcaster::rename("AccountCreated", 1, "Opened"),
        // 2. Reshape: the holder is the "owner", and money is counted in cents.
        Upcaster::reshape("Opened", 1, |payload| {
            let initial_cents = cents_from_euros(payload, "initial_euros")?;
            let owner = payload
                .get("name")
                .and_then(Value::as_str)
                .ok_or("name is not a string")?
                .to_owned();
            *payload = json!({ "owner": owner, "initial_cents": initial_cents });
            Ok::<(), StepError>(())
        }),
        // 3. Split: the opening deposit becomes a Deposited event of its own.
        Upcaster::new(
            "Opened",
            2,
            &[("Opened", 3), ("Deposited", 2)],
            |event: UpcastEvent| {
                let cents = event.payload["initial_cents"]
                    .as_u64()
                    .ok_or("initial_cents is not a whole number")?;
                let opened = UpcastEvent {
                    schema_version: 3,
                    payload: json!({ "owner": event.payload["owner"] }),
                    ..event.clone()
                };
                let mut parts = vec![opened];
                if cents > 0 {
                    parts.push(UpcastEvent {
                        event_type: "Deposited".to_owned(),
                        schema_version: 2,
                        payload: json!({ "cents": cents }),
                        ..event
                    });
                }
                Ok::<_, &str>(parts)
            },
        ),
        Upcaster::rename("MoneyDeposited", 1, "Deposited"),
        Upcaster::reshape("Deposited", 1, |payload| {
            *payload = json!({ "cents": cents_from_euros(payload, "euros")? });
            Ok::<_, StepError>(())
        }),
        Upcaster::rename("MoneyWithdrawn", 1, "Withdrawn"),
        Upcaster::reshape("Withdrawn", 1, |payload| {
            *payload = json!({ "cents": cents_from_euros(payload, "euros")? });
            Ok::<_, StepError>(())
        }),
    ]
}

/// What an account asks of today's code (only what these tests need).
#[derive(Debug, Clone)]
pub enum CurrentCommand {
    /// Put money in.
    Deposit {
        /// How much, in cents.
        cents: u64,
    },
}

/// Why today's bank refuses a command.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The account was never opened, or is closed.
    #[error("the account is not open")]
    NotOpen,
}

/// An account as today's code sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CurrentAccount {
    /// Who owns it, once opened.
    pub owner: Option<String>,
    /// The balance, in cents.
    pub balance_cents: u64,
    /// Whether it was closed.
    pub closed: bool,
}

impl Aggregate for CurrentAccount {
    const CATEGORY: &'static str = "account";
    type Event = CurrentEvent;
    type Command = CurrentCommand;
    type Error = Refusal;

    fn apply(&mut self, event: &CurrentEvent) {
        match event {
            CurrentEvent::Opened { owner } => self.owner = Some(owner.clone()),
            CurrentEvent::Deposited { cents } => {
                self.balance_cents = self.balance_cents.saturating_add(*cents)
            }
            CurrentEvent::Withdrawn { cents } => {
                self.balance_cents = self.balance_cents.saturating_sub(*cents)
            }
            CurrentEvent::Closed => self.closed = true,
        }
    }

    fn handle(&self, command: CurrentCommand) -> Result<Vec<CurrentEvent>, Refusal> {
        match command {
            _ if self.owner.is_none() || self.closed => Err(Refusal::NotOpen),
            CurrentCommand::Deposit { cents } => Ok(vec![CurrentEvent::Deposited { cents }]),
        }
    }
}

// ---------------------------------------------------------------------------
// The fixture.

/// One line of the fixture: one stored event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FixtureLine {
    stream_id: String,
    version: u64,
    event_id: EventId,
    event_type: String,
    schema_version: u32,
    /// The JSON payload as text, byte for byte as it was stored.
    payload: String,
    metadata: Metadata,
}

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bank-v1.jsonl")
}

fn read_fixture() -> Result<Vec<FixtureLine>, Box<dyn Error>> {
    let path = fixture_path();
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let parsed = serde_json::from_str(line)
            .map_err(|e| format!("{} line {}: {e}", path.display(), n + 1))?;
        lines.push(parsed);
    }
    Ok(lines)
}

/// Appends every fixture line as it was stored: same stream, version, id,
/// type, schema version, payload text and metadata.
async fn load_fixture(store: &dyn EventStore) -> Result<Vec<FixtureLine>, Box<dyn Error>> {
    let lines = read_fixture()?;
    for line in &lines {
        let event = NewEvent::new(
            line.event_type.as_str(),
            line.schema_version,
            Payload::from_json(line.payload.as_str())?,
        )?
        .with_id(line.event_id)
        .with_metadata(line.metadata.clone());
        let stream = StreamId::new(line.stream_id.as_str())?;
        store
            .append_to_stream(
                &stream,
                ExpectedVersion::Exact(line.version - 1),
                vec![event],
            )
            .await?;
    }
    Ok(lines)
}

/// A fresh in-memory store and a fresh temporary SQLite store, each holding
/// the fixture.
async fn stores_with_fixture() -> Result<Vec<(&'static str, Arc<dyn EventStore>)>, Box<dyn Error>> {
    let stores: Vec<(&'static str, Arc<dyn EventStore>)> = vec![
        ("in-memory", Arc::new(InMemoryStore::new())),
        ("sqlite", Arc::new(SqliteStore::open_temporary().await?)),
    ];
    for (_, store) in &stores {
        load_fixture(store.as_ref()).await?;
    }
    Ok(stores)
}

/// Every fixture event as today's code reads it: (position, stream, stream
/// version, event). A split's parts share the stored event's place.
fn expected_current_log() -> Vec<(u64, &'static str, u64, CurrentEvent)> {
    use CurrentEvent::*;
    let opened = |owner: &str| Opened {
        owner: owner.into(),
    };
    vec![
        (1, "account-ada", 1, opened("Ada Lovelace")),
        (1, "account-ada", 1, Deposited { cents: 10_000 }),
        (2, "account-alan", 1, opened("Alan Turing")),
        (3, "account-ada", 2, Deposited { cents: 500 }),
        (4, "account-grace", 1, opened("Grace Hopper")),
        (4, "account-grace", 1, Deposited { cents: 25_000 }),
        (5, "account-alan", 2, Deposited { cents: 4_000 }),
        (6, "account-ada", 3, Withdrawn { cents: 3_000 }),
        (7, "account-alan", 3, Withdrawn { cents: 4_000 }),
        (8, "account-alan", 4, Closed),
        (9, "account-ada", 4, Deposited { cents: 1_200 }),
    ]
}

/// Checks upcast events against the expected current log (types, versions,
/// payloads, places), and that each keeps its stored event's id and metadata.
fn assert_current_shapes(
    label: &str,
    read: &[RecordedEvent],
    expected: &[(u64, &'static str, u64, CurrentEvent)],
    fixture: &[FixtureLine],
) -> TestResult {
    assert_eq!(read.len(), expected.len(), "{label}: number of events");
    for (event, (position, stream, version, current)) in read.iter().zip(expected) {
        let place = (event.position, event.stream_id.as_str(), event.version);
        assert_eq!(place, (Position(*position), *stream, *version), "{label}");
        assert_eq!(
            (event.event_type.as_str(), event.schema_version),
            (current.event_type(), current.schema_version()),
            "{label}: position {position}"
        );
        let payload: Value = serde_json::from_str(event.payload.as_str())?;
        let expected_payload: Value = serde_json::from_str(current.encode()?.as_str())?;
        assert_eq!(payload, expected_payload, "{label}: position {position}");
        assert_eq!(&event.decode::<CurrentEvent>()?, current, "{label}");
        let stored = &fixture[usize::try_from(*position)? - 1];
        // The first part of a split keeps the stored id; the others (the
        // opening deposit split off "AccountCreated") have ids of their own.
        let split_off =
            stored.event_type == "AccountCreated" && event.event_type.as_str() == "Deposited";
        assert_eq!(
            event.event_id == stored.event_id,
            !split_off,
            "{label}: position {position}: id {} against stored {}",
            event.event_id,
            stored.event_id
        );
        assert_eq!(
            event.metadata, stored.metadata,
            "{label}: position {position}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The tests.

/// (a) The repository, upcasting with the event type's own upcasters, loads
/// every account of the first version to the state today's code expects,
/// and today's code can keep writing to those streams.
#[tokio::test]
async fn v1_fixture_loads_as_current_accounts() -> TestResult {
    for (label, store) in stores_with_fixture().await? {
        let accounts = Repository::<CurrentAccount, _>::new(store)?;
        let expected = [
            ("ada", "Ada Lovelace", 8_700, false, 4),
            ("alan", "Alan Turing", 0, true, 4),
            ("grace", "Grace Hopper", 25_000, false, 1),
        ];
        for (id, owner, balance_cents, closed, version) in expected {
            let loaded = accounts.load(id).await?;
            let state = CurrentAccount {
                owner: Some(owner.to_owned()),
                balance_cents,
                closed,
            };
            assert_eq!(loaded.state, state, "{label}: account-{id}");
            // The stream version counts stored events, not the parts of splits.
            assert_eq!(loaded.version, version, "{label}: account-{id}");
        }
        // Today's shapes go on the end of a stream of old shapes.
        let done = accounts
            .execute(
                "ada",
                CurrentCommand::Deposit { cents: 50 },
                &CommandContext::new(),
            )
            .await?;
        assert_eq!(
            (done.version, done.state.balance_cents),
            (5, 8_750),
            "{label}"
        );
        let reloaded = accounts.load("ada").await?;
        assert_eq!(
            (reloaded.version, reloaded.state.balance_cents),
            (5, 8_750),
            "{label}"
        );
    }
    Ok(())
}

/// (b) Read through `with_upcasters`, streams and the global log hold only
/// today's types, versions and payloads, in the stored order.
#[tokio::test]
async fn v1_fixture_reads_as_current_shapes_through_the_upcasting_store() -> TestResult {
    let fixture = read_fixture()?;
    let expected = expected_current_log();
    for (label, store) in stores_with_fixture().await? {
        let upcasting = store.with_upcasters(Upcasters::for_events::<CurrentEvent>()?);
        let log = upcasting.read_all(ReadAll::after(Position::START)).await?;
        assert_current_shapes(label, &log.events, &expected, &fixture)?;
        for stream in ["account-ada", "account-alan", "account-grace"] {
            let read = upcasting
                .read_stream_to_end(&StreamId::new(stream)?)
                .await?;
            let want: Vec<_> = expected
                .iter()
                .filter(|(_, s, _, _)| *s == stream)
                .cloned()
                .collect();
            assert_current_shapes(&format!("{label} {stream}"), &read, &want, &fixture)?;
        }
    }
    Ok(())
}

/// (b) A global read filtered by today's name finds events stored under the
/// old names: "Deposited" finds every "MoneyDeposited" and the opening
/// deposits split off "AccountCreated", and nothing else.
#[tokio::test]
async fn global_read_filtered_by_a_new_type_name_finds_old_stored_names() -> TestResult {
    let fixture = read_fixture()?;
    let deposits: Vec<_> = expected_current_log()
        .into_iter()
        .filter(|(_, _, _, e)| matches!(e, CurrentEvent::Deposited { .. }))
        .collect();
    assert_eq!(deposits.len(), 5, "the fixture has five deposits");
    for (label, store) in stores_with_fixture().await? {
        let upcasting = store
            .clone()
            .with_upcasters(Upcasters::for_events::<CurrentEvent>()?);
        let read = upcasting
            .read_all(ReadAll::after(Position::START).event_types([EventType::new("Deposited")?]))
            .await?;
        assert_current_shapes(label, &read.events, &deposits, &fixture)?;
        // The raw store has no event stored under the new name.
        let raw = store
            .read_all(ReadAll::after(Position::START).event_types([EventType::new("Deposited")?]))
            .await?;
        assert!(raw.is_empty(), "{label}: nothing is stored as Deposited");
    }
    Ok(())
}

/// (b) An event read from the plain store's global log decodes into today's
/// type with the type's own upcasters: no wrapper needed. Only an event that
/// an upcaster splits in several cannot come back from one decode, and its
/// error names the wrapper that reads it.
#[tokio::test]
async fn v1_fixture_read_from_the_plain_log_decodes_to_current_events() -> TestResult {
    let expected = expected_current_log();
    for (label, store) in stores_with_fixture().await? {
        let log = store.read_all(ReadAll::after(Position::START)).await?;
        assert_eq!(log.len(), 9, "{label}");
        for stored in &log.events {
            let parts: Vec<&CurrentEvent> = expected
                .iter()
                .filter(|(position, ..)| Position(*position) == stored.position)
                .map(|(.., event)| event)
                .collect();
            match (stored.decode::<CurrentEvent>(), parts.as_slice()) {
                (Ok(event), [only]) => assert_eq!(&event, *only, "{label}: {}", stored.position),
                (Err(error), [_, _]) => {
                    assert_eq!(
                        error.source,
                        DecodeError::SplitByUpcaster {
                            event_type: "AccountCreated".into(),
                            version: 1,
                            parts: 2
                        },
                        "{label}"
                    );
                    assert_eq!(error.position, stored.position, "{label}");
                    assert!(error.to_string().contains("with_upcasters"), "{error}");
                }
                (other, _) => panic!("{label}: position {}: {other:?}", stored.position),
            }
        }
        // `decode_known` skips types the event enum does not know, but
        // not old names it knows through its upcasters.
        let renamed = &log.events[2];
        assert_eq!(renamed.event_type, "MoneyDeposited", "{label}");
        assert_eq!(
            renamed.decode_known::<CurrentEvent>()?,
            Some(CurrentEvent::Deposited { cents: 500 }),
            "{label}"
        );
    }
    Ok(())
}

/// (b) An upcast event still says what is stored: its type and version
/// before upcasting.
#[tokio::test]
async fn upcast_events_keep_their_stored_type_and_version_visible() -> TestResult {
    for (label, store) in stores_with_fixture().await? {
        let upcasting = store.with_upcasters(Upcasters::for_events::<CurrentEvent>()?);
        let log = upcasting.read_all(ReadAll::after(Position(2))).await?;
        let deposited = &log.events[0];
        assert_eq!(
            (deposited.event_type.as_str(), deposited.schema_version),
            ("Deposited", 2),
            "{label}"
        );
        assert_eq!(
            (
                deposited.stored_event_type().as_str(),
                deposited.stored_schema_version()
            ),
            ("MoneyDeposited", 1),
            "{label}"
        );
        assert!(deposited.was_upcast(), "{label}");
    }
    Ok(())
}

/// (c) Loading and reading through the upcasters rewrites nothing: the
/// stored rows keep their old names, old versions and byte-identical
/// payloads.
#[tokio::test]
async fn reading_through_upcasters_leaves_stored_rows_unchanged() -> TestResult {
    for (label, store) in stores_with_fixture().await? {
        let accounts = Repository::<CurrentAccount, _>::new(store.clone())?;
        for id in ["ada", "alan", "grace"] {
            accounts.load(id).await?;
        }
        let upcasting = store
            .clone()
            .with_upcasters(Upcasters::for_events::<CurrentEvent>()?);
        upcasting.read_all(ReadAll::after(Position::START)).await?;

        let fixture = read_fixture()?;
        let raw = store
            .read_all(ReadAll::after(Position::START))
            .await?
            .events;
        assert_eq!(raw.len(), fixture.len(), "{label}");
        for ((stored, line), position) in raw.iter().zip(&fixture).zip(1u64..) {
            assert_eq!(stored.position, Position(position), "{label}");
            assert_eq!(stored.stream_id.as_str(), line.stream_id, "{label}");
            assert_eq!(stored.version, line.version, "{label}");
            assert_eq!(stored.event_id, line.event_id, "{label}");
            assert_eq!(stored.event_type.as_str(), line.event_type, "{label}");
            assert_eq!(stored.schema_version, 1, "{label}: only v1 is stored");
            assert_eq!(stored.schema_version, line.schema_version, "{label}");
            assert_eq!(
                stored.payload.as_str(),
                line.payload,
                "{label}: payload bytes"
            );
            assert_eq!(stored.metadata, line.metadata, "{label}");
        }
        let old_names = [
            "AccountCreated",
            "MoneyDeposited",
            "MoneyWithdrawn",
            "AccountClosed",
        ];
        assert!(
            raw.iter()
                .all(|e| old_names.contains(&e.event_type.as_str())),
            "{label}: only the old names are stored"
        );
    }
    Ok(())
}

/// (d) An event written by a newer schema than this code knows stops the
/// load with an error naming its stream, version and type; it is never
/// skipped.
#[tokio::test]
async fn event_from_a_newer_schema_fails_with_future_schema_version() -> TestResult {
    for (label, store) in stores_with_fixture().await? {
        let ada = StreamId::new("account-ada")?;
        let newer = NewEvent::new("Deposited", 3, Payload::from_json(r#"{"cents":1}"#)?)?;
        store
            .append_to_stream(&ada, ExpectedVersion::Exact(4), vec![newer])
            .await?;
        let future = DecodeError::FutureSchemaVersion {
            event_type: "Deposited".into(),
            found: 3,
            newest: 2,
        };

        let accounts = Repository::<CurrentAccount, _>::new(store.clone())?;
        match accounts.load("ada").await {
            Err(LoadError::Decode(annals::EventDecodeError {
                stream,
                version,
                position,
                source,
                ..
            })) => {
                assert_eq!(
                    (stream, version, position, source),
                    (ada.clone(), 5, Position(10), future.clone()),
                    "{label}"
                );
            }
            other => panic!("{label}: expected a future schema version, got {other:?}"),
        }
        let message = accounts
            .load("ada")
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            message.contains("account-ada version 5")
                && message.contains(
                    r#"event type "Deposited" has schema version 3, newer than the newest known (2)"#
                ),
            "{label}: {message}"
        );

        // Read through the upcasters, the event passes unchanged and its
        // decoding fails the same way.
        let upcasting = store.with_upcasters(Upcasters::for_events::<CurrentEvent>()?);
        let log = upcasting.read_all(ReadAll::after(Position(9))).await?;
        assert_eq!(log.len(), 1, "{label}");
        assert_eq!(
            log.events[0].decode::<CurrentEvent>().map_err(|e| e.source),
            Err(future),
            "{label}"
        );
    }
    Ok(())
}

/// Today's events with one upcaster forgotten (`Opened` v1 -> v2).
#[derive(Debug, Clone, Serialize, Deserialize, DomainEvent)]
#[event(upcasters = upcasters_missing_the_opened_reshape)]
pub enum GappedEvent {
    /// As [`CurrentEvent::Opened`].
    #[event(version = 3)]
    Opened {
        /// Who owns it.
        owner: String,
    },
    /// As [`CurrentEvent::Deposited`].
    #[event(version = 2)]
    Deposited {
        /// How much, in cents.
        cents: u64,
    },
    /// As [`CurrentEvent::Withdrawn`].
    #[event(version = 2)]
    Withdrawn {
        /// How much, in cents.
        cents: u64,
    },
    /// As [`CurrentEvent::Closed`].
    #[event(name = "AccountClosed")]
    Closed,
}

/// [`bank_upcasters`] without the step from `Opened` v1 to v2.
pub fn upcasters_missing_the_opened_reshape() -> Vec<Upcaster> {
    bank_upcasters()
        .into_iter()
        .filter(|u| (u.event_type(), u.from_version()) != ("Opened", 1))
        .collect()
}

/// An account whose event type has the gap in its upcasters.
#[derive(Debug, Default, Clone)]
pub struct GappedAccount;

impl Aggregate for GappedAccount {
    const CATEGORY: &'static str = "account";
    type Event = GappedEvent;
    type Command = ();
    type Error = std::convert::Infallible;

    fn apply(&mut self, _: &GappedEvent) {}

    fn handle(&self, (): ()) -> Result<Vec<GappedEvent>, Self::Error> {
        Ok(Vec::new())
    }
}

/// (d) A chain with a missing step is refused when the repository is made,
/// naming the type and the version no upcaster reads, before any old event
/// is read.
#[tokio::test]
async fn upcasters_with_a_missing_step_fail_with_missing_step() -> TestResult {
    let missing = RegistryError::MissingStep {
        event_type: "Opened".into(),
        version: 1,
        current: 3,
    };
    assert_eq!(
        missing.to_string(),
        r#"event type "Opened" is at version 3, but no upcaster reads version 1"#
    );
    for (label, store) in stores_with_fixture().await? {
        match Repository::<GappedAccount, _>::new(store.clone()) {
            Err(AggregateError::InvalidUpcasters { source }) => {
                assert_eq!(source, missing, "{label}")
            }
            Err(other) => panic!("{label}: expected the registry error, got {other:?}"),
            Ok(_) => panic!("{label}: a registry with a gap was accepted"),
        }
        // Decoding an old event read from the log reports it too.
        let raw = store.read_all(ReadAll::after(Position::START)).await?;
        let err = raw.events[0].decode::<GappedEvent>().unwrap_err();
        assert_eq!(
            err.source,
            DecodeError::InvalidUpcasters {
                source: missing.clone()
            },
            "{label}"
        );
    }
    assert_eq!(Upcasters::for_events::<GappedEvent>().err(), Some(missing));
    Ok(())
}

// ---------------------------------------------------------------------------
// The generator.

/// A fixed, version-7-shaped UUID, so that the fixture is the same on every run.
fn fixed_event_id(n: u128) -> Result<EventId, Box<dyn Error>> {
    const BASE: u128 = 0x0189_0000_0000_7000_8000_0000_0000_0000;
    Ok(EventId::from_uuid(uuid::Uuid::from_u128(BASE | n))?)
}

/// The first version's history: three accounts, interleaved in the log as
/// the tellers worked.
fn v1_history() -> Vec<(&'static str, v1::AccountEvent)> {
    use v1::AccountEvent::*;
    let created = |name: &str, initial_euros| AccountCreated {
        name: name.into(),
        initial_euros,
    };
    vec![
        ("account-ada", created("Ada Lovelace", 100)),
        ("account-alan", created("Alan Turing", 0)),
        ("account-ada", MoneyDeposited { euros: 5 }),
        ("account-grace", created("Grace Hopper", 250)),
        ("account-alan", MoneyDeposited { euros: 40 }),
        ("account-ada", MoneyWithdrawn { euros: 30 }),
        ("account-alan", MoneyWithdrawn { euros: 40 }),
        ("account-alan", AccountClosed),
        ("account-ada", MoneyDeposited { euros: 12 }),
    ]
}

/// Writes `tests/fixtures/bank-v1.jsonl` from the old event types. Run once;
/// see the module docs. Refuses to change an existing fixture.
#[test]
#[ignore = "writes the checked-in fixture; run only to create a new one"]
fn generate_bank_v1_fixture() -> TestResult {
    let command = "ANNALS_WRITE_FIXTURES=1 cargo test -p annals --test upcasting_fixture -- --ignored --exact generate_bank_v1_fixture";
    if std::env::var("ANNALS_WRITE_FIXTURES").as_deref() != Ok("1") {
        println!("not writing: set ANNALS_WRITE_FIXTURES=1 to write the fixture:\n  {command}");
        return Ok(());
    }
    let mut versions = std::collections::BTreeMap::<&str, u64>::new();
    let mut text = String::new();
    for ((stream, event), n) in v1_history().into_iter().zip(1u128..) {
        let version = versions.entry(stream).or_default();
        *version += 1;
        let mut metadata = Metadata {
            correlation_id: Some(*fixed_event_id(1_000 + n)?.as_uuid()),
            ..Metadata::default()
        };
        metadata.fields.insert("channel".into(), json!("branch"));
        let encoded = NewEvent::from_domain(&event, metadata)?.with_id(fixed_event_id(n)?);
        let line = FixtureLine {
            stream_id: stream.to_owned(),
            version: *version,
            event_id: encoded.event_id(),
            event_type: encoded.event_type().as_str().to_owned(),
            schema_version: encoded.schema_version(),
            payload: encoded.payload().as_str().to_owned(),
            metadata: encoded.metadata().clone(),
        };
        text.push_str(&serde_json::to_string(&line)?);
        text.push('\n');
    }
    let path = fixture_path();
    match std::fs::read_to_string(&path) {
        Ok(existing) if existing == text => {
            println!("{} is already up to date", path.display());
            return Ok(());
        }
        Ok(_) => {
            return Err(format!(
                "{} exists and differs: fixtures are never edited; add a new one instead",
                path.display()
            )
            .into())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, text)?;
    println!("wrote {}", path.display());
    Ok(())
}
