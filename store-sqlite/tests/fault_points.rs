//! A fault at every step of the writer in turn (begin, savepoint, each
//! insert, commit): each append is answered with all of its events stored,
//! and the checkpoint it tracks set, or with a typed error and neither; the
//! file stays intact, and the writer keeps serving.

use std::collections::HashSet;
use std::error::Error;

use annals_core::{
    AppendError, AppendRequest, BackendErrorKind, Checkpoint, CheckpointStore, EventId, EventStore,
    ExpectedVersion, NewEvent, Payload, Position, StreamId,
};
use annals_sqlite::{FaultPlan, SqliteStore};

fn event(n: usize) -> NewEvent {
    NewEvent::new(
        "Happened",
        1,
        Payload::from_json(format!(r#"{{"n":{n}}}"#)).expect("valid"),
    )
    .expect("valid")
}

fn stream(id: &str) -> StreamId {
    StreamId::new(id).expect("valid")
}

fn ids(request: &AppendRequest) -> Vec<EventId> {
    request.events().map(NewEvent::event_id).collect()
}

/// The checkpoint of a reaction to the event at `position`.
fn reacted_to(position: u64) -> Checkpoint {
    Checkpoint {
        position: Position(position),
        event_id: Some(EventId::new()),
        version: 1,
    }
}

/// The appends of one run: one alone, then three at once (one a conflict)
/// so that they share a group commit. Each but the last tracks a
/// checkpoint of its own.
fn workload() -> (AppendRequest, Vec<AppendRequest>) {
    let first = AppendRequest::to_stream(
        stream("a-1"),
        ExpectedVersion::NoStream,
        vec![event(0), event(1)],
    )
    .track("saga-a", reacted_to(3));
    let together = vec![
        AppendRequest::new()
            .stream(stream("b-1"), ExpectedVersion::NoStream, vec![event(2)])
            .stream(
                stream("b-2"),
                ExpectedVersion::NoStream,
                vec![event(3), event(4)],
            )
            .track("saga-b", reacted_to(5)),
        AppendRequest::to_stream(stream("a-1"), ExpectedVersion::NoStream, vec![event(5)])
            .track("saga-c", reacted_to(6)),
        AppendRequest::to_stream(stream("c-1"), ExpectedVersion::Any, vec![event(6)]),
    ];
    (first, together)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_at_any_writer_step_stores_all_or_nothing_and_the_writer_recovers(
) -> Result<(), Box<dyn Error>> {
    let mut k = 1;
    loop {
        assert!(k < 200, "the workload never ran without a fault");
        let plan = FaultPlan::fail_at_step(k);
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("faults.db");
        let store = SqliteStore::options()
            .path(&path)
            .fault_plan(plan.clone())
            .open()
            .await?;
        let (first, together) = workload();
        let mut answered = vec![(first.clone(), store.append(first).await)];
        let tasks: Vec<_> = together
            .into_iter()
            .map(|request| {
                let store = store.clone();
                tokio::spawn(async move { (request.clone(), store.append(request).await) })
            })
            .collect();
        for task in tasks {
            answered.push(task.await?);
        }
        let stored: HashSet<EventId> = annals_core::testkit::read_log(&store)
            .await?
            .iter()
            .map(|e| e.event_id)
            .collect();
        for (request, result) in &answered {
            let ids = ids(request);
            let present = ids.iter().filter(|id| stored.contains(id)).count();
            if let Some(tracking) = request.tracking() {
                let loaded = store.load_checkpoint(&tracking.name).await?;
                let due = result.is_ok().then_some(tracking.checkpoint);
                assert_eq!(
                    loaded, due,
                    "step {k}: {} is {loaded:?} after {result:?}",
                    tracking.name
                );
            }
            match result {
                Ok(_) => assert_eq!(
                    present,
                    ids.len(),
                    "step {k}: an acknowledged append is incomplete"
                ),
                Err(AppendError::Conflict { .. }) => {
                    assert_eq!(present, 0, "step {k}: a refused append wrote")
                }
                Err(AppendError::Backend(e)) => {
                    assert!(
                        matches!(
                            e.kind,
                            BackendErrorKind::Io | BackendErrorKind::OutcomeUnknown
                        ),
                        "step {k}: unexpected kind {:?}",
                        e.kind
                    );
                    assert_eq!(
                        present, 0,
                        "step {k}: a failed append wrote {present} events"
                    );
                }
                Err(e) => panic!("step {k}: unexpected error {e:?}"),
            }
        }
        // The writer keeps serving (reopening its connection if it must);
        // the fault fires once, so a second try always gets through.
        let last = AppendRequest::to_stream(stream("z-1"), ExpectedVersion::Any, vec![event(9)]);
        if store.append(last.clone()).await.is_err() {
            store.append(last).await?;
        }
        let fired = plan.steps_reached() >= k;
        store.close().await;
        let conn = rusqlite::Connection::open(&path)?;
        let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        assert_eq!(integrity, "ok", "step {k}");
        if !fired {
            println!("the workload passes {} fault points", k - 1);
            return Ok(());
        }
        k += 1;
    }
}
