//! Idempotent retries and input the store refuses before writing.

use std::sync::Arc;

use super::{ensure, event, events, stream, CaseResult, Options, Step};
use crate::{
    AppendError, AppendRequest, EventStore, EventStoreExt, ExpectedVersion, Metadata, NewEvent,
    Payload, Position,
};

/// Guarantee 5: the same append sent again returns the original result.
pub(crate) async fn retry_of_committed_append_returns_original_result(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    let s = stream("account-1");
    let batch = events(0..3);
    let first = store
        .append_to_stream(&s, ExpectedVersion::NoStream, batch.clone())
        .await
        .step("first append")?;
    let head = store.head().await.step("head")?;
    let again = store
        .append_to_stream(&s, ExpectedVersion::NoStream, batch)
        .await
        .step("retry")?;
    ensure!(
        again == first,
        "retry returned {again:?}, original was {first:?}"
    );
    let after = store.head().await.step("head")?;
    ensure!(
        after == head,
        "retry wrote: head moved from {head} to {after}"
    );
    Ok(())
}

/// Guarantee 5: a retry after a lost reply, once the stream moved on, still
/// returns the original result rather than a conflict.
pub(crate) async fn retry_after_the_stream_moved_on_returns_original_result(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    let s = stream("account-1");
    let a = stream("account-2");
    let batch = vec![event(0)];
    let request = AppendRequest::new()
        .stream(s.clone(), ExpectedVersion::Exact(0), batch)
        .stream(a.clone(), ExpectedVersion::Any, events(1..3));
    let first = store.append(request.clone()).await.step("first append")?;
    store
        .append_to_stream(&s, ExpectedVersion::Exact(1), events(5..7))
        .await
        .step("later append")?;
    let again = store.append(request).await.step("retry")?;
    ensure!(
        again == first,
        "retry returned {again:?}, original was {first:?}"
    );
    let len = store.read_stream_to_end(&s).await.step("read")?.len();
    ensure!(len == 3, "stream has {len} events, expected 3");
    Ok(())
}

/// Guarantee 5: an append some of whose ids are stored is refused.
pub(crate) async fn partial_overlap_fails_with_partial_duplicate(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    let s = stream("account-1");
    let stored = events(0..2);
    store
        .append_to_stream(&s, ExpectedVersion::NoStream, stored.clone())
        .await
        .step("seed")?;
    let head = store.head().await.step("head")?;
    let overlapping = vec![stored[1].clone(), event(9)];
    let result = store
        .append_to_stream(&s, ExpectedVersion::Any, overlapping)
        .await;
    match result {
        Err(AppendError::PartialDuplicate {
            already_stored,
            total,
        }) => ensure!(
            already_stored == [stored[1].event_id()] && total == 2,
            "reported {already_stored:?} of {total}"
        ),
        other => return Err(format!("expected PartialDuplicate, got {other:?}")),
    }
    let after = store.head().await.step("head")?;
    ensure!(
        after == head,
        "refused append wrote: head {head} -> {after}"
    );
    Ok(())
}

/// Guarantee 5: an id stored with other content is not a retry.
pub(crate) async fn reused_id_with_other_content_fails_with_event_id_reused(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    let s = stream("account-1");
    let original = event(0);
    store
        .append_to_stream(&s, ExpectedVersion::NoStream, vec![original.clone()])
        .await
        .step("seed")?;
    let payload = Payload::from_json(r#"{"n":1}"#).step("payload")?;
    let changed = NewEvent::new("Happened", 1, payload)
        .step("event")?
        .with_id(original.event_id());
    let result = store
        .append_to_stream(&s, ExpectedVersion::NoStream, vec![changed])
        .await;
    match result {
        Err(AppendError::EventIdReused { event_id }) => ensure!(
            event_id == original.event_id(),
            "named {event_id}, expected {}",
            original.event_id()
        ),
        other => return Err(format!("expected EventIdReused, got {other:?}")),
    }
    let stored = store.read_stream_to_end(&s).await.step("read")?;
    ensure!(
        stored.len() == 1 && stored[0].payload.as_str() == r#"{"n":0}"#,
        "the stored event changed"
    );
    Ok(())
}

/// Guarantee 5: an id stored in another stream is not a retry.
pub(crate) async fn reused_id_in_another_stream_fails_with_event_id_reused(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    let original = event(0);
    store
        .append_to_stream(
            &stream("account-1"),
            ExpectedVersion::Any,
            vec![original.clone()],
        )
        .await
        .step("seed")?;
    let result = store
        .append_to_stream(
            &stream("account-2"),
            ExpectedVersion::Any,
            vec![original.clone()],
        )
        .await;
    ensure!(
        matches!(result, Err(AppendError::EventIdReused { event_id }) if event_id == original.event_id()),
        "expected EventIdReused, got {result:?}"
    );
    Ok(())
}

/// Guarantee 6: an empty append, or a stream without events, is refused.
pub(crate) async fn empty_append_fails_with_empty(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    let s = stream("account-1");
    let result = store
        .append_to_stream(&s, ExpectedVersion::Any, Vec::new())
        .await;
    ensure!(
        matches!(result, Err(AppendError::Empty { stream: None })),
        "expected Empty, got {result:?}"
    );
    let result = store.append(AppendRequest::new()).await;
    ensure!(
        matches!(result, Err(AppendError::Empty { stream: None })),
        "expected Empty for a request without streams, got {result:?}"
    );
    let other = stream("account-2");
    let result = store
        .append(
            AppendRequest::new()
                .stream(s.clone(), ExpectedVersion::Any, vec![event(0)])
                .stream(other.clone(), ExpectedVersion::Any, Vec::new()),
        )
        .await;
    ensure!(
        matches!(&result, Err(AppendError::Empty { stream: Some(x) }) if *x == other),
        "expected Empty naming {other}, got {result:?}"
    );
    ensure!(
        store.head().await.step("head")? == Position::START,
        "a refused append wrote"
    );
    Ok(())
}

/// Guarantee 6: one id twice in one append is refused.
pub(crate) async fn duplicate_id_in_one_append_fails_with_duplicate_event_id(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    let e = event(0);
    let result = store
        .append_to_stream(
            &stream("account-1"),
            ExpectedVersion::Any,
            vec![e.clone(), e.clone()],
        )
        .await;
    ensure!(
        matches!(result, Err(AppendError::DuplicateEventId { event_id }) if event_id == e.event_id()),
        "expected DuplicateEventId, got {result:?}"
    );
    ensure!(
        store.head().await.step("head")? == Position::START,
        "a refused append wrote"
    );
    Ok(())
}

/// Guarantee 6: one stream twice in one append is refused.
pub(crate) async fn stream_named_twice_fails_with_duplicate_stream(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    let s = stream("account-1");
    let result = store
        .append(
            AppendRequest::new()
                .stream(s.clone(), ExpectedVersion::Any, vec![event(0)])
                .stream(s.clone(), ExpectedVersion::Any, vec![event(1)]),
        )
        .await;
    ensure!(
        matches!(&result, Err(AppendError::DuplicateStream { stream }) if *stream == s),
        "expected DuplicateStream, got {result:?}"
    );
    ensure!(
        store.head().await.step("head")? == Position::START,
        "a refused append wrote"
    );
    Ok(())
}

/// Guarantee 6: a payload over the default limit (1 MiB) is refused.
pub(crate) async fn oversized_payload_fails_with_payload_too_large(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    let text = format!("\"{}\"", "x".repeat(1024 * 1024));
    let big = NewEvent::new("Big", 1, Payload::from_json(text).step("payload")?).step("event")?;
    let id = big.event_id();
    let result = store
        .append_to_stream(
            &stream("account-1"),
            ExpectedVersion::Any,
            vec![event(0), big],
        )
        .await;
    ensure!(
        matches!(result, Err(AppendError::PayloadTooLarge { event_id, size, max })
            if event_id == id && size == 1024 * 1024 + 2 && max == 1024 * 1024),
        "expected PayloadTooLarge, got {result:?}"
    );
    ensure!(
        store.head().await.step("head")? == Position::START,
        "a refused append wrote"
    );
    Ok(())
}

/// Guarantee 6: more events than the default limit (10,000) are refused.
pub(crate) async fn oversized_append_fails_with_too_many_events(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    let result = store
        .append_to_stream(
            &stream("account-1"),
            ExpectedVersion::Any,
            events(0..10_001),
        )
        .await;
    ensure!(
        matches!(
            result,
            Err(AppendError::TooManyEvents {
                count: 10_001,
                max: 10_000
            })
        ),
        "expected TooManyEvents, got {result:?}"
    );
    ensure!(
        store.head().await.step("head")? == Position::START,
        "a refused append wrote"
    );
    Ok(())
}

/// Guarantee 6: metadata the payload rules refuse is refused.
pub(crate) async fn invalid_metadata_fails_with_invalid_metadata(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    let mut metadata = Metadata::default();
    metadata.fields.insert("note".into(), "a\0b".into());
    let bad = event(0).with_metadata(metadata);
    let id = bad.event_id();
    let result = store
        .append_to_stream(&stream("account-1"), ExpectedVersion::Any, vec![bad])
        .await;
    ensure!(
        matches!(result, Err(AppendError::InvalidMetadata { event_id, .. }) if event_id == id),
        "expected InvalidMetadata, got {result:?}"
    );
    let tenant = Metadata {
        tenant: Some("acme\n".into()),
        ..Metadata::default()
    };
    let result = store
        .append_to_stream(
            &stream("account-1"),
            ExpectedVersion::Any,
            vec![event(1).with_metadata(tenant)],
        )
        .await;
    ensure!(
        matches!(result, Err(AppendError::InvalidMetadata { .. })),
        "expected InvalidMetadata for a bad tenant, got {result:?}"
    );
    ensure!(
        store.head().await.step("head")? == Position::START,
        "a refused append wrote"
    );
    Ok(())
}
