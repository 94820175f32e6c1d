//! Reads return what was appended, in the right order and range.

use std::sync::Arc;

use super::{ensure, event, events, stream, versions_are_contiguous, CaseResult, Options, Step};
use crate::store::{ReplayEvent, MAX_READ_LIMIT};
use crate::testkit::read_log;
use crate::{
    EventStore, EventStoreExt, ExpectedVersion, Metadata, NewEvent, Payload, Position, ReadAll,
    ReadStream, RecordedEvent, Timestamp,
};

fn versions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.version).collect()
}

/// Guarantee 7: payload bytes, metadata and names come back exactly.
pub(crate) async fn events_read_back_exactly_as_appended(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    let s = stream("account-1");
    // Odd spacing, escapes, every Unicode plane, big and precise numbers.
    let text = "{ \"b\" : 1.50,\n \"a\":[\"\\u00e9\\n\", \"é\", \"𝄞\", \"\u{10FFFF}\", \
                12345678901234567890123, 1e-7, -0.0, true, null], \"\": {} }";
    let mut metadata = Metadata {
        correlation_id: Some(uuid::Uuid::now_v7()),
        causation_id: Some(uuid::Uuid::now_v7()),
        tenant: Some("tenant-é".into()),
        ..Metadata::default()
    };
    metadata.fields.insert("ip".into(), "10.0.0.1".into());
    metadata
        .fields
        .insert("nested".into(), serde_json::json!({"a": [1, 2.5, "x"]}));
    let appended = NewEvent::new(
        "Deposit.Made v2",
        7,
        Payload::from_json(text).step("payload")?,
    )
    .step("event")?
    .with_metadata(metadata.clone());
    let before = Timestamp::now();
    let outcome = store
        .append_to_stream(&s, ExpectedVersion::NoStream, vec![appended.clone()])
        .await
        .step("append")?;
    let after = Timestamp::now();
    let read = store.read_stream_to_end(&s).await.step("read stream")?;
    let all = store
        .read_all(ReadAll::after(Position::START))
        .await
        .step("read all")?
        .events;
    for (how, events) in [("read_stream", &read), ("read_all", &all)] {
        ensure!(events.len() == 1, "{how} returned {} events", events.len());
        let e = &events[0];
        ensure!(e.payload.as_str() == text, "{how}: payload bytes changed");
        ensure!(
            e.metadata == metadata,
            "{how}: metadata changed: {:?}",
            e.metadata
        );
        ensure!(
            e.event_type == "Deposit.Made v2",
            "{how}: event type {:?}",
            e.event_type
        );
        ensure!(
            e.schema_version == 7,
            "{how}: schema version {}",
            e.schema_version
        );
        ensure!(e.event_id == appended.event_id(), "{how}: event id changed");
        ensure!(
            e.stream_id == s && e.version == 1,
            "{how}: stream or version changed"
        );
        ensure!(
            e == &outcome.events()[0],
            "{how}: differs from the append outcome"
        );
        // A second of slack either side for clocks of a database server.
        let slack = 1_000_000;
        ensure!(
            e.recorded_at.as_unix_micros() >= before.as_unix_micros() - slack
                && e.recorded_at.as_unix_micros() <= after.as_unix_micros() + slack,
            "{how}: recorded_at {:?} is not between {before:?} and {after:?}",
            e.recorded_at
        );
    }
    Ok(())
}

/// Guarantee 7: ids with SQL, wildcards, case and Unicode variants are
/// distinct streams, stored and read byte for byte.
pub(crate) async fn hostile_but_valid_ids_are_stored_byte_exact(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    let ids = [
        "x-'); DROP TABLE events;--",
        "acc_1-%",
        "acc%1-_",
        "Account-1",
        "account-1",
        "caf\u{e9}-1",
        "cafe\u{301}-1",
        "a-b-c",
        "\u{1F600}-\\",
    ];
    for (n, id) in ids.iter().enumerate() {
        store
            .append_to_stream(&stream(id), ExpectedVersion::NoStream, vec![event(n)])
            .await
            .step(&format!("append to {id:?}"))?;
    }
    for (n, id) in ids.iter().enumerate() {
        let read = store.read_stream_to_end(&stream(id)).await.step("read")?;
        ensure!(read.len() == 1, "{id:?} has {} events", read.len());
        ensure!(
            read[0].stream_id.as_str() == *id,
            "{id:?} came back as {:?}",
            read[0].stream_id
        );
        ensure!(
            read[0].payload.as_str() == format!("{{\"n\":{n}}}"),
            "{id:?} holds another stream's event"
        );
    }
    Ok(())
}

/// Guarantee 7: stream reads go forwards or backwards from a version, up to a limit.
pub(crate) async fn read_stream_honours_direction_start_and_limit(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    let s = stream("account-1");
    store
        .append_to_stream(&s, ExpectedVersion::NoStream, events(0..10))
        .await
        .step("seed")?;
    store
        .append_to_stream(
            &stream("account-2"),
            ExpectedVersion::NoStream,
            events(0..3),
        )
        .await
        .step("seed other")?;
    let cases: Vec<(ReadStream, Vec<u64>)> = vec![
        (ReadStream::forward(), (1..=10).collect()),
        (
            ReadStream::forward().from_version(4).limit(3),
            vec![4, 5, 6],
        ),
        (ReadStream::forward().from_version(9), vec![9, 10]),
        (ReadStream::forward().from_version(11), vec![]),
        (ReadStream::forward().from_version(0).limit(2), vec![1, 2]),
        (ReadStream::forward().limit(0), vec![]),
        (ReadStream::backward(), (1..=10).rev().collect()),
        (ReadStream::backward().limit(2), vec![10, 9]),
        (ReadStream::backward().from_version(3), vec![3, 2, 1]),
        (ReadStream::backward().from_version(50).limit(1), vec![10]),
        (ReadStream::backward().from_version(0), vec![]),
        (ReadStream::forward().from_version(u64::MAX), vec![]),
    ];
    for (read, expected) in cases {
        let got = store.read_stream(&s, read).await.step("read")?;
        ensure!(
            versions(&got) == expected,
            "{read:?} gave {:?}, expected {expected:?}",
            versions(&got)
        );
        ensure!(
            got.iter().all(|e| e.stream_id == s),
            "{read:?} returned another stream's events"
        );
    }
    let none = store
        .read_stream(&stream("account-404"), ReadStream::forward())
        .await
        .step("read missing")?;
    ensure!(none.is_empty(), "a missing stream returned events");
    Ok(())
}

/// Guarantee 7: the global log pages after a position, up to a limit.
pub(crate) async fn read_all_pages_after_a_position(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    for i in 0..5 {
        store
            .append_to_stream(
                &stream(&format!("s-{i}")),
                ExpectedVersion::Any,
                events(0..4),
            )
            .await
            .step("seed")?;
    }
    let all = read_log(&*store).await.step("read all")?;
    ensure!(all.len() == 20, "log has {} events", all.len());
    let mut paged = Vec::new();
    let mut after = Position::START;
    loop {
        let page = store
            .read_all(ReadAll::after(after).limit(7))
            .await
            .step("page")?;
        ensure!(
            page.len() <= 7,
            "page of {} events over the limit",
            page.len()
        );
        if page.is_empty() {
            break;
        }
        after = page.read_through;
        paged.extend(page);
    }
    ensure!(paged == all, "paging gave another sequence than one read");
    let head = store.head().await.step("head")?;
    let past = store
        .read_all(ReadAll::after(head))
        .await
        .step("read past head")?;
    ensure!(
        past.is_empty() && past.read_through == head,
        "reading after the head returned {} events, read through {}",
        past.len(),
        past.read_through
    );
    let far = store
        .read_all(ReadAll::after(Position(u64::MAX)))
        .await
        .step("read far past head")?;
    ensure!(far.is_empty(), "reading after u64::MAX returned events");
    let zero = store
        .read_all(ReadAll::after(Position::START).limit(0))
        .await
        .step("read limit 0")?;
    ensure!(zero.is_empty(), "limit 0 returned events");
    Ok(())
}

/// Guarantee 7: a stream longer than one page reads to its end.
pub(crate) async fn long_stream_reads_to_end_across_pages(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    let s = stream("long-1");
    let total = MAX_READ_LIMIT + 5;
    let mut appended = 0;
    while appended < total {
        let n = (total - appended).min(5_000);
        store
            .append_to_stream(&s, ExpectedVersion::Any, events(appended..appended + n))
            .await
            .step("append")?;
        appended += n;
    }
    let read = store.read_stream_to_end(&s).await.step("read")?;
    ensure!(read.len() == total, "read {} of {total} events", read.len());
    ensure!(
        versions_are_contiguous(&read),
        "versions out of order across pages"
    );
    let page = store
        .read_stream(&s, ReadStream::forward().limit(usize::MAX))
        .await
        .step("read capped")?;
    ensure!(
        page.len() == MAX_READ_LIMIT,
        "an uncapped read returned {} events",
        page.len()
    );
    Ok(())
}

/// Guarantee 7: the replay read returns the same events as the full read,
/// cut down to what replay needs, in every direction and range.
pub(crate) async fn replay_reads_match_full_reads(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    let s = stream("account-1");
    let mut typed = events(0..6);
    typed.push(
        NewEvent::new(
            "Other",
            3,
            Payload::from_json(r#"{ "x" : [1, 2] }"#).step("payload")?,
        )
        .step("event")?,
    );
    store
        .append_to_stream(&s, ExpectedVersion::NoStream, typed)
        .await
        .step("seed")?;
    store
        .append_to_stream(
            &stream("account-2"),
            ExpectedVersion::NoStream,
            events(0..2),
        )
        .await
        .step("seed other")?;
    let reads = [
        ReadStream::forward(),
        ReadStream::forward().from_version(3).limit(2),
        ReadStream::backward(),
        ReadStream::backward().from_version(4).limit(3),
        ReadStream::forward().limit(0),
    ];
    for read in reads {
        let full: Vec<ReplayEvent> = store
            .read_stream(&s, read)
            .await
            .step("read")?
            .into_iter()
            .map(ReplayEvent::from)
            .collect();
        let replay = store
            .read_stream_for_replay(&s, read)
            .await
            .step("replay read")?;
        ensure!(
            replay == full,
            "{read:?}: the replay read differs from the full read"
        );
    }
    let none = store
        .read_stream_for_replay(&stream("account-404"), ReadStream::forward())
        .await
        .step("replay read of a missing stream")?;
    ensure!(none.is_empty(), "a missing stream returned events");
    Ok(())
}
