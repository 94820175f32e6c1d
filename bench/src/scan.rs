//! Reading the global log: all of it.

use std::error::Error;
use std::path::Path;
use std::time::{Duration, Instant};

use annals::sqlite::SqliteStore;
use annals::{EventStore, Position, ReadAll};

use crate::model::{decode_raw, BankEvent};
use crate::raw::{self, Envelope, ENVELOPE_COLUMNS};
use crate::read::{fill, print_event_sizes};
use crate::report::{self, Report};
use crate::shape::Shape;
use crate::Settings;

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
    const STREAMS: usize = 200;
    let shape = settings.shape;
    let total = settings.size.unwrap_or(1_000_000);
    let len = total.div_ceil(STREAMS);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("annals.db");
    let store = settings.open_store(&path).await?;
    let took = fill(&store, shape, STREAMS, len).await?;
    let total = STREAMS * len;
    report.size("events", total);
    print_event_sizes(&path, shape, report)?;
    report.figure("fill", report::per_second(total, took), "events/s");
    let mut best = [Duration::MAX; 3];
    let mut rss = [0.0f64; 3];
    let mut growth = [0.0f64; 3];
    for _ in 0..3 {
        for (side, time) in best.iter_mut().enumerate() {
            report::reset_peak_rss();
            let before = report::rss_mib().unwrap_or(0.0);
            let start = Instant::now();
            let (count, sum) = match side {
                0 => scan_ours(&store, ReadAll::after(Position::START)).await?,
                1 => scan_raw(&path, shape, RawColumns::Envelope)?,
                _ => scan_raw(&path, shape, RawColumns::TypeAndPayload)?,
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
async fn scan_ours(store: &SqliteStore, read: ReadAll) -> Result<(usize, u64), Box<dyn Error>> {
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
enum RawColumns {
    /// Everything annals returns for an event.
    Envelope,
    /// Only what decoding the payload needs.
    TypeAndPayload,
}

fn scan_raw(
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
