//! Properties of replay, snapshots, positions and upcaster chains, checked
//! on random inputs.
//!
//! Case counts are bounded so that the whole file runs in about a second in
//! a debug build; `PROPTEST_CASES=10000` sets every block's count instead
//! (the nightly run). A failing case is shrunk and printed, and its seed is
//! saved in `properties.proptest-regressions` beside this file (commit it):
//! it is replayed first on every later run. `PROPTEST_RNG_SEED` fixes the
//! seed of a run.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use annals_core::store::Snapshot;
use annals_core::testkit::bank::{Account, AccountCommand};
use annals_core::testkit::check_no_gaps;
use annals_core::upcast::{RegistryError, UpcastError, UpcastEvent, Upcaster, Upcasters};
use annals_core::{
    Aggregate, CommandContext, CommandError, DecodeError, DomainEvent, EventStore, EventStoreExt,
    ExpectedVersion, InMemoryStore, Metadata, NewEvent, Payload, Position, ReadAll, RecordedEvent,
    Repository, SnapshotPolicy, SnapshotStore, StreamId, Timestamp,
};
use proptest::prelude::*;
use proptest::sample::Index;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

fn command() -> impl Strategy<Value = AccountCommand> {
    prop_oneof![
        "[a-z]{1,8}".prop_map(|owner| AccountCommand::Open { owner }),
        (0u64..500).prop_map(|amount| AccountCommand::Deposit { amount }),
        (0u64..500).prop_map(|amount| AccountCommand::Withdraw { amount }),
    ]
}

/// `default` cases, or the count in `PROPTEST_CASES` when it is set.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a test runtime starts")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(64)))]

    /// Replaying a stream always yields the same state, and the same state
    /// as deciding and applying the commands one by one in memory.
    #[test]
    fn replaying_a_stream_always_yields_the_same_state(
        commands in prop::collection::vec(command(), 0..40)
    ) {
        let rt = runtime();
        rt.block_on(async {
            let repo = Repository::<Account, _>::new(InMemoryStore::new())?;
            let mut model = Account::default();
            for c in commands {
                let decided = model.handle(c.clone());
                let stored = repo.execute("p", c, &CommandContext::new()).await;
                prop_assert_eq!(decided.is_ok(), stored.is_ok());
                for e in decided.unwrap_or_default() {
                    model.apply(&e);
                }
            }
            let first = repo.load("p").await.map_err(|e| TestCaseError::fail(e.to_string()))?;
            let second = repo.load("p").await.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&first, &second);
            prop_assert_eq!(first.state, model);
            Ok(())
        })?;
    }

    /// Any interleaving of appends from several tasks gives strictly
    /// increasing, gap-free positions and contiguous versions per stream.
    #[test]
    fn positions_are_gap_free_and_increasing_across_any_interleaving(
        plans in prop::collection::vec(prop::collection::vec((0usize..4, 1usize..5), 1..8), 1..5)
    ) {
        let rt = runtime();
        rt.block_on(async {
            let store = InMemoryStore::new();
            let mut tasks = Vec::new();
            for (task, plan) in plans.iter().cloned().enumerate() {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    for (n, (stream, count)) in plan.into_iter().enumerate() {
                        let id = StreamId::new(format!("s-{stream}")).expect("valid");
                        let events = (0..count)
                            .map(|i| {
                                let json = format!("{{\"task\":{task},\"n\":{n},\"i\":{i}}}");
                                NewEvent::new("E", 1, Payload::from_json(json).expect("valid"))
                                    .expect("valid")
                            })
                            .collect();
                        store
                            .append_to_stream(&id, ExpectedVersion::Any, events)
                            .await
                            .expect("appends with Any succeed");
                        tokio::task::yield_now().await;
                    }
                }));
            }
            for t in tasks {
                t.await.map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            let log = store
                .read_all(ReadAll::after(Position::START))
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?
                .events;
            let total: usize = plans.iter().flatten().map(|(_, c)| c).sum();
            prop_assert_eq!(log.len(), total);
            check_no_gaps(&log).map_err(TestCaseError::fail)?;
            Ok(())
        })?;
    }
}

// ---------------------------------------------------------------------------
// T5a: snapshots.

/// An opening followed by random commands (some of them refused).
fn account_history() -> impl Strategy<Value = Vec<AccountCommand>> {
    ("[a-z]{1,8}", prop::collection::vec(command(), 0..30)).prop_map(|(owner, rest)| {
        let mut commands = vec![AccountCommand::Open { owner }];
        commands.extend(rest);
        commands
    })
}

fn other_state_version() -> impl Strategy<Value = u32> {
    any::<u32>().prop_filter("another state version", |v| *v != Account::STATE_VERSION)
}

fn fail(error: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(error.to_string())
}

/// Runs a command; a refusal by the aggregate is part of the history, any
/// other failure fails the test.
async fn run<S: EventStore>(
    repo: &Repository<Account, S>,
    command: &AccountCommand,
) -> Result<(), TestCaseError> {
    match repo
        .execute("p", command.clone(), &CommandContext::new())
        .await
    {
        Ok(_) | Err(CommandError::Refused { .. }) => Ok(()),
        Err(error) => Err(fail(error)),
    }
}

/// Waits until the stream's snapshot satisfies `every(n)`: fewer than `n`
/// events recorded since it. Snapshots are written in the background after a
/// command, so this polls the snapshot store, for at most five seconds.
/// Returns the snapshot's version (0 when there is none).
async fn settled_snapshot(
    store: &InMemoryStore,
    stream: &StreamId,
    n: u64,
) -> Result<u64, TestCaseError> {
    let version = store
        .stream_version(stream)
        .await
        .map_err(fail)?
        .unwrap_or(0);
    let settled = async {
        loop {
            let snapshot = store.load_snapshot(stream).await.map_err(fail)?;
            let at = snapshot.map_or(0, |s| s.version);
            if version - at < n {
                return Ok::<u64, TestCaseError>(at);
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), settled)
        .await
        .map_err(|_| {
            fail(format!(
                "the snapshot due at version {version} (every {n}) was not written within 5 s"
            ))
        })?
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(64)))]

    /// Loading from a snapshot plus the tail gives the same state and
    /// version as replaying the whole stream, after every command of a
    /// random history, for snapshots every 1 to 10 events; and the load did
    /// start from the snapshot.
    #[test]
    fn snapshot_plus_tail_equals_full_replay_at_every_frequency(commands in account_history()) {
        let rt = runtime();
        rt.block_on(async {
            for n in 1..=10u64 {
                let store = InMemoryStore::new();
                let snapshotting = Repository::<Account, _>::new(store.clone())?
                    .with_snapshots(SnapshotPolicy::every(n));
                let replaying = Repository::<Account, _>::new(store.clone())?;
                let stream = replaying.stream_id("p").map_err(fail)?;
                for command in &commands {
                    run(&snapshotting, command).await?;
                    let snapshot_version = settled_snapshot(&store, &stream, n).await?;
                    let from_snapshot = snapshotting.load("p").await.map_err(fail)?;
                    let full = replaying.load("p").await.map_err(fail)?;
                    prop_assert_eq!(&from_snapshot.state, &full.state, "every {}", n);
                    prop_assert_eq!(from_snapshot.version, full.version, "every {}", n);
                    prop_assert_eq!(full.replayed, full.version);
                    prop_assert_eq!(
                        from_snapshot.replayed,
                        full.version - snapshot_version,
                        "every {}: the load starts from the snapshot", n
                    );
                }
            }
            Ok(())
        })?;
    }

    /// A snapshot written by another state schema is ignored: the load
    /// replays the whole stream and gets the same state as without
    /// snapshots; once a snapshot is due, a current one replaces it.
    #[test]
    fn snapshot_of_another_state_version_is_ignored(
        commands in account_history(),
        n in 1u64..=10,
        state_version in other_state_version(),
        at in any::<Index>(),
    ) {
        let rt = runtime();
        rt.block_on(async {
            let store = InMemoryStore::new();
            let replaying = Repository::<Account, _>::new(store.clone())?;
            for command in &commands {
                run(&replaying, command).await?;
            }
            let stream = replaying.stream_id("p").map_err(fail)?;
            let full = replaying.load("p").await.map_err(fail)?;
            // A state no history of this account can reach.
            let forged = Account { open: true, owner: "forged".into(), balance: u64::MAX };
            let versions = usize::try_from(full.version).map_err(fail)? + 1;
            let forged_at = u64::try_from(at.index(versions)).map_err(fail)?;
            store
                .save_snapshot(Snapshot {
                    stream_id: stream.clone(),
                    version: forged_at,
                    state_version,
                    state: Payload::encode(&forged).map_err(fail)?,
                    taken_at: Timestamp::now(),
                })
                .await
                .map_err(fail)?;

            let snapshotting = Repository::<Account, _>::new(store.clone())?
                .with_snapshots(SnapshotPolicy::every(n));
            let loaded = snapshotting.load("p").await.map_err(fail)?;
            prop_assert_eq!(&loaded.state, &full.state);
            prop_assert_eq!(loaded.version, full.version);
            prop_assert_eq!(loaded.replayed, full.version, "the whole stream is replayed");

            if full.version >= n {
                let replaced = async {
                    loop {
                        let snapshot = store.load_snapshot(&stream).await.map_err(fail)?;
                        match snapshot {
                            Some(s) if s.state_version == Account::STATE_VERSION => {
                                return Ok::<Snapshot, TestCaseError>(s)
                            }
                            _ => tokio::task::yield_now().await,
                        }
                    }
                };
                let snapshot = tokio::time::timeout(Duration::from_secs(5), replaced)
                    .await
                    .map_err(|_| fail("the ignored snapshot was not replaced within 5 s"))??;
                prop_assert_eq!(snapshot.version, full.version);
                let from_snapshot = snapshotting.load("p").await.map_err(fail)?;
                prop_assert_eq!(&from_snapshot.state, &full.state);
                prop_assert_eq!(from_snapshot.replayed, 0);
            }
            Ok(())
        })?;
    }
}

// ---------------------------------------------------------------------------
// T5b: upcaster chains.
//
// The account events of these properties went through three changes:
//
// 1. rename: "AccountOpened" v1 became "Opened" v1;
// 2. reshape: "Opened" v1 `{name, euros: [..]}` became v2
//    `{owner, initial_cents: [..]}` (whole euros became cents);
// 3. split: "Opened" v2 became "Opened" v3 `{owner}` plus one "Deposited" v1
//    `{cents}` per opening deposit, in order;
//
// and "Deposited" v1 `{cents}` became v2 `{amount, currency}`, a step that
// must also see every "Deposited" the split makes.

/// Today's shapes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, DomainEvent)]
#[event(upcasters = chain)]
enum ChainEvent {
    #[event(version = 3)]
    Opened { owner: String },
    #[event(version = 2)]
    Deposited { amount: u64, currency: String },
}

fn chain() -> Vec<Upcaster> {
    vec![
        Upcaster::rename("AccountOpened", 1, "Opened"),
        Upcaster::reshape("Opened", 1, |payload| {
            let owner = payload
                .get("name")
                .and_then(Value::as_str)
                .ok_or("name is not a string")?
                .to_owned();
            let euros = payload
                .get("euros")
                .and_then(Value::as_array)
                .ok_or("euros is not a list")?;
            let initial_cents = euros
                .iter()
                .map(|e| e.as_u64().and_then(|e| e.checked_mul(100)))
                .collect::<Option<Vec<u64>>>()
                .ok_or("a deposit is not a whole number of euros that fits in cents")?;
            *payload = json!({ "owner": owner, "initial_cents": initial_cents });
            Ok::<(), &str>(())
        }),
        Upcaster::new(
            "Opened",
            2,
            &[("Opened", 3), ("Deposited", 1)],
            |event: UpcastEvent| {
                let owner = event.payload.get("owner").cloned().ok_or("no owner")?;
                let deposits = event
                    .payload
                    .get("initial_cents")
                    .and_then(Value::as_array)
                    .cloned()
                    .ok_or("initial_cents is not a list")?;
                let opened = UpcastEvent {
                    schema_version: 3,
                    payload: json!({ "owner": owner }),
                    ..event.clone()
                };
                let mut parts = vec![opened];
                parts.extend(deposits.into_iter().map(|cents| UpcastEvent {
                    event_type: "Deposited".into(),
                    schema_version: 1,
                    payload: json!({ "cents": cents }),
                    ..event.clone()
                }));
                Ok::<_, &str>(parts)
            },
        ),
        Upcaster::reshape("Deposited", 1, |payload| {
            let cents = payload
                .get("cents")
                .and_then(Value::as_u64)
                .ok_or("cents is not a whole number")?;
            *payload = json!({ "amount": cents, "currency": "EUR" });
            Ok::<(), &str>(())
        }),
    ]
}

fn registry() -> Result<Upcasters, TestCaseError> {
    Upcasters::for_events::<ChainEvent>().map_err(fail)
}

/// A stored event at position 7, version 3 of "account-1", with metadata.
fn stored(event_type: &str, schema_version: u32, payload: Payload) -> RecordedEvent {
    let mut metadata = Metadata {
        tenant: Some("acme".into()),
        ..Metadata::default()
    };
    metadata.fields.insert("teller".into(), json!(4));
    NewEvent::new(event_type, schema_version, payload)
        .expect("the strategies make valid type names")
        .with_metadata(metadata)
        .into_recorded(
            StreamId::new("account-1").expect("valid"),
            3,
            Position(7),
            Timestamp::from_unix_micros(1_700_000_000_000_000),
        )
}

fn upcast(upcasters: &Upcasters, event: RecordedEvent) -> Result<Vec<RecordedEvent>, UpcastError> {
    let mut out = Vec::new();
    upcasters.upcast_into(event, &mut out)?;
    Ok(out)
}

/// Type, schema version and parsed payload of each event.
fn shapes(events: &[RecordedEvent]) -> Result<Vec<(String, u32, Value)>, TestCaseError> {
    events
        .iter()
        .map(|e| {
            let payload = serde_json::from_str(e.payload.as_str()).map_err(fail)?;
            Ok((e.event_type.as_str().to_owned(), e.schema_version, payload))
        })
        .collect()
}

/// An account opening, whatever version it was stored at.
#[derive(Debug, Clone)]
struct Opening {
    name: String,
    euros: Vec<u64>,
}

/// The versions an opening can be stored at, oldest first.
#[derive(Debug, Clone, Copy)]
enum Stage {
    AccountOpenedV1,
    OpenedV1,
    OpenedV2,
}

fn opening() -> impl Strategy<Value = Opening> {
    (
        "[A-Za-z ]{0,12}",
        prop::collection::vec(0u64..=1_000_000_000_000, 0..6),
    )
        .prop_map(|(name, euros)| Opening { name, euros })
}

fn stage() -> impl Strategy<Value = Stage> {
    prop_oneof![
        Just(Stage::AccountOpenedV1),
        Just(Stage::OpenedV1),
        Just(Stage::OpenedV2)
    ]
}

impl Opening {
    /// The opening as the code of `stage` stored it.
    fn stored_at(&self, stage: Stage) -> Result<RecordedEvent, TestCaseError> {
        let v1 = json!({ "name": self.name, "euros": self.euros });
        let (event_type, version, payload) = match stage {
            Stage::AccountOpenedV1 => ("AccountOpened", 1, v1),
            Stage::OpenedV1 => ("Opened", 1, v1),
            Stage::OpenedV2 => {
                let cents: Vec<u64> = self.euros.iter().map(|e| e * 100).collect();
                (
                    "Opened",
                    2,
                    json!({ "owner": self.name, "initial_cents": cents }),
                )
            }
        };
        Ok(stored(
            event_type,
            version,
            Payload::encode(&payload).map_err(fail)?,
        ))
    }

    /// What the whole chain makes of the opening, written as one function
    /// from the first version's shape rather than as steps.
    fn composed(&self) -> Vec<(String, u32, Value)> {
        let opened = ("Opened".to_owned(), 3, json!({ "owner": self.name }));
        let deposits = self.euros.iter().map(|euros| {
            let deposit = json!({ "amount": euros * 100, "currency": "EUR" });
            ("Deposited".to_owned(), 2, deposit)
        });
        std::iter::once(opened).chain(deposits).collect()
    }
}

/// JSON of any shape, with the field names the chain reads.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e9f64..1e9).prop_map(Value::from),
        "[a-z\u{0}é ]{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        let key = prop_oneof![
            Just("name".to_owned()),
            Just("euros".to_owned()),
            Just("owner".to_owned()),
            Just("initial_cents".to_owned()),
            Just("cents".to_owned()),
            "[a-z]{1,4}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(key, inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Stored payload text: JSON of any shape (some close to what the chain
/// expects), text that is not JSON, and nesting past the parser's limit.
/// Kept as stored, without the checks an append makes.
fn stored_payload() -> impl Strategy<Value = Payload> {
    let v1 = |name: Value, euros: Value| json!({ "name": name, "euros": euros }).to_string();
    let v2 = |owner: Value, cents: Value| json!({ "owner": owner, "initial_cents": cents });
    let list = || prop::collection::vec(json_value(), 0..3).prop_map(Value::from);
    let text = prop_oneof![
        4 => json_value().prop_map(|v| v.to_string()),
        2 => (json_value(), list()).prop_map(move |(name, euros)| v1(name, euros)),
        2 => (json_value(), list()).prop_map(move |(owner, c)| v2(owner, c).to_string()),
        1 => json_value().prop_map(|cents| json!({ "cents": cents }).to_string()),
        2 => opening().prop_map(move |o| v1(o.name.into(), o.euros.into())),
        1 => opening().prop_map(move |o| v2(o.name.into(), o.euros.into()).to_string()),
        1 => any::<u64>().prop_map(|cents| json!({ "cents": cents }).to_string()),
        1 => "\\PC{0,16}",
        1 => (100usize..200).prop_map(|depth| "[".repeat(depth) + &"]".repeat(depth)),
    ];
    text.prop_map(Payload::from_stored)
}

/// Any stored event: the chain's names and others, at any version.
fn any_stored_event() -> impl Strategy<Value = RecordedEvent> {
    let event_type = prop_oneof![
        3 => Just("AccountOpened".to_owned()),
        3 => Just("Opened".to_owned()),
        3 => Just("Deposited".to_owned()),
        1 => "[A-Z][a-z]{0,8}",
    ];
    let version = prop_oneof![6 => 1u32..=2, 3 => 0u32..=5, 1 => any::<u32>()];
    (event_type, version, stored_payload())
        .prop_map(|(event_type, version, payload)| stored(&event_type, version, payload))
}

/// A type of the chain, its current version, and a version after it.
fn future_version() -> impl Strategy<Value = (&'static str, u32, u32)> {
    prop_oneof![Just(("Opened", 3u32)), Just(("Deposited", 2u32))]
        .prop_flat_map(|(t, newest)| (Just(t), Just(newest), newest + 1..=u32::MAX))
}

/// A change to a valid step set, which may or may not break it.
#[derive(Debug, Clone)]
enum Mutation {
    /// Removes a step.
    Drop(Index),
    /// Adds a second step reading the same version.
    Duplicate(Index),
    /// Makes a step produce this version instead.
    Retarget(Index, u32),
    /// Makes a step also produce this version (a split).
    AddTarget(Index, u32),
    /// Adds a step from one version to another.
    Add(u32, u32),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<Index>().prop_map(Mutation::Drop),
        any::<Index>().prop_map(Mutation::Duplicate),
        (any::<Index>(), 1u32..=5).prop_map(|(i, to)| Mutation::Retarget(i, to)),
        (any::<Index>(), 1u32..=5).prop_map(|(i, to)| Mutation::AddTarget(i, to)),
        (1u32..=5, 1u32..=5).prop_map(|(from, to)| Mutation::Add(from, to)),
    ]
}

/// A current version of type "T" and steps `(from, produces)` over versions
/// 1 to 5, each producing one version or two. Each set starts as a valid
/// chain to the current version and then gets up to two mutations.
fn step_set() -> impl Strategy<Value = (u32, Vec<(u32, Vec<u32>)>)> {
    (1u32..=5)
        .prop_flat_map(|current| {
            // A valid chain: each old version steps to a later one, at most current.
            let targets: Vec<_> = (1..current).map(|v| v + 1..=current).collect();
            (
                Just(current),
                targets,
                prop::collection::vec(mutation(), 0..3),
            )
        })
        .prop_map(|(current, targets, mutations)| {
            let mut steps: Vec<(u32, Vec<u32>)> = (1..)
                .zip(targets)
                .map(|(from, to)| (from, vec![to]))
                .collect();
            for m in mutations {
                let len = steps.len();
                match m {
                    Mutation::Add(from, to) => steps.push((from, vec![to])),
                    _ if len == 0 => {}
                    Mutation::Drop(i) => {
                        steps.remove(i.index(len));
                    }
                    Mutation::Duplicate(i) => steps.push(steps[i.index(len)].clone()),
                    Mutation::Retarget(i, to) => steps[i.index(len)].1 = vec![to],
                    Mutation::AddTarget(i, to) => steps[i.index(len)].1.push(to),
                }
            }
            (current, steps)
        })
}

/// The model: what is wrong with a step set, each fault as the registry
/// error that names it. Empty iff the registry must build.
fn faults(current: u32, steps: &[(u32, Vec<u32>)]) -> Vec<RegistryError> {
    let t = || "T".to_owned();
    let mut found = Vec::new();
    let mut readers: BTreeMap<u32, usize> = BTreeMap::new();
    for (from, _) in steps {
        *readers.entry(*from).or_default() += 1;
    }
    for (&version, &count) in &readers {
        if version >= current {
            found.push(RegistryError::NotOlder {
                event_type: t(),
                version,
                current,
            });
        }
        if count > 1 {
            found.push(RegistryError::DuplicateStep {
                event_type: t(),
                version,
            });
        }
    }
    for version in 1..current {
        if !readers.contains_key(&version) {
            found.push(RegistryError::MissingStep {
                event_type: t(),
                version,
                current,
            });
        }
    }
    for (from, produces) in steps {
        for &to in produces {
            if to != current && !readers.contains_key(&to) {
                found.push(RegistryError::DeadEnd {
                    from_type: t(),
                    from_version: *from,
                    event_type: t(),
                    version: to,
                });
            }
        }
    }
    // A version is on a cycle if following the steps from it comes back to it.
    let next: BTreeMap<u32, BTreeSet<u32>> = steps.iter().fold(BTreeMap::new(), |mut m, (f, p)| {
        m.entry(*f).or_default().extend(p.iter().copied());
        m
    });
    for &start in next.keys() {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<u32> = next[&start].iter().copied().collect();
        while let Some(v) = todo.pop() {
            if seen.insert(v) {
                todo.extend(next.get(&v).into_iter().flatten().copied());
            }
        }
        if seen.contains(&start) {
            found.push(RegistryError::Cycle {
                event_type: t(),
                version: start,
            });
        }
    }
    found
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    /// Upcasting any stored event, however malformed, returns the current
    /// events or a typed error, and never panics; current events then
    /// decode or fail to decode with a typed error.
    #[test]
    fn upcasting_any_stored_event_never_panics(event in any_stored_event()) {
        let upcasters = registry()?;
        let needs_upcast = upcasters.needs_upcast(event.event_type.as_str(), event.schema_version);
        match upcast(&upcasters, event.clone()) {
            Ok(out) if !needs_upcast => prop_assert_eq!(out, vec![event]),
            Ok(out) => {
                for e in &out {
                    let current = (e.event_type.as_str(), e.schema_version);
                    prop_assert!(ChainEvent::known_types().contains(&current), "{:?}", current);
                    // A payload the chain passed on may still not fit the type.
                    match e.decode::<ChainEvent>().map_err(|e| e.source) {
                        Ok(_) | Err(DecodeError::InvalidPayload { .. }) => {}
                        Err(other) => prop_assert!(false, "unexpected {:?}", other),
                    }
                }
            }
            Err(UpcastError::Undeclared { .. }) => {
                prop_assert!(false, "the chain declares every output")
            }
            Err(UpcastError::Step { .. } | UpcastError::Payload { .. }) => {
                prop_assert!(needs_upcast)
            }
            Err(UpcastError::Invalid { .. }) => prop_assert!(needs_upcast),
            // An old name at a version no step reads.
            Err(UpcastError::NoPath { event_type, .. }) => {
                prop_assert!(!ChainEvent::known_types().iter().any(|(t, _)| *t == event_type))
            }
            Err(other) => prop_assert!(false, "unexpected {:?}", other),
        }
    }

    /// The same stored event upcasts to the same result every time, with the
    /// same registry or a fresh one.
    #[test]
    fn upcasting_the_same_stored_event_twice_gives_the_same_result(event in any_stored_event()) {
        let upcasters = registry()?;
        let first = upcast(&upcasters, event.clone());
        prop_assert_eq!(&first, &upcast(&upcasters, event.clone()));
        prop_assert_eq!(&first, &upcast(&registry()?, event));
    }

    /// Going through the steps from any past version gives what the
    /// composed function gives for the first version's shape.
    #[test]
    fn chain_of_steps_equals_the_composed_function(opening in opening(), stage in stage()) {
        let out = upcast(&registry()?, opening.stored_at(stage)?).map_err(fail)?;
        prop_assert_eq!(shapes(&out)?, opening.composed());
    }

    /// A split makes one "Opened" and then one "Deposited" per opening
    /// deposit, in order; the step after the split saw every part (each
    /// "Deposited" reached v2); every part keeps the stored event's place
    /// and metadata, and decodes; the first part keeps the stored id and
    /// every other part has an id of its own.
    #[test]
    fn split_yields_every_part_in_order_and_later_steps_see_each(
        opening in opening(),
        stage in stage(),
    ) {
        let event = opening.stored_at(stage)?;
        let out = upcast(&registry()?, event.clone()).map_err(fail)?;
        prop_assert_eq!(out.len(), 1 + opening.euros.len());
        let decoded = out
            .iter()
            .map(|e| e.decode::<ChainEvent>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail)?;
        let mut expected = vec![ChainEvent::Opened { owner: opening.name.clone() }];
        expected.extend(opening.euros.iter().map(|euros| ChainEvent::Deposited {
            amount: euros * 100,
            currency: "EUR".into(),
        }));
        prop_assert_eq!(decoded, expected);
        prop_assert_eq!(out[0].event_id, event.event_id);
        let ids: std::collections::HashSet<_> = out.iter().map(|e| e.event_id).collect();
        prop_assert_eq!(ids.len(), out.len(), "split parts share an id");
        for part in &out {
            prop_assert_eq!(
                (part.position, &part.stream_id, part.version),
                (event.position, &event.stream_id, event.version)
            );
            prop_assert_eq!(&part.metadata, &event.metadata);
            prop_assert_eq!(part.recorded_at, event.recorded_at);
        }
    }

    /// An event of a schema version newer than the code knows passes the
    /// upcasters unchanged and fails to decode with the typed error naming
    /// its type, its version and the newest known.
    #[test]
    fn event_from_a_future_schema_fails_with_future_schema_version(
        (event_type, newest, found) in future_version(),
        payload in json_value(),
    ) {
        // Any payload: it is never read.
        let payload = Payload::from_stored(payload.to_string());
        let event = stored(event_type, found, payload);
        let out = upcast(&registry()?, event.clone()).map_err(fail)?;
        prop_assert_eq!(&out, &vec![event]);
        prop_assert_eq!(
            out[0].decode::<ChainEvent>().map_err(|e| e.source),
            Err(DecodeError::FutureSchemaVersion {
                event_type: event_type.to_owned(),
                found,
                newest,
            })
        );
    }

    /// A registry of steps over versions 1 to 5 of one type builds iff every
    /// version below the current one has exactly one step and every step
    /// leads to the current version: no gap, duplicate, dead end or cycle.
    /// A refusal names the type and a version that really is at fault.
    #[test]
    fn registry_builds_iff_every_old_version_has_one_path_to_current(
        (current, steps) in step_set(),
    ) {
        let builder = steps.iter().fold(
            Upcasters::builder().current("T", current),
            |builder, (from, produces)| {
                let produces: Vec<(&str, u32)> = produces.iter().map(|&v| ("T", v)).collect();
                builder.upcaster(Upcaster::new("T", *from, &produces, |e: UpcastEvent| {
                    Ok::<_, &str>(vec![e])
                }))
            },
        );
        let faults = faults(current, &steps);
        match builder.build() {
            Ok(_) => prop_assert!(faults.is_empty(), "built despite {:?}", faults),
            Err(error) => {
                prop_assert!(faults.contains(&error), "{:?} is not among {:?}", error, faults);
                let message = error.to_string();
                prop_assert!(message.contains(r#""T""#), "{}", message);
                let version = match &error {
                    RegistryError::NotOlder { version, .. }
                    | RegistryError::DuplicateStep { version, .. }
                    | RegistryError::MissingStep { version, .. }
                    | RegistryError::DeadEnd { version, .. }
                    | RegistryError::Cycle { version, .. } => *version,
                    other => return Err(fail(format!("unexpected {other:?}"))),
                };
                prop_assert!(message.contains(&format!("version {version}")), "{}", message);
            }
        }
    }
}
