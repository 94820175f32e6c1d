//! Everything the power-loss tests do through the annals API, in one place:
//! when the store's API changes, this file changes and the checks do not.
//! The checks see plain [`Stored`] rows.

use std::path::Path;
use std::time::Duration;

use annals_core::{
    AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent, Payload, RecordedEvent,
    StreamId,
};
use annals_sqlite::{Durability, SqliteStore};

/// Errors from the store, boxed: the checks only report them.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// One stored event, as the checks see it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub position: u64,
    pub stream: String,
    pub version: u64,
    pub batch: String,
    pub index: u64,
    pub count: u64,
    pub payload: String,
}

/// One append: events `index` of batch `id`, spread over one or more
/// streams, each part expecting its stream at a version (0: no stream yet).
#[derive(Debug, Clone)]
pub struct Batch {
    pub id: String,
    pub count: u64,
    pub parts: Vec<Part>,
}

/// The events of a batch that go to one stream.
#[derive(Debug, Clone)]
pub struct Part {
    pub stream: String,
    pub expected: u64,
    /// `(index in the batch, payload)`.
    pub events: Vec<(u64, String)>,
}

/// How often a relaxed store makes its WAL durable (its default).
pub const SYNC_INTERVAL: Duration = Duration::from_millis(50);

/// Opens (or creates) the store in `path`.
pub async fn open(path: &Path, durability: Durability) -> Result<SqliteStore, Error> {
    Ok(SqliteStore::options()
        .path(path)
        .durability(durability)
        .sync_interval(SYNC_INTERVAL)
        .open()
        .await?)
}

/// Appends a batch in one request; returns its first and last positions.
pub async fn append(store: &SqliteStore, batch: &Batch) -> Result<(u64, u64), Error> {
    let mut request = AppendRequest::new();
    for part in &batch.parts {
        let mut events = Vec::new();
        for (index, payload) in &part.events {
            let mut metadata = Metadata::default();
            metadata
                .fields
                .insert("batch_id".into(), batch.id.clone().into());
            metadata.fields.insert("index".into(), (*index).into());
            metadata.fields.insert("count".into(), batch.count.into());
            events.push(
                NewEvent::new("PowerCut", 1, Payload::from_json(payload.clone())?)?
                    .with_metadata(metadata),
            );
        }
        request = request.stream(
            StreamId::new(part.stream.clone())?,
            ExpectedVersion::Exact(part.expected),
            events,
        );
    }
    let outcome = store.append(request).await?;
    let first = outcome
        .first_position()
        .ok_or("an append returned no events")?;
    let last = outcome
        .last_position()
        .ok_or("an append returned no events")?;
    Ok((first.0, last.0))
}

/// Appends one event to a stream of its own: proof the store still writes.
pub async fn append_probe(store: &SqliteStore) -> Result<u64, Error> {
    let batch = Batch {
        id: "probe".into(),
        count: 1,
        parts: vec![Part {
            stream: "probe-after-power-cut".into(),
            expected: 0,
            events: vec![(0, r#"{"probe":true}"#.into())],
        }],
    };
    Ok(append(store, &batch).await?.0)
}

/// The whole global log, page by page.
pub async fn read_everything(store: &SqliteStore) -> Result<Vec<Stored>, Error> {
    annals_core::testkit::read_log(store)
        .await?
        .into_iter()
        .map(stored)
        .collect()
}

/// Stops the store and waits for its writer.
pub async fn close(store: SqliteStore) {
    store.close().await;
}

fn stored(event: RecordedEvent) -> Result<Stored, Error> {
    let field = |name: &str| {
        event
            .metadata
            .fields
            .get(name)
            .ok_or_else(|| format!("event at {} has no {name}", event.position.0))
    };
    Ok(Stored {
        position: event.position.0,
        stream: event.stream_id.as_str().to_owned(),
        version: event.version,
        batch: field("batch_id")?
            .as_str()
            .ok_or("batch_id is not a string")?
            .to_owned(),
        index: field("index")?.as_u64().ok_or("index is not a number")?,
        count: field("count")?.as_u64().ok_or("count is not a number")?,
        payload: event.payload.as_str().to_owned(),
    })
}
