//! The peer figures beside `annals-bench --store postgres`: postgres-es
//! (the PostgreSQL store of cqrs-es) running the same workloads on the same
//! server, printed with a `peer_` prefix.
//!
//! ```text
//! cargo run --release --manifest-path bench/peer/Cargo.toml -- \
//!     append-seq|append-concurrent|load [--pg-url URL]
//! ```
//!
//! The server is `--pg-url`, else `ANNALS_PG_URL`, else
//! `postgres://postgres@127.0.0.1:5432/test`. Each run makes a fresh schema
//! holding postgres-es's own tables (`events`, `snapshots`, as its
//! `db/init.sql` makes them), reaches it through `search_path`, and drops
//! it at the end. The bank account and its commands are the bench's own;
//! each command goes through `CqrsFramework::execute_with_metadata` with a
//! correlation and a causation id, as the bench's commands carry them.
//! cqrs-es loads the aggregate from its events for every command (it has no
//! cache) and commits each command in a transaction of its own.
//!
//! `scan` and `rebuild` have no peer: postgres-es has no global log (its
//! events have no position, and `stream_all_events` reads one aggregate
//! type ordered by sequence, with nowhere to resume from), so there is no
//! page to read or checkpoint to keep.

#[allow(dead_code)]
#[path = "../../src/model.rs"]
mod model;
#[allow(dead_code)]
#[path = "../../src/report.rs"]
mod report;
#[allow(dead_code)]
#[path = "../../src/shape.rs"]
mod shape;
#[allow(dead_code)]
#[path = "../../src/sizes.rs"]
mod sizes;

use std::collections::HashMap;
use std::error::Error;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{PersistedEventRepository, PersistedEventStore, SerializedEvent};
use cqrs_es::EventStore;
use postgres_es::{PostgresCqrs, PostgresEventRepository};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use model::{account_event, command, Account, BankCommand, BankEvent, Refused};
use report::Report;
use shape::Shape;
use sizes::{
    commands_per_task, ACCOUNTS, ACCOUNTS_PER_TASK, APPEND_SEQ_COMMANDS, LOADS, LOAD_EVENTS,
    LOAD_STREAMS, TASKS,
};

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

impl cqrs_es::DomainEvent for BankEvent {
    fn event_type(&self) -> String {
        annals::DomainEvent::event_type(self).to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

impl cqrs_es::Aggregate for Account {
    const TYPE: &'static str = "account";
    type Command = BankCommand;
    type Event = BankEvent;
    type Error = Refused;
    type Services = ();

    async fn handle(
        &mut self,
        command: BankCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), Refused> {
        for event in annals::Aggregate::handle(self, command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: BankEvent) {
        self.fold(&event);
    }
}

/// The correlation and causation ids of one command.
fn metadata() -> HashMap<String, String> {
    HashMap::from([
        (
            "correlation_id".to_owned(),
            uuid::Uuid::now_v7().to_string(),
        ),
        ("causation_id".to_owned(), uuid::Uuid::now_v7().to_string()),
    ])
}

/// A pool on `url` whose connections find postgres-es's tables in
/// `schema`, with postgres-es's default size (10).
async fn pool(url: &str, schema: &str) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?.options([("search_path", schema)]);
    PgPoolOptions::new()
        .max_connections(10)
        .connect_with(options)
        .await
}

/// `append-seq`: the bench's commands one at a time over 1,000 accounts.
async fn append_seq(pool: PgPool, report: &Report) -> Result<(), Box<dyn Error>> {
    let commands = APPEND_SEQ_COMMANDS;
    let accounts = commands.min(ACCOUNTS);
    let cqrs: PostgresCqrs<Account> = postgres_es::postgres_cqrs(pool, vec![], ());
    let start = Instant::now();
    for n in 0..commands {
        let (id, command) = command(n, accounts, Shape::Realistic);
        cqrs.execute_with_metadata(&id, command, metadata()).await?;
    }
    let took = start.elapsed();
    report.size("commands", commands);
    report.size("accounts", accounts);
    report.figure(
        "peer_append_seq",
        report::per_second(commands, took),
        "events/s",
    );
    Ok(())
}

/// `append-concurrent`: 64 tasks, each issuing commands to its own 10
/// accounts, through one framework and its pool.
async fn append_concurrent(pool: PgPool, report: &Report) -> Result<(), Box<dyn Error>> {
    let per_task = commands_per_task(None);
    let total = per_task * TASKS;
    let cqrs: Arc<PostgresCqrs<Account>> = Arc::new(postgres_es::postgres_cqrs(pool, vec![], ()));
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let cqrs = Arc::clone(&cqrs);
            tokio::spawn(async move {
                for n in 0..per_task {
                    let (id, command) = command(n, ACCOUNTS_PER_TASK, Shape::Realistic);
                    cqrs.execute_with_metadata(&format!("{task}.{id}"), command, metadata())
                        .await?;
                }
                Ok::<_, cqrs_es::AggregateError<Refused>>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let took = start.elapsed();
    report.size("tasks", TASKS);
    report.size("commands", total);
    report.figure(
        "peer_append_concurrent",
        report::per_second(total, took),
        "events/s",
    );
    Ok(())
}

/// `load`: 20 accounts of 1,000 events each, written through the
/// repository in one commit each, then loaded 5 times over.
async fn load(pool: PgPool, report: &Report) -> Result<(), Box<dyn Error>> {
    let repository = PostgresEventRepository::new(pool.clone());
    for s in 0..LOAD_STREAMS {
        let events: Vec<SerializedEvent> = (0..LOAD_EVENTS)
            .map(|n| {
                let event = account_event(Shape::Realistic, s, n);
                Ok(SerializedEvent::new(
                    s.to_string(),
                    n + 1,
                    "account".to_owned(),
                    cqrs_es::DomainEvent::event_type(&event),
                    cqrs_es::DomainEvent::event_version(&event),
                    serde_json::to_value(&event)?,
                    serde_json::to_value(metadata())?,
                ))
            })
            .collect::<Result<_, serde_json::Error>>()?;
        repository.persist::<Account>(&events, None).await?;
    }
    let store: PersistedEventStore<PostgresEventRepository, Account> =
        PersistedEventStore::new_event_store(PostgresEventRepository::new(pool));
    let mut took = Duration::ZERO;
    for _ in 0..LOADS {
        for s in 0..LOAD_STREAMS {
            let start = Instant::now();
            let mut context = store.load_aggregate(&s.to_string()).await?;
            took += start.elapsed();
            let account = cqrs_es::AggregateContext::aggregate(&mut context);
            if account.deposits != u64::try_from(LOAD_EVENTS - 1)? {
                return Err(format!("account {s} loaded {} deposits", account.deposits).into());
            }
        }
    }
    report.size("streams", LOAD_STREAMS);
    report.size("events_per_stream", LOAD_EVENTS);
    report.figure(
        "peer_load",
        report::per_second(LOADS * LOAD_STREAMS * LOAD_EVENTS, took),
        "events/s",
    );
    Ok(())
}

async fn run(scenario: &str, url: &str) -> Result<(), Box<dyn Error>> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_micros();
    let schema = format!("annals_bench_{}_{stamp}_peer", std::process::id());
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(PgConnectOptions::from_str(url)?)
        .await?;
    sqlx::raw_sql(&include_str!("postgres_es.sql").replace("__SCHEMA__", &schema))
        .execute(&admin)
        .await?;
    let result = async {
        let pool = pool(url, &schema).await?;
        let report = Report::new("_pg", true);
        let result = match scenario {
            "append-seq" => append_seq(pool.clone(), &report).await,
            "append-concurrent" => append_concurrent(pool.clone(), &report).await,
            "load" => load(pool.clone(), &report).await,
            other => {
                Err(format!("{other} has no peer: append-seq, append-concurrent or load").into())
            }
        };
        pool.close().await;
        result
    }
    .await;
    let dropped = sqlx::raw_sql(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await;
    result?;
    dropped?;
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (scenario, url) = match args.as_slice() {
        [scenario] => (
            scenario.clone(),
            std::env::var("ANNALS_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned()),
        ),
        [scenario, flag, url] if flag == "--pg-url" => (scenario.clone(), url.clone()),
        _ => {
            eprintln!("usage: postgres_es append-seq|append-concurrent|load [--pg-url URL]");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start a runtime: {e}");
            std::process::exit(1);
        }
    };
    println!("scenario: {scenario}");
    println!("shape: realistic");
    println!("store: postgres");
    println!("peer: postgres-es 0.5");
    if let Err(e) = runtime.block_on(run(&scenario, &url)) {
        eprintln!("{scenario} failed: {e}");
        std::process::exit(1);
    }
}
