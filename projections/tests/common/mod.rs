//! What the multi-process tests share: a seeded generator, the test binary
//! run again as a child process, and an SQLite store whose checkpoints
//! survive the process.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::Duration;

use annals_core::store::ReplayEvent;
use annals_core::{
    AppendError, AppendOutcome, AppendRequest, BackendError, BackendErrorKind, Checkpoint,
    CheckpointStore, EventId, EventStore, HeadWatch, Page, Position, ReadAll, ReadError,
    ReadStream, RecordedEvent, SkippedEvent, StreamId,
};
use annals_sqlite::SqliteStore;
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

/// The variable that repeats a run's random choices.
pub const SEED: &str = "ANNALS_TEST_SEED";

/// The seed from `ANNALS_TEST_SEED`, or a fresh one.
pub fn seed() -> u64 {
    std::env::var(SEED)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| u64::from(d.subsec_nanos()) | 1)
        })
}

/// A small deterministic generator (xorshift), so a failing run repeats.
pub struct Dice(u64);

impl Dice {
    pub fn new(seed: u64) -> Self {
        // Xorshift never leaves zero.
        Dice(seed | 1)
    }

    /// A number in `0..sides`.
    pub fn roll(&mut self, sides: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % sides
    }
}

/// What a child writes for its parent starts with this, so that the test
/// harness's own output (which may share the line) is told apart.
pub const SAYS: &str = "CHILD ";

/// Writes `line` for the parent, at once.
pub fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    // A parent that stopped listening has failed already; nothing to add.
    let _ = writeln!(out, "{SAYS}{line}").and_then(|()| out.flush());
}

/// The part of a child's output line meant for the parent, if any.
pub fn said(line: &str) -> Option<&str> {
    line.find(SAYS).map(|at| &line[at + SAYS.len()..])
}

/// This test binary run again as a child, running only the test `test`
/// with `envs` set (one of them tells the test it is the child), and the
/// lines it says, as they come.
pub fn spawn_child(
    test: &str,
    envs: &[(&str, String)],
) -> Result<(Child, mpsc::Receiver<String>), Box<dyn std::error::Error>> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(["--exact", test, "--nocapture", "--test-threads", "1"])
        .stdout(Stdio::piped());
    for (key, value) in envs {
        command.env(key, value);
    }
    let mut child = command.spawn()?;
    let stdout = child.stdout.take().ok_or("the child has no stdout")?;
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(said) = said(&line) {
                if lines.send(said.to_owned()).is_err() {
                    return;
                }
            }
        }
    });
    Ok((child, received))
}

/// Waits up to `timeout` for a line from the child that starts with
/// `word`; returns the rest of it. A line starting `FAILED` ends the wait
/// with an error.
pub fn expect_line(
    lines: &mpsc::Receiver<String>,
    word: &str,
    timeout: Duration,
) -> Result<String, Box<dyn std::error::Error>> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = lines
            .recv_timeout(left)
            .map_err(|e| format!("no {word} line from the child within {timeout:?}: {e}"))?;
        if let Some(failure) = line.strip_prefix("FAILED") {
            return Err(format!("the child failed:{failure}").into());
        }
        if let Some(rest) = line.strip_prefix(word) {
            return Ok(rest.trim().to_owned());
        }
    }
}

/// The lines the child says until its output ends (it exited or was
/// killed), waiting at most `timeout` for the end.
#[allow(dead_code)] // Not every test file needs it.
pub fn remaining_lines(
    lines: &mpsc::Receiver<String>,
    timeout: Duration,
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let deadline = std::time::Instant::now() + timeout;
    let mut rest = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => rest.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(rest),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(format!("the child's output did not end within {timeout:?}").into())
            }
        }
    }
}

/// An [`SqliteStore`] whose followers keep their checkpoints in an SQLite
/// file beside the store's: the store keeps no checkpoints of its own
/// yet, and an at-least-once projection needs them to outlive its process.
/// A file of its own, so that the store's file keeps one writer. Once
/// `SqliteStore` is a `CheckpointStore`, the tests use it directly.
#[derive(Clone)]
pub struct CheckpointedStore {
    events: SqliteStore,
    checkpoints: Arc<Mutex<Connection>>,
}

const CHECKPOINT_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS checkpoints (
        name TEXT PRIMARY KEY NOT NULL,
        version INTEGER NOT NULL,
        position INTEGER NOT NULL,
        event_id TEXT
    ) STRICT;
";

fn backend(doing: &'static str) -> impl Fn(rusqlite::Error) -> BackendError {
    move |e| BackendError::with_source(BackendErrorKind::Other, doing, e)
}

fn corrupt(what: &str) -> BackendError {
    BackendError::new(BackendErrorKind::Corrupt, what.to_owned())
}

fn event_id(text: &str) -> Result<EventId, BackendError> {
    text.parse::<uuid::Uuid>()
        .ok()
        .and_then(|uuid| EventId::from_uuid(uuid).ok())
        .ok_or_else(|| corrupt("an event id is not a UUID"))
}

impl CheckpointedStore {
    /// `events` with its followers' checkpoints in the file `checkpoints`
    /// (created if missing).
    pub fn new(events: SqliteStore, checkpoints: &Path) -> Result<Self, BackendError> {
        let conn = Connection::open(checkpoints).map_err(backend("opening the checkpoints"))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(backend("setting the busy timeout"))?;
        conn.execute_batch(CHECKPOINT_SCHEMA)
            .map_err(backend("creating the checkpoint tables"))?;
        Ok(CheckpointedStore {
            events,
            checkpoints: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `work` on the checkpoints' connection on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, BackendError> + Send + 'static,
    ) -> Result<T, BackendError> {
        let conn = Arc::clone(&self.checkpoints);
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            work(&mut conn)
        })
        .await
        .map_err(|e| BackendError::with_source(BackendErrorKind::Other, "a blocking thread", e))?
    }
}

#[async_trait]
impl EventStore for CheckpointedStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        self.events.append(request).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        read: ReadStream,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        self.events.read_stream(stream, read).await
    }

    async fn read_stream_for_replay(
        &self,
        stream: &StreamId,
        read: ReadStream,
    ) -> Result<Vec<ReplayEvent>, ReadError> {
        self.events.read_stream_for_replay(stream, read).await
    }

    async fn read_all(&self, read: ReadAll) -> Result<Page, ReadError> {
        self.events.read_all(read).await
    }

    async fn head(&self) -> Result<Position, ReadError> {
        self.events.head().await
    }

    fn watch_head(&self) -> HeadWatch {
        self.events.watch_head()
    }
}

#[async_trait]
impl CheckpointStore for CheckpointedStore {
    async fn load_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, BackendError> {
        let name = name.to_owned();
        self.blocking(move |conn| {
            let row = conn
                .query_row(
                    "SELECT version, position, event_id FROM checkpoints WHERE name = ?1",
                    [name],
                    |row| {
                        Ok((
                            row.get::<_, u32>(0)?,
                            row.get::<_, i64>(1)?,
                            row.get::<_, Option<String>>(2)?,
                        ))
                    },
                )
                .optional()
                .map_err(backend("reading a checkpoint"))?;
            let Some((version, position, id)) = row else {
                return Ok(None);
            };
            Ok(Some(Checkpoint {
                position: Position(
                    u64::try_from(position).map_err(|_| corrupt("a position is negative"))?,
                ),
                event_id: id.as_deref().map(event_id).transpose()?,
                version,
            }))
        })
        .await
    }

    /// Refuses to record skipped events: these tests stop a projection at
    /// its first failure, so a skip would be a failure of the test.
    async fn save_checkpoint(
        &self,
        name: &str,
        checkpoint: Checkpoint,
        skipped: &[SkippedEvent],
    ) -> Result<(), BackendError> {
        if !skipped.is_empty() {
            return Err(BackendError::new(
                BackendErrorKind::Other,
                "this test's checkpoints keep no skipped events",
            ));
        }
        let name = name.to_owned();
        self.blocking(move |conn| {
            conn.execute(
                "INSERT INTO checkpoints VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET
                     version = excluded.version,
                     position = excluded.position,
                     event_id = excluded.event_id",
                params![
                    name,
                    checkpoint.version,
                    i64::try_from(checkpoint.position.0)
                        .map_err(|_| corrupt("a position is out of range"))?,
                    checkpoint.event_id.map(|id| id.to_string())
                ],
            )
            .map_err(backend("saving a checkpoint"))?;
            Ok(())
        })
        .await
    }

    async fn skipped_events(&self, _name: &str) -> Result<Vec<SkippedEvent>, BackendError> {
        Ok(Vec::new())
    }

    async fn reset_checkpoint(&self, name: &str) -> Result<(), BackendError> {
        let name = name.to_owned();
        self.blocking(move |conn| {
            conn.execute("DELETE FROM checkpoints WHERE name = ?1", [name])
                .map_err(backend("forgetting a checkpoint"))?;
            Ok(())
        })
        .await
    }
}
