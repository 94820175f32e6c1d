//! Two processes append to one file at once, each with several tasks, to
//! shared and private streams: afterwards versions and positions have no
//! gaps, every acknowledged append is stored once, and every conflict was
//! real.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use annals_core::{
    AppendError, EventId, EventStoreExt, ExpectedVersion, NewEvent, Payload, RecordedEvent,
    StreamId,
};
use annals_sqlite::SqliteStore;

const CHILD: &str = "ANNALS_TWO_PROCESSES_CHILD";
const TASKS: usize = 4;
const APPENDS_PER_TASK: usize = 40;

/// Appends from `TASKS` tasks of this process; returns the ids of the
/// acknowledged events. Panics if a conflict was not real.
async fn append_from_tasks(store: SqliteStore, process: usize) -> Vec<EventId> {
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for n in 0..APPENDS_PER_TASK {
                // Every other append goes to a stream shared by everyone.
                let stream = if n % 2 == 0 {
                    StreamId::new(format!("shared-{}", n % 3)).expect("valid")
                } else {
                    StreamId::new(format!("private-p{process}t{task}")).expect("valid")
                };
                loop {
                    let version = store.stream_version(&stream).await.expect("version");
                    let payload =
                        Payload::from_json(format!(r#"{{"p":{process},"t":{task},"n":{n}}}"#))
                            .expect("valid");
                    let event = NewEvent::new("Appended", 1, payload).expect("valid");
                    let id = event.event_id();
                    let expected = ExpectedVersion::Exact(version.unwrap_or(0));
                    match store.append_to_stream(&stream, expected, vec![event]).await {
                        Ok(_) => {
                            acked.push(id);
                            break;
                        }
                        Err(AppendError::Conflict { actual, .. }) => {
                            assert_ne!(
                                annals_core::ActualVersion::from(version),
                                actual,
                                "a conflict reported the version that was expected"
                            );
                        }
                        Err(e) => panic!("append failed: {e}"),
                    }
                }
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.expect("task"));
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_appending_at_once_lose_nothing_and_leave_no_gaps(
) -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(path) = std::env::var(CHILD) {
        let store = SqliteStore::open(&path).await?;
        let acked = append_from_tasks(store, 1).await;
        let mut out = std::io::stdout().lock();
        for id in acked {
            writeln!(out, "ACK {id}")?;
        }
        out.flush()?;
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("shared.db");
    // Create the file first so both processes open an existing database.
    let store = SqliteStore::open(&path).await?;
    let child = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "two_processes_appending_at_once_lose_nothing_and_leave_no_gaps",
            "--nocapture",
        ])
        .env(CHILD, &path)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut acked: HashSet<EventId> = append_from_tasks(store.clone(), 0)
        .await
        .into_iter()
        .collect();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await??;
    assert!(output.status.success(), "the child process failed");
    for line in BufReader::new(&output.stdout[..]).lines() {
        let line = line?;
        // The test harness may print on the same line before the first ACK.
        if let Some(at) = line.find("ACK ") {
            acked.insert(EventId::from_uuid(line[at + 4..].parse()?)?);
        }
    }
    assert_eq!(
        acked.len(),
        2 * TASKS * APPENDS_PER_TASK,
        "some appends were not acknowledged"
    );

    let events: Vec<RecordedEvent> = annals_core::testkit::read_log(&store).await?;
    assert_eq!(
        events.len(),
        acked.len(),
        "the log holds other events than were acknowledged"
    );
    let stored: HashSet<EventId> = events.iter().map(|e| e.event_id).collect();
    assert_eq!(stored, acked, "acknowledged events are missing");
    annals_core::testkit::assert_no_gaps(&events, "after two processes appended");
    Ok(())
}
