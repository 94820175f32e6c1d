//! Reading the global log: all of it, and one category of it.

use std::error::Error;
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use annals::sqlite::SqliteStore;
use annals::{AppendRequest, EventStore, ExpectedVersion, NewEvent, Position, ReadAll, StreamId};

use crate::model::account_event;
use crate::model::{decode_raw, BankEvent};
use crate::raw::{self, Envelope, ENVELOPE_COLUMNS};
use crate::read::{fill, print_event_sizes};
use crate::report::{self, Report};
use crate::shape::Shape;
use crate::Settings;

/// The streams the `scan` log is written to.
pub(crate) const SCAN_STREAMS: usize = 200;

/// `scan`: read the whole global log of 1,000,000 events (`--size`), page
/// by page following `read_through`, and decode every event into the typed
/// enum; the store decodes each event's metadata.
///
/// The baseline does the same work without the framework: it selects the
/// same columns annals returns for each event (position, stream, version,
/// id, type, schema version, payload, metadata, time) into plain values and
/// decodes the payload and (in the realistic shape) the metadata with serde.
/// A second, narrower baseline selects only type and payload, which is less
/// work than a reader of the log needs (no positions to checkpoint, no
/// stream, no metadata); it is printed for reference. Each side's peak
/// memory during its scan is printed too, and how far it rose above the
/// memory in use when the scan began. Each figure is the best of 3.
pub(crate) async fn whole(settings: Settings, report: &Report) -> Result<(), Box<dyn Error>> {
    let shape = settings.shape;
    let total = settings.size.unwrap_or(1_000_000);
    let len = total.div_ceil(SCAN_STREAMS);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("annals.db");
    let store = settings.open_store(&path).await?;
    let took = fill(&store, shape, SCAN_STREAMS, len).await?;
    let total = SCAN_STREAMS * len;
    report.size("events", total);
    print_event_sizes(&path, shape, report)?;
    report.figure("fill", report::per_second(total, took), "events/s");
    compare_scans(total, report, |side| {
        let (store, path) = (&store, &path);
        async move {
            match side {
                Side::Ours => scan_ours(store, ReadAll::after(Position::START)).await,
                Side::Baseline => scan_raw(path, shape, RawColumns::Envelope),
                Side::Narrow => scan_raw(path, shape, RawColumns::TypeAndPayload),
            }
        }
    })
    .await
}

/// A side of the `scan` comparison.
#[derive(Clone, Copy)]
pub(crate) enum Side {
    /// Annals reading its log.
    Ours,
    /// Raw code selecting every column annals returns.
    Baseline,
    /// Raw code selecting types and payloads only.
    Narrow,
}

/// Scans a log of `total` events with each side in turn, 3 rounds; `scan`
/// returns how many events a side decoded and the sum of the deposits.
/// Prints the best time of each side and the peak memory of ours and the
/// baseline.
pub(crate) async fn compare_scans<F, Fut>(
    total: usize,
    report: &Report,
    mut scan: F,
) -> Result<(), Box<dyn Error>>
where
    F: FnMut(Side) -> Fut,
    Fut: Future<Output = Result<(usize, u64), Box<dyn Error>>>,
{
    let mut best = [Duration::MAX; 3];
    let mut rss = [0.0f64; 3];
    let mut growth = [0.0f64; 3];
    let sides = [Side::Ours, Side::Baseline, Side::Narrow];
    for _ in 0..3 {
        for (n, side) in sides.into_iter().enumerate() {
            report::reset_peak_rss();
            let before = report::rss_mib().unwrap_or(0.0);
            let start = Instant::now();
            let (count, sum) = scan(side).await?;
            best[n] = best[n].min(start.elapsed());
            let peak = report::peak_rss_mib().unwrap_or(0.0);
            rss[n] = rss[n].max(peak);
            growth[n] = growth[n].max(peak - before);
            if count != total {
                return Err(format!("scan {n} read {count} of {total} events").into());
            }
            let _ = sum;
        }
    }
    let [ours, baseline, narrow] = best.map(|took| report::per_second(total, took));
    report.compare("scan", ours, baseline);
    report.figure("baseline_scan_type_and_payload", narrow, "events/s");
    report.ratio("scan_type_and_payload", ours / narrow.max(1e-9));
    report.figure("scan_peak_rss", rss[0], "MiB");
    report.figure("scan_peak_rss_growth", growth[0], "MiB");
    report.figure("baseline_scan_peak_rss", rss[1], "MiB");
    report.figure("baseline_scan_peak_rss_growth", growth[1], "MiB");
    Ok(())
}

/// Reads the log as `read` says, page after page from its start, following
/// each page's `read_through`, and decodes every event returned. Returns
/// how many events it decoded and the sum of the deposits.
pub(crate) async fn scan_ours<S: EventStore>(
    store: &S,
    read: ReadAll,
) -> Result<(usize, u64), Box<dyn Error>> {
    let (mut count, mut sum) = (0, 0u64);
    let mut after = read.start();
    loop {
        let page = store.read_all(read.clone().after_position(after)).await?;
        // An empty page was read through the head: the log is done.
        if page.is_empty() {
            break;
        }
        after = page.read_through;
        for recorded in &page {
            if let BankEvent::Deposited { amount, .. } = recorded.decode::<BankEvent>()? {
                sum = sum.wrapping_add(amount);
            }
            std::hint::black_box(&recorded.metadata);
            count += 1;
        }
    }
    Ok((count, sum))
}

/// Which columns the raw scan selects.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum RawColumns {
    /// Everything annals returns for an event.
    Envelope,
    /// Only what decoding the payload needs.
    TypeAndPayload,
}

/// Reads the whole log in position order with raw rusqlite and decodes
/// every event; returns how many and the sum of the deposits.
pub(crate) fn scan_raw(
    path: &Path,
    shape: Shape,
    columns: RawColumns,
) -> Result<(usize, u64), Box<dyn Error>> {
    let conn = raw::open_read_only(path)?;
    let sql = match columns {
        RawColumns::Envelope => format!("SELECT {ENVELOPE_COLUMNS} FROM events ORDER BY position"),
        RawColumns::TypeAndPayload => {
            "SELECT event_type, payload FROM events ORDER BY position".to_owned()
        }
    };
    let mut statement = conn.prepare(&sql)?;
    let mut rows = statement.query([])?;
    let (mut count, mut sum) = (0, 0u64);
    while let Some(row) = rows.next()? {
        let event = match columns {
            RawColumns::Envelope => std::hint::black_box(Envelope::from_row(row, shape)?).event,
            RawColumns::TypeAndPayload => {
                let event_type: String = row.get(0)?;
                let payload: String = row.get(1)?;
                decode_raw(&event_type, &payload)?
            }
        };
        if let BankEvent::Deposited { amount, .. } = event {
            sum = sum.wrapping_add(amount);
        }
        count += 1;
    }
    Ok((count, sum))
}

/// One event in this many is in the filtered category.
const SPACING: usize = 100;
/// The category the filtered scan reads.
pub(crate) const RARE: &str = "loan";

/// The log of `scan-filtered`, in a temporary directory: 1,000,000 events
/// (`--size`, rounded up to a hundred) of which every hundredth is in
/// category `loan` (1% of the log, spread evenly) and the rest in category
/// `account`.
pub(crate) struct RareCategoryLog {
    /// Holds the log's files; removed when dropped.
    pub(crate) dir: tempfile::TempDir,
    /// The log's database.
    pub(crate) path: std::path::PathBuf,
    pub(crate) store: SqliteStore,
    /// The events in category `loan`.
    pub(crate) blocks: usize,
    /// The events in the log.
    pub(crate) total: usize,
}

impl RareCategoryLog {
    /// Writes the log, and prints its sizes and how fast it was written.
    pub(crate) async fn write(
        settings: &Settings,
        report: &Report,
    ) -> Result<RareCategoryLog, Box<dyn Error>> {
        let blocks = settings.size.unwrap_or(1_000_000).div_ceil(SPACING);
        let total = blocks * SPACING;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("annals.db");
        let store = settings.open_store(&path).await?;
        let took = fill_with_rare_category(&store, settings.shape, blocks).await?;
        report.size("events", total);
        report.size("matching_events", blocks);
        print_event_sizes(&path, settings.shape, report)?;
        report.figure("fill", report::per_second(total, took), "events/s");
        Ok(RareCategoryLog {
            dir,
            path,
            store,
            blocks,
            total,
        })
    }
}

/// `scan-filtered`: the [`RareCategoryLog`]. Ours reads it
/// all with a category filter, page by page following `read_through`, and
/// decodes the matches; beside it, the unfiltered scan of the whole log
/// decoding every event (as in `scan`). `ratio_filtered_vs_unfiltered` is
/// the unfiltered time over the filtered one. Baseline: one raw query of
/// the category's rows in position order (served by the same category
/// index annals reads), decoding payload and metadata with serde. Each
/// figure is the best of 3 alternating rounds.
pub(crate) async fn filtered(settings: Settings, report: &Report) -> Result<(), Box<dyn Error>> {
    let shape = settings.shape;
    let RareCategoryLog {
        dir: _dir,
        path,
        store,
        blocks,
        total,
    } = RareCategoryLog::write(&settings, report).await?;
    let filter = ReadAll::after(Position::START).category(RARE);
    let mut best = [Duration::MAX; 3];
    for _ in 0..3 {
        for (side, time) in best.iter_mut().enumerate() {
            let start = Instant::now();
            let (count, _) = match side {
                0 => scan_ours(&store, filter.clone()).await?,
                1 => scan_raw_category(&path, shape, RARE)?,
                _ => scan_ours(&store, ReadAll::after(Position::START)).await?,
            };
            *time = (*time).min(start.elapsed());
            let expected = if side == 2 { total } else { blocks };
            if count != expected {
                return Err(format!("scan {side} read {count} of {expected} events").into());
            }
        }
    }
    let [filtered, baseline, unfiltered] = best;
    report.compare(
        "scan_filtered",
        report::per_second(blocks, filtered),
        report::per_second(blocks, baseline),
    );
    report.figure(
        "scan_unfiltered",
        report::per_second(total, unfiltered),
        "events/s",
    );
    report.figure("scan_filtered_time", report::millis(filtered), "ms");
    report.figure("scan_unfiltered_time", report::millis(unfiltered), "ms");
    report.ratio(
        "filtered_vs_unfiltered",
        unfiltered.as_secs_f64() / filtered.as_secs_f64().max(1e-9),
    );
    Ok(())
}

/// Writes `blocks` blocks of 100 events: 99 to an `account` stream, then
/// one to a `loan` stream, 50 blocks per append (each append spans 50
/// account and 50 loan streams, each once). There are 200 account streams
/// and 100 loan streams, written round-robin. Returns the time it took.
async fn fill_with_rare_category(
    store: &SqliteStore,
    shape: Shape,
    blocks: usize,
) -> Result<Duration, Box<dyn Error>> {
    const ACCOUNTS: usize = 200;
    const LOANS: usize = 100;
    const BLOCKS_PER_APPEND: usize = 50;
    let start = Instant::now();
    let mut accounts = [0usize; ACCOUNTS];
    let mut loans = [0usize; LOANS];
    let event = |account: usize, n: usize| {
        NewEvent::from_domain(&account_event(shape, account, n), shape.metadata())
    };
    for first in (0..blocks).step_by(BLOCKS_PER_APPEND) {
        let mut request = AppendRequest::new();
        for block in first..(first + BLOCKS_PER_APPEND).min(blocks) {
            let (a, l) = (block % ACCOUNTS, block % LOANS);
            let events = (accounts[a]..accounts[a] + SPACING - 1)
                .map(|n| event(a, n))
                .collect::<Result<_, _>>()?;
            accounts[a] += SPACING - 1;
            let stream = StreamId::new(format!("account-{a}"))?;
            request = request.stream(stream, ExpectedVersion::Any, events);
            let stream = StreamId::new(format!("{RARE}-{l}"))?;
            request = request.stream(stream, ExpectedVersion::Any, vec![event(l, loans[l])?]);
            loans[l] += 1;
        }
        store.append(request).await?;
    }
    Ok(start.elapsed())
}

/// Reads one category's events the raw way: one query in position order,
/// every column annals returns, payload and metadata decoded with serde.
fn scan_raw_category(
    path: &Path,
    shape: Shape,
    category: &str,
) -> Result<(usize, u64), Box<dyn Error>> {
    let conn = raw::open_read_only(path)?;
    // Spelled as annals' category index is, so that SQLite uses it.
    let sql = format!(
        "SELECT {ENVELOPE_COLUMNS} FROM events \
         WHERE substr(stream_id, 1, instr(stream_id, '-') - 1) = ?1 ORDER BY position"
    );
    let mut statement = conn.prepare(&sql)?;
    let mut rows = statement.query([category])?;
    let (mut count, mut sum) = (0, 0u64);
    while let Some(row) = rows.next()? {
        let envelope = std::hint::black_box(Envelope::from_row(row, shape)?);
        if let BankEvent::Deposited { amount, .. } = envelope.event {
            sum = sum.wrapping_add(amount);
        }
        count += 1;
    }
    Ok((count, sum))
}
