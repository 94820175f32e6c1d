//! Projections over the bank fixtures, with switches to make them fail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use annals_core::testkit::bank::AccountEvent;
use annals_core::{
    EventStore, ExpectedVersion, InMemoryStore, NewEvent, Position, ReadAll, StreamId,
};
use annals_projections::{Envelope, FailurePolicy, HandlerError, Projection, SqliteProjection};
use rusqlite::{params, Transaction};

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// The amount whose deposit fails while `Switches::fail` is on.
pub const UNLUCKY: u64 = 13;
/// The amount whose deposit panics while `Switches::panic` is on.
pub const CURSED: u64 = 66;

/// Ways to make a projection fail, shared with the test.
#[derive(Clone, Default)]
pub struct Switches {
    pub fail: Arc<AtomicBool>,
    pub panic: Arc<AtomicBool>,
}

impl Switches {
    pub fn failing() -> Self {
        let switches = Switches::default();
        switches.fail.store(true, Ordering::SeqCst);
        switches
    }

    pub fn panicking() -> Self {
        let switches = Switches::default();
        switches.panic.store(true, Ordering::SeqCst);
        switches
    }

    pub fn check(&self, event: &AccountEvent) -> Result<(), HandlerError> {
        match event {
            AccountEvent::Deposited { amount: UNLUCKY } if self.fail.load(Ordering::SeqCst) => {
                Err("thirteen is unlucky".into())
            }
            AccountEvent::Deposited { amount: CURSED } if self.panic.load(Ordering::SeqCst) => {
                panic!("sixty-six is cursed")
            }
            _ => Ok(()),
        }
    }
}

pub fn change(event: &AccountEvent) -> Result<i64, HandlerError> {
    Ok(match event {
        AccountEvent::Opened { .. } => 0,
        AccountEvent::Deposited { amount } => i64::try_from(*amount)?,
        AccountEvent::Withdrawn { amount } => -i64::try_from(*amount)?,
    })
}

/// A balance per account, and every position applied in `seen`, whose
/// primary key fails a batch that applies an event twice. `V` is the
/// version; each row records the version that wrote it.
pub struct Balances<const V: u32 = 1> {
    pub switches: Switches,
    pub policy: FailurePolicy,
}

impl<const V: u32> Balances<V> {
    pub fn new() -> Self {
        Balances {
            switches: Switches::default(),
            policy: FailurePolicy::Stop,
        }
    }

    pub fn with(switches: Switches, policy: FailurePolicy) -> Self {
        Balances { switches, policy }
    }
}

impl<const V: u32> SqliteProjection for Balances<V> {
    type Events = AccountEvent;
    const NAME: &'static str = "balances";
    const VERSION: u32 = V;

    fn create(&self, db: &Transaction<'_>) -> Result<(), HandlerError> {
        db.execute_batch(
            "CREATE TABLE balances (account TEXT PRIMARY KEY, cents INTEGER NOT NULL, built_by INTEGER NOT NULL);
             CREATE TABLE seen (position INTEGER PRIMARY KEY, stream TEXT NOT NULL, version INTEGER NOT NULL);",
        )?;
        Ok(())
    }

    fn handle(
        &mut self,
        db: &Transaction<'_>,
        event: &Envelope<AccountEvent>,
    ) -> Result<(), HandlerError> {
        self.switches.check(&event.event)?;
        db.execute(
            "INSERT INTO balances VALUES (?1, ?2, ?3)
             ON CONFLICT (account) DO UPDATE SET cents = cents + ?2",
            params![event.stream_id.id(), change(&event.event)?, V],
        )?;
        db.execute(
            "INSERT INTO seen VALUES (?1, ?2, ?3)",
            params![
                i64::try_from(event.position.0)?,
                event.stream_id.as_str(),
                i64::try_from(event.version)?
            ],
        )?;
        Ok(())
    }

    fn on_failure(&self) -> FailurePolicy {
        self.policy.clone()
    }
}

/// What an at-least-once projection saw, shared with the test.
pub type Seen = Arc<Mutex<Vec<Position>>>;

/// Records every position it handles, in memory or "outside" (kept across
/// runner restarts by the test, like a cache would be).
pub struct Positions<const IN_MEMORY: bool = false> {
    pub seen: Seen,
    pub switches: Switches,
    pub policy: FailurePolicy,
}

impl<const M: bool> Positions<M> {
    pub fn new(seen: Seen) -> Self {
        Positions {
            seen,
            switches: Switches::default(),
            policy: FailurePolicy::Stop,
        }
    }
}

#[async_trait::async_trait]
impl<const M: bool> Projection for Positions<M> {
    type Events = AccountEvent;
    const NAME: &'static str = "positions";
    const IN_MEMORY: bool = M;

    async fn handle(&mut self, event: &Envelope<AccountEvent>) -> Result<(), HandlerError> {
        self.switches.check(&event.event)?;
        self.seen
            .lock()
            .map_err(|_| "poisoned")?
            .push(event.position);
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), HandlerError> {
        self.seen.lock().map_err(|_| "poisoned")?.clear();
        Ok(())
    }

    fn on_failure(&self) -> FailurePolicy {
        self.policy.clone()
    }
}

/// Appends one event to an account's stream; returns its position.
pub async fn record<S: EventStore>(store: &S, account: &str, event: AccountEvent) -> Position {
    let stream = StreamId::new(format!("account-{account}")).expect("valid stream id");
    let new = NewEvent::from_domain(&event, Default::default()).expect("encodes");
    store
        .append(annals_core::AppendRequest::to_stream(
            stream,
            ExpectedVersion::Any,
            vec![new],
        ))
        .await
        .expect("append")
        .last_position()
        .expect("one event")
}

/// Opens `n` accounts and deposits `1..` into them in turn.
pub async fn busy_bank<S: EventStore>(store: &S, accounts: usize, deposits: usize) -> Position {
    let mut last = Position::START;
    for a in 0..accounts {
        last = record(
            store,
            &a.to_string(),
            AccountEvent::Opened {
                owner: format!("owner {a}"),
            },
        )
        .await;
    }
    for d in 0..deposits {
        let amount = (d % 50 + 1) as u64;
        // Keep clear of the amounts that trip the switches.
        let amount = if amount == UNLUCKY || amount == CURSED {
            amount + 1
        } else {
            amount
        };
        last = record(
            store,
            &(d % accounts).to_string(),
            AccountEvent::Deposited { amount },
        )
        .await;
    }
    last
}

/// The balances a clean fold of the log gives.
pub async fn folded_balances<S: EventStore>(store: &S) -> BTreeMap<String, i64> {
    let mut balances = BTreeMap::new();
    let mut after = Position::START;
    loop {
        let page = store
            .read_all(ReadAll::after(after).category("account"))
            .await
            .expect("read");
        for event in &page.events {
            if let Some(e) = event.decode_known::<AccountEvent>().expect("decodes") {
                *balances.entry(event.stream_id.id().to_owned()).or_insert(0) +=
                    change(&e).expect("fits");
            }
        }
        if page.read_through == after {
            return balances;
        }
        after = page.read_through;
    }
}

/// The balances in a read model's file.
pub fn model_balances(path: &Path) -> BTreeMap<String, i64> {
    let db = rusqlite::Connection::open(path).expect("open model");
    let mut statement = db
        .prepare("SELECT account, cents FROM balances ORDER BY account")
        .expect("prepare");
    let rows = statement
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    rows
}

/// The positions in a read model's `seen` table, in order.
pub fn model_seen(path: &Path) -> Vec<u64> {
    let db = rusqlite::Connection::open(path).expect("open model");
    let mut statement = db
        .prepare("SELECT position FROM seen ORDER BY position")
        .expect("prepare");
    let rows = statement
        .query_map([], |r| r.get::<_, i64>(0))
        .expect("query")
        .map(|p| u64::try_from(p.expect("row")).expect("positive"))
        .collect();
    rows
}

/// A fresh directory for read models, and the in-memory store.
pub fn setup() -> (tempfile::TempDir, PathBuf, InMemoryStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = dir.path().join("model.db");
    (dir, model, InMemoryStore::new())
}
