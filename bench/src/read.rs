//! Reading: loading aggregates, scanning the whole log, and loading from
//! snapshots.

use std::error::Error;
use std::path::Path;
use std::time::{Duration, Instant};

use annals::{
    DomainEvent, EventStore, EventStoreExt, ExpectedVersion, Metadata, NewEvent, Position, ReadAll,
    Repository, SnapshotPolicy, SnapshotStore, StreamId,
};

use annals::sqlite::SqliteStore;

use crate::model::{decode_raw, Account, BankEvent};
use crate::report;
use crate::Settings;

/// The events of one account: opened, then deposits.
fn history(len: usize) -> impl Iterator<Item = BankEvent> {
    (0..len).map(|n| match n {
        0 => BankEvent::Opened {
            owner: "owner".into(),
        },
        n => BankEvent::Deposited {
            amount: u64::try_from(n).unwrap_or(u64::MAX),
            reference: format!("deposit of {n}"),
        },
    })
}

/// Writes `streams` accounts of `len` events each through annals, in
/// appends of at most 5,000 events. Returns the seconds it took.
async fn fill(store: &SqliteStore, streams: usize, len: usize) -> Result<Duration, Box<dyn Error>> {
    let start = Instant::now();
    for s in 0..streams {
        let stream = StreamId::new(format!("account-{s}"))?;
        let events: Vec<NewEvent> = history(len)
            .map(|e| NewEvent::from_domain(&e, Metadata::default()))
            .collect::<Result<_, _>>()?;
        for chunk in events.chunks(5_000) {
            store
                .append_to_stream(&stream, ExpectedVersion::Any, chunk.to_vec())
                .await?;
        }
    }
    Ok(start.elapsed())
}

/// Loads an account the raw way: select its events in order, decode, fold.
fn load_raw(conn: &rusqlite::Connection, stream: &str) -> Result<(Account, usize), Box<dyn Error>> {
    let mut statement = conn.prepare_cached(
        "SELECT event_type, payload FROM events WHERE stream_id = ?1 ORDER BY version",
    )?;
    let mut rows = statement.query([stream])?;
    let mut account = Account::default();
    let mut count = 0;
    while let Some(row) = rows.next()? {
        let event_type: String = row.get(0)?;
        let payload: String = row.get(1)?;
        account.fold(&decode_raw(&event_type, &payload)?);
        count += 1;
    }
    Ok((account, count))
}

fn open_raw(path: &Path) -> Result<rusqlite::Connection, rusqlite::Error> {
    rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
}

/// `load`: rebuild accounts of 1,000 events each through the repository.
/// Baseline: select the stream's rows, decode with serde, fold.
pub(crate) async fn load(settings: Settings) -> Result<(), Box<dyn Error>> {
    const STREAMS: usize = 20;
    const LOADS: usize = 5;
    let len = settings.size.unwrap_or(1_000);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("annals.db");
    let store = settings.open_store(&path).await?;
    fill(&store, STREAMS, len).await?;
    let repository = Repository::<Account, _>::new(store)?;
    let raw = open_raw(&path)?;
    let (mut ours, mut baseline) = (Duration::ZERO, Duration::ZERO);
    let (mut ours_events, mut baseline_events) = (0, 0);
    for _ in 0..LOADS {
        for s in 0..STREAMS {
            let start = Instant::now();
            let loaded = repository.load(&s.to_string()).await?;
            ours += start.elapsed();
            ours_events += usize::try_from(loaded.replayed)?;
            let start = Instant::now();
            let (account, count) = load_raw(&raw, &format!("account-{s}"))?;
            baseline += start.elapsed();
            baseline_events += count;
            if account != loaded.state {
                return Err("the two loads disagree".into());
            }
        }
    }
    println!("streams: {STREAMS}");
    println!("events_per_stream: {len}");
    report::compare(
        "load",
        report::per_second(ours_events, ours),
        report::per_second(baseline_events, baseline),
    );
    Ok(())
}

/// `scan`: read the whole global log page by page and decode every event
/// into the typed enum.
///
/// The baseline does the same work without the framework: it selects the
/// same columns annals returns for each event (position, stream, version,
/// id, type, schema version, payload, metadata, time) into plain values and
/// decodes the payload with serde. A second, narrower baseline selects only
/// type and payload, which is less work than a reader of the log needs
/// (no positions to checkpoint, no stream, no metadata); it is printed for
/// reference. Each side's peak memory during its scan is printed too, and
/// how far it rose above the memory in use when the scan began.
pub(crate) async fn scan(settings: Settings) -> Result<(), Box<dyn Error>> {
    const STREAMS: usize = 200;
    let total = settings.size.unwrap_or(1_000_000);
    let len = total.div_ceil(STREAMS);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("annals.db");
    let store = settings.open_store(&path).await?;
    let took = fill(&store, STREAMS, len).await?;
    let total = STREAMS * len;
    println!("events: {total}");
    report::figure("fill", report::per_second(total, took), "events/s");
    let mut best = [Duration::MAX; 3];
    let mut rss = [0.0f64; 3];
    let mut growth = [0.0f64; 3];
    for _ in 0..3 {
        for (side, time) in best.iter_mut().enumerate() {
            report::reset_peak_rss();
            let before = report::rss_mib().unwrap_or(0.0);
            let start = Instant::now();
            let (count, sum) = match side {
                0 => scan_ours(&store).await?,
                1 => scan_raw(&path, RawColumns::Envelope)?,
                _ => scan_raw(&path, RawColumns::TypeAndPayload)?,
            };
            *time = (*time).min(start.elapsed());
            let peak = report::peak_rss_mib().unwrap_or(0.0);
            rss[side] = rss[side].max(peak);
            growth[side] = growth[side].max(peak - before);
            if count != total {
                return Err(format!("scan {side} read {count} of {total} events").into());
            }
            let _ = sum;
        }
    }
    let [ours, baseline, narrow] = best.map(|took| report::per_second(total, took));
    report::compare("scan", ours, baseline);
    report::figure("baseline_scan_type_and_payload", narrow, "events/s");
    println!(
        "ratio_scan_type_and_payload: {:.2}",
        ours / narrow.max(1e-9)
    );
    report::figure("scan_peak_rss", rss[0], "MiB");
    report::figure("scan_peak_rss_growth", growth[0], "MiB");
    report::figure("baseline_scan_peak_rss", rss[1], "MiB");
    report::figure("baseline_scan_peak_rss_growth", growth[1], "MiB");
    Ok(())
}

async fn scan_ours(store: &SqliteStore) -> Result<(usize, u64), Box<dyn Error>> {
    let (mut count, mut sum) = (0, 0u64);
    let mut after = Position::START;
    loop {
        let page = store.read_all(ReadAll::after(after)).await?;
        if page.is_empty() {
            break;
        }
        after = page.read_through;
        for recorded in &page {
            let event = BankEvent::decode(
                recorded.event_type.as_str(),
                recorded.schema_version,
                &recorded.payload,
            )?;
            if let BankEvent::Deposited { amount, .. } = event {
                sum = sum.wrapping_add(amount);
            }
            count += 1;
        }
    }
    Ok((count, sum))
}

/// Which columns the raw scan selects.
#[derive(Clone, Copy, PartialEq)]
enum RawColumns {
    /// Everything annals returns for an event.
    Envelope,
    /// Only what decoding the payload needs.
    TypeAndPayload,
}

/// An event as the raw scan reads it: plain values, no validation.
#[allow(dead_code)]
struct RawEvent {
    position: i64,
    stream_id: String,
    version: i64,
    event_id: Vec<u8>,
    schema_version: i64,
    metadata: Option<String>,
    recorded_at: i64,
}

fn scan_raw(path: &Path, columns: RawColumns) -> Result<(usize, u64), Box<dyn Error>> {
    let conn = open_raw(path)?;
    let sql = match columns {
        RawColumns::Envelope => {
            "SELECT event_type, payload, position, stream_id, version, event_id, schema_version, \
             metadata, recorded_at FROM events ORDER BY position"
        }
        RawColumns::TypeAndPayload => "SELECT event_type, payload FROM events ORDER BY position",
    };
    let mut statement = conn.prepare(sql)?;
    let mut rows = statement.query([])?;
    let (mut count, mut sum) = (0, 0u64);
    while let Some(row) = rows.next()? {
        let event_type: String = row.get(0)?;
        let payload: String = row.get(1)?;
        if columns == RawColumns::Envelope {
            std::hint::black_box(RawEvent {
                position: row.get(2)?,
                stream_id: row.get(3)?,
                version: row.get(4)?,
                event_id: row.get(5)?,
                schema_version: row.get(6)?,
                metadata: row.get(7)?,
                recorded_at: row.get(8)?,
            });
        }
        if let BankEvent::Deposited { amount, .. } = decode_raw(&event_type, &payload)? {
            sum = sum.wrapping_add(amount);
        }
        count += 1;
    }
    Ok((count, sum))
}

/// `load-snapshot`: load accounts of 10,000 events by replaying every event,
/// then from a snapshot plus the tail. The ratio is snapshot over replay.
pub(crate) async fn load_snapshot(settings: Settings) -> Result<(), Box<dyn Error>> {
    const STREAMS: usize = 5;
    const LOADS: usize = 3;
    let len = settings.size.unwrap_or(10_000);
    let dir = tempfile::tempdir()?;
    let store = settings.open_store(&dir.path().join("annals.db")).await?;
    fill(&store, STREAMS, len).await?;
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
    println!("streams: {STREAMS}");
    println!("events_per_stream: {len}");
    let (with, without) = (
        report::per_second(loads, snap),
        report::per_second(loads, full),
    );
    report::figure("load_with_snapshot", with, "loads/s");
    report::figure("load_without_snapshot", without, "loads/s");
    println!("ratio_load_snapshot: {:.2}", with / without.max(1e-9));
    Ok(())
}
