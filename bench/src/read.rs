//! Reading aggregates and streams: loading through the repository, loading
//! from snapshots, and reading whole streams.

use std::error::Error;
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use annals::{
    EventStore, EventStoreExt, ExpectedVersion, NewEvent, Repository, SnapshotPolicy,
    SnapshotStore, StreamId,
};

use crate::append::ROUNDS;
use crate::model::{account_event, decode_raw, Account, BankEvent};
use crate::raw::{self, Envelope, ENVELOPE_COLUMNS};
use crate::report::{self, Report};
use crate::shape::Shape;
use crate::sizes::{LOADS, LOAD_EVENTS, LOAD_STREAMS};
use crate::Settings;

/// Writes `streams` accounts of `len` events each through annals, in
/// appends of at most 5,000 events. Returns the time it took.
pub(crate) async fn fill<S: EventStore>(
    store: &S,
    shape: Shape,
    streams: usize,
    len: usize,
) -> Result<Duration, Box<dyn Error>> {
    let start = Instant::now();
    for s in 0..streams {
        let stream = StreamId::new(format!("account-{s}"))?;
        let events: Vec<NewEvent> = (0..len)
            .map(|n| account_event(shape, s, n))
            .map(|e| NewEvent::from_domain(&e, shape.metadata()))
            .collect::<Result<_, _>>()?;
        for chunk in events.chunks(5_000) {
            store
                .append_to_stream(&stream, ExpectedVersion::Any, chunk.to_vec())
                .await?;
        }
    }
    Ok(start.elapsed())
}

/// Prints the mean size of the events in annals' log at `path`.
pub(crate) fn print_event_sizes(
    path: &Path,
    shape: Shape,
    report: &Report,
) -> Result<(), Box<dyn Error>> {
    raw::event_sizes(&raw::open_read_only(path)?, shape)?.report(report);
    Ok(())
}

/// Loads an account the raw way: select its events in order, decode, fold.
/// In the realistic shape it selects the columns annals' replay reads
/// (position, version, type, schema version, payload); in the small shape
/// only type and payload, as earlier builds did.
fn load_raw(
    conn: &rusqlite::Connection,
    shape: Shape,
    stream: &str,
) -> Result<(Account, usize), Box<dyn Error>> {
    let mut statement = conn.prepare_cached(match shape {
        Shape::Realistic => {
            "SELECT event_type, payload, position, version, schema_version FROM events \
             WHERE stream_id = ?1 ORDER BY version"
        }
        Shape::Small => {
            "SELECT event_type, payload FROM events WHERE stream_id = ?1 ORDER BY version"
        }
    })?;
    let mut rows = statement.query([stream])?;
    let mut account = Account::default();
    let mut count = 0;
    while let Some(row) = rows.next()? {
        let event_type: String = row.get(0)?;
        let payload: String = row.get(1)?;
        if shape == Shape::Realistic {
            let (position, version, schema_version): (i64, i64, i64) =
                (row.get(2)?, row.get(3)?, row.get(4)?);
            std::hint::black_box((position, version, schema_version));
        }
        account.fold(&decode_raw(&event_type, &payload)?);
        count += 1;
    }
    Ok((account, count))
}

/// `load`: rebuild 20 accounts of 1,000 events each through the repository
/// (`--size` sets the events per account), 5 times over. Baseline: select
/// the stream's rows, decode with serde, fold.
pub(crate) async fn load(settings: Settings, report: &Report) -> Result<(), Box<dyn Error>> {
    const STREAMS: usize = LOAD_STREAMS;
    let len = settings.size.unwrap_or(LOAD_EVENTS);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("annals.db");
    let store = settings.open_store(&path).await?;
    fill(&store, settings.shape, STREAMS, len).await?;
    let repository = Repository::<Account, _>::new(store)?;
    let raw = raw::open_read_only(&path)?;
    let shape = settings.shape;
    let (ours, baseline) = compare_loads(&repository, STREAMS, LOADS, |stream| {
        std::future::ready(load_raw(&raw, shape, &stream))
    })
    .await?;
    report.size("streams", STREAMS);
    report.size("events_per_stream", len);
    print_event_sizes(&path, settings.shape, report)?;
    report.compare("load", ours, baseline);
    Ok(())
}

/// Loads accounts `0..streams` through `repository` and the raw way with
/// `raw` (given the stream id), `loads` times over, alternating, and checks
/// that both find the same state. Returns ours' and the baseline's events
/// per second.
pub(crate) async fn compare_loads<S, F, Fut>(
    repository: &Repository<Account, S>,
    streams: usize,
    loads: usize,
    mut raw: F,
) -> Result<(f64, f64), Box<dyn Error>>
where
    S: EventStore,
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<(Account, usize), Box<dyn Error>>>,
{
    let (mut ours, mut baseline) = (Duration::ZERO, Duration::ZERO);
    let (mut ours_events, mut baseline_events) = (0, 0);
    for _ in 0..loads {
        for s in 0..streams {
            let start = Instant::now();
            let loaded = repository.load(&s.to_string()).await?;
            ours += start.elapsed();
            ours_events += usize::try_from(loaded.replayed)?;
            let start = Instant::now();
            let (account, count) = raw(format!("account-{s}")).await?;
            baseline += start.elapsed();
            baseline_events += count;
            if account != loaded.state {
                return Err("the two loads disagree".into());
            }
        }
    }
    Ok((
        report::per_second(ours_events, ours),
        report::per_second(baseline_events, baseline),
    ))
}

/// `read-streams`: 1,000 streams of 1,000 events each (`--size` sets the
/// streams, `--per-stream` the events of each), each read whole with
/// `read_stream_to_end` (every column of every event, metadata decoded by
/// the store) and each event's payload decoded with `decode`, then folded.
/// Baseline: select the same columns of the stream's rows in version order,
/// decode payload and metadata with serde, fold.
pub(crate) async fn streams(settings: Settings, report: &Report) -> Result<(), Box<dyn Error>> {
    let streams = settings.size.unwrap_or(1_000);
    let len = settings.per_stream.unwrap_or(1_000);
    let shape = settings.shape;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("annals.db");
    let store = settings.open_store(&path).await?;
    let took = fill(&store, shape, streams, len).await?;
    let raw = raw::open_read_only(&path)?;
    let sql =
        format!("SELECT {ENVELOPE_COLUMNS} FROM events WHERE stream_id = ?1 ORDER BY version");
    let (mut ours, mut baseline) = (Duration::ZERO, Duration::ZERO);
    let (mut ours_events, mut baseline_events) = (0, 0);
    let per_round = streams.div_ceil(ROUNDS);
    for round in 0..ROUNDS {
        let range = round * per_round..((round + 1) * per_round).min(streams);
        let ids: Vec<StreamId> = range
            .clone()
            .map(|s| StreamId::new(format!("account-{s}")))
            .collect::<Result<_, _>>()?;
        let mut states = Vec::with_capacity(ids.len());
        let start = Instant::now();
        for stream in &ids {
            let mut account = Account::default();
            for recorded in store.read_stream_to_end(stream).await? {
                account.fold(&recorded.decode::<BankEvent>()?);
                std::hint::black_box(&recorded);
                ours_events += 1;
            }
            states.push(account);
        }
        ours += start.elapsed();
        let start = Instant::now();
        for (stream, state) in ids.iter().zip(&states) {
            let mut account = Account::default();
            let mut statement = raw.prepare_cached(&sql)?;
            let mut rows = statement.query([stream.as_str()])?;
            while let Some(row) = rows.next()? {
                let envelope = Envelope::from_row(row, shape)?;
                account.fold(&envelope.event);
                std::hint::black_box(&envelope);
                baseline_events += 1;
            }
            if account != *state {
                return Err(format!("the two reads of {stream} disagree").into());
            }
        }
        baseline += start.elapsed();
    }
    if ours_events != streams * len || baseline_events != ours_events {
        return Err(format!("read {ours_events} and {baseline_events} events").into());
    }
    report.size("streams", streams);
    report.size("events_per_stream", len);
    print_event_sizes(&path, shape, report)?;
    report.figure("fill", report::per_second(streams * len, took), "events/s");
    report.compare(
        "read_streams",
        report::per_second(ours_events, ours),
        report::per_second(baseline_events, baseline),
    );
    Ok(())
}

/// `load-snapshot`: load accounts of 10,000 events by replaying every event,
/// then from a snapshot plus the tail. The ratio is snapshot over replay.
pub(crate) async fn load_snapshot(
    settings: Settings,
    report: &Report,
) -> Result<(), Box<dyn Error>> {
    const STREAMS: usize = 5;
    const LOADS: usize = 3;
    let len = settings.size.unwrap_or(10_000);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("annals.db");
    let store = settings.open_store(&path).await?;
    fill(&store, settings.shape, STREAMS, len).await?;
    let replaying = Repository::<Account, _>::new(store.clone())?;
    let snapshotting =
        Repository::<Account, _>::new(store.clone())?.with_snapshots(SnapshotPolicy::every(1_000));
    // A first load through the snapshotting repository writes the snapshots.
    for s in 0..STREAMS {
        snapshotting.load(&s.to_string()).await?;
        let stream = snapshotting.stream_id(&s.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.load_snapshot(&stream).await?.is_none() {
            if Instant::now() > deadline {
                return Err("the snapshot was never written".into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let (mut full, mut snap) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..LOADS {
        for s in 0..STREAMS {
            let id = s.to_string();
            let start = Instant::now();
            let a = replaying.load(&id).await?;
            full += start.elapsed();
            let start = Instant::now();
            let b = snapshotting.load(&id).await?;
            snap += start.elapsed();
            if a.state != b.state || a.version != b.version {
                return Err("snapshot load differs from full replay".into());
            }
        }
    }
    let loads = STREAMS * LOADS;
    report.size("streams", STREAMS);
    report.size("events_per_stream", len);
    print_event_sizes(&path, settings.shape, report)?;
    let (with, without) = (
        report::per_second(loads, snap),
        report::per_second(loads, full),
    );
    report.figure("load_with_snapshot", with, "loads/s");
    report.figure("load_without_snapshot", without, "loads/s");
    report.ratio("load_snapshot", with / without.max(1e-9));
    Ok(())
}
