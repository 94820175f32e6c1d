//! What the PostgreSQL store's tests share: raw connections to the test
//! server, child processes that re-run the test binary, and a follower of
//! the log that records everything it is given.

// Each test binary uses a part of this module.
#![allow(dead_code)]

pub mod proxy;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use annals_core::{EventId, EventStore, Position, ReadAll, RecordedEvent};
use annals_postgres::tokio_postgres::{self, Client, NoTls};
use annals_postgres::PostgresStore;
use tokio::sync::watch;

/// What a test returns: any error fails it, with its message.
pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// How long a test waits for something that should take well under a
/// second before it declares a hang; generous, for a loaded 2-core machine.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A raw connection to the test server, outside any store: to hold locks,
/// terminate backends, create triggers and look behind the store's back.
pub async fn raw(url: &str) -> TestResult<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        // Its errors come back to the client's calls.
        let _ = connection.await;
    });
    Ok(client)
}

/// The backend process ids of the connections with `application_name`
/// whose current or last statement names `schema`.
pub async fn backends_of(client: &Client, application: &str, schema: &str) -> TestResult<Vec<i32>> {
    let rows = client
        .query(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 \
             AND strpos(query, $2) > 0 AND pid <> pg_backend_pid()",
            &[&application, &schema],
        )
        .await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Waits (boundedly) until a backend of `application` that names `schema`
/// shows up, and terminates it; returns its process id.
pub async fn terminate_backend_of(
    client: &Client,
    application: &str,
    schema: &str,
) -> TestResult<i32> {
    let started = Instant::now();
    loop {
        if let Some(&pid) = backends_of(client, application, schema).await?.first() {
            let row = client
                .query_one("SELECT pg_terminate_backend($1)", &[&pid])
                .await?;
            if row.get::<_, bool>(0) {
                // Gone before returning, so that a later call finds only
                // the connection opened in its place.
                eventually(&format!("backend {pid} has exited"), || async move {
                    let rows = client
                        .query("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&pid])
                        .await?;
                    Ok(rows.is_empty())
                })
                .await?;
                return Ok(pid);
            }
        }
        if started.elapsed() > PATIENCE {
            return Err(format!("no {application} connection on schema {schema} showed up").into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits, boundedly, until `condition` holds.
pub async fn eventually<F, Fut>(what: &str, mut condition: F) -> TestResult
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = TestResult<bool>>,
{
    let started = Instant::now();
    while !condition().await? {
        if started.elapsed() > PATIENCE {
            return Err(format!("gave up waiting until {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// This test binary run again as a child that runs only `test`, with
/// `role` set in its environment to `value`; stdin and stdout are piped.
pub fn spawn_child(
    test: &str,
    role: &str,
    value: &str,
    envs: &[(&str, String)],
) -> TestResult<Child> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(role, value)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    for (name, value) in envs {
        command.env(name, value);
    }
    Ok(command.spawn()?)
}

/// The lines a child prints that start with `ACK `, without the marker,
/// collected by a thread as they come.
pub struct Acks {
    lines: Arc<Mutex<Vec<String>>>,
    reader: std::thread::JoinHandle<()>,
}

impl Acks {
    /// Starts collecting the acknowledgements `child` prints.
    pub fn collect(child: &mut Child) -> TestResult<Acks> {
        let stdout = child.stdout.take().ok_or("the child has no stdout")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let collected = Arc::clone(&lines);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // The test harness may print on the same line before the first ACK.
                if let Some(at) = line.find("ACK ") {
                    if let Ok(mut lines) = collected.lock() {
                        lines.push(line[at + 4..].to_owned());
                    }
                }
            }
        });
        Ok(Acks { lines, reader })
    }

    /// Whether the child has acknowledged anything yet.
    pub fn any(&self) -> bool {
        self.lines.lock().is_ok_and(|lines| !lines.is_empty())
    }

    /// Every line, once the child's stdout has closed.
    pub fn finish(self) -> TestResult<Vec<String>> {
        self.reader.join().map_err(|_| "an ACK reader panicked")?;
        let lines = self.lines.lock().map_err(|_| "the ACK list lock")?;
        Ok(lines.clone())
    }
}

/// Waits, boundedly, until every writer has acknowledged an append; fails
/// at once, with its exit status, if one exits first.
pub async fn first_acks(writers: &mut [(Child, Acks)]) -> TestResult {
    let started = Instant::now();
    while !writers.iter().all(|(_, acks)| acks.any()) {
        for (child, _) in writers.iter_mut() {
            if let Some(status) = child.try_wait()? {
                return Err(format!("a writer process exited before appending: {status}").into());
            }
        }
        if started.elapsed() > PATIENCE {
            return Err("a writer process acknowledged nothing".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Prints one acknowledgement line for the parent and flushes it.
pub fn print_ack(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ACK {line}")
        .and_then(|()| out.flush())
        .expect("a child can write to its parent");
}

/// Reads stdin until it ends (the parent closed it or died): a child's
/// signal to stop.
pub fn stdin_closed() -> watch::Receiver<bool> {
    let (closed, receiver) = watch::channel(false);
    std::thread::spawn(move || {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {
            sink.clear();
        }
        closed.send_replace(true);
    });
    receiver
}

/// How a follower waits when it has read everything there is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// Reads again after a short pause.
    Polls,
    /// Waits on the store's head watch.
    Watches,
}

/// Follows the log from the start in pages of `page` events, as a
/// projection does, until it has read through `until` (set once the
/// writers are done). Returns every event it was given, in order, or the
/// first broken promise: an event at or below one already given, or a
/// page that read through less than it had before.
pub async fn follow(
    store: PostgresStore,
    page: usize,
    waiting: Waiting,
    mut until: watch::Receiver<Option<Position>>,
) -> Result<Vec<RecordedEvent>, String> {
    let mut head = store.watch_head();
    let mut seen: Vec<RecordedEvent> = Vec::new();
    let mut after = Position::START;
    loop {
        let read = store
            .read_all(ReadAll::after(after).limit(page))
            .await
            .map_err(|e| format!("a follower's read after {after} failed: {e}"))?;
        let full = read.len() == page;
        if read.read_through < after {
            return Err(format!(
                "a page after {after} read through only {}",
                read.read_through
            ));
        }
        let mut reached = after;
        for event in read.events {
            if event.position <= reached {
                return Err(format!(
                    "event at {} given after the follower had reached {reached}",
                    event.position
                ));
            }
            reached = event.position;
            seen.push(event);
        }
        after = read.read_through;
        if full {
            continue;
        }
        if until.borrow().is_some_and(|end| after >= end) {
            return Ok(seen);
        }
        match waiting {
            Waiting::Polls => tokio::time::sleep(Duration::from_millis(15)).await,
            Waiting::Watches => {
                // The poll interval bounds the wait; the deadline only ends
                // the wait for the end signal.
                tokio::select! {
                    woke = tokio::time::timeout(PATIENCE, head.wait_past(after)) => {
                        match woke {
                            Ok(Ok(_)) => {}
                            Ok(Err(closed)) => return Err(format!("the head watch ended: {closed}")),
                            Err(_) => return Err(format!("the head watch never passed {after}")),
                        }
                    }
                    _ = until.changed() => {}
                }
            }
        }
    }
}

/// Checks what a follower was given against the whole log: every event
/// exactly once, in position order.
pub fn assert_saw_the_whole_log(name: &str, seen: &[RecordedEvent], log: &[RecordedEvent]) {
    let seen_ids: Vec<(Position, EventId)> =
        seen.iter().map(|e| (e.position, e.event_id)).collect();
    let log_ids: Vec<(Position, EventId)> = log.iter().map(|e| (e.position, e.event_id)).collect();
    if seen_ids != log_ids {
        let missing: Vec<Position> = log_ids
            .iter()
            .filter(|e| !seen_ids.contains(e))
            .map(|e| e.0)
            .take(10)
            .collect();
        panic!(
            "{name} was given {} events where the log holds {}; first missing positions: {missing:?}",
            seen_ids.len(),
            log_ids.len()
        );
    }
}
