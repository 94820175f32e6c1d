//! Two stores on one schema (two writers, as two processes would have)
//! race read-modify-write appends on the same streams: every success is
//! stored once, every conflict is true of the log as it was, and no
//! increment is lost. Their statements often read a log that the other
//! writer moves before they lock it; that must never show.
use std::collections::HashMap;

use annals_core::prelude::*;
use annals_core::{AppendError, ExpectedVersion, NewEvent, Payload, StreamId};
use annals_postgres::testing::{url_or_skip, Schemas};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const STREAMS: usize = 3;
const TASKS_PER_STORE: usize = 4;
const SUCCESSES_PER_TASK: usize = 25;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_on_two_stores_lose_no_increment_and_report_true_conflicts() -> TestResult {
    let Some(url) = url_or_skip("racing_writers_on_two_stores") else {
        return Ok(());
    };
    let schemas = Schemas::new(url, "two_writers");
    let options = schemas.options();
    let first = schemas.open(options.clone()).await?;
    let second = schemas.open(options).await?;
    let mut tasks = Vec::new();
    for (s, store) in [first.clone(), second.clone()].into_iter().enumerate() {
        for t in 0..TASKS_PER_STORE {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut conflicts = 0usize;
                let mut done = 0usize;
                let mut n = 0usize;
                while done < SUCCESSES_PER_TASK {
                    n += 1;
                    let stream = StreamId::new(format!("counter-{}", (s + t + n) % STREAMS))?;
                    let version = store.stream_version(&stream).await?;
                    let expected = match version {
                        None => ExpectedVersion::NoStream,
                        Some(v) => ExpectedVersion::Exact(v),
                    };
                    let event = NewEvent::new(
                        "Incremented",
                        1,
                        Payload::from_json(format!(r#"{{"by":"{s}.{t}","n":{n}}}"#))?,
                    )?;
                    match store.append_to_stream(&stream, expected, vec![event]).await {
                        Ok(outcome) => {
                            let stored = outcome.events()[0].version;
                            assert_eq!(
                                stored,
                                version.unwrap_or(0) + 1,
                                "appended at a skipped version"
                            );
                            done += 1;
                        }
                        Err(AppendError::Conflict { actual, .. }) => {
                            // The stream had moved past what was read.
                            let actual = match actual {
                                annals_core::ActualVersion::At(v) => Some(v),
                                _ => None,
                            };
                            assert!(
                                actual > version,
                                "a conflict at {actual:?} for an expectation of {version:?}"
                            );
                            conflicts += 1;
                        }
                        Err(other) => return Err(other.into()),
                    }
                }
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(conflicts)
            }));
        }
    }
    let mut conflicts = 0;
    for task in tasks {
        conflicts += task.await??;
    }
    let log = annals_core::testkit::read_log(&first).await?;
    annals_core::testkit::assert_no_gaps(&log, "two writers");
    assert_eq!(
        log.len(),
        2 * TASKS_PER_STORE * SUCCESSES_PER_TASK,
        "an increment was lost or doubled"
    );
    let mut versions: HashMap<String, u64> = HashMap::new();
    for event in &log {
        let last = versions
            .entry(event.stream_id.as_str().to_owned())
            .or_default();
        assert_eq!(
            event.version,
            *last + 1,
            "{} skips a version",
            event.stream_id
        );
        *last = event.version;
    }
    eprintln!("{} appends, {conflicts} conflicts", log.len());
    schemas.drop_all().await;
    Ok(())
}

/// Retries of committed appends (which the writer decides in a transaction
/// of several statements) mixed with new appends (one statement each, in
/// the same groups): every new append is stored once, and every retry gets
/// its original result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_mixed_with_new_appends_each_commit_once_with_their_original_result() -> TestResult
{
    let Some(url) = url_or_skip("retries_mixed_with_new_appends") else {
        return Ok(());
    };
    let schemas = Schemas::new(url, "mixed_retries");
    let store = schemas.store().await?;
    let event = |i: usize| -> Result<NewEvent, Box<dyn std::error::Error + Send + Sync>> {
        Ok(NewEvent::new(
            "Noted",
            1,
            Payload::from_json(format!(r#"{{"i":{i}}}"#))?,
        )?)
    };
    // Committed first: the appends that will be retried.
    let mut first = Vec::new();
    for i in 0..32 {
        let request = annals_core::AppendRequest::to_stream(
            StreamId::new(format!("old-{i}"))?,
            ExpectedVersion::NoStream,
            vec![event(i)?],
        );
        let outcome = store.append(request.clone()).await?;
        first.push((request, outcome));
    }
    let mut tasks = Vec::new();
    for (i, (request, original)) in first.into_iter().enumerate() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..5 {
                let again = store.append(request.clone()).await?;
                assert_eq!(again, original, "a retry got another result");
                let fresh = annals_core::AppendRequest::to_stream(
                    StreamId::new(format!("new-{i}"))?,
                    ExpectedVersion::Any,
                    vec![event(1000 * i + round)?],
                );
                store.append(fresh).await?;
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let log = annals_core::testkit::read_log(&store).await?;
    annals_core::testkit::assert_no_gaps(&log, "mixed retries");
    assert_eq!(
        log.len(),
        32 + 32 * 5,
        "a retry wrote again or a new append was lost"
    );
    schemas.drop_all().await;
    Ok(())
}
