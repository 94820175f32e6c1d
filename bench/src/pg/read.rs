//! Reading on PostgreSQL: whole streams through the repository, and the
//! whole log page by page.

use std::error::Error;

use annals::postgres::tokio_postgres::{Client, Statement};
use annals::store::MAX_READ_LIMIT;
use annals::{Position, ReadAll, Repository};

use super::{envelope_from_row, PgRun};
use crate::model::{decode_raw, Account, BankEvent};
use crate::read::{compare_loads, fill};
use crate::report::{self, Report};
use crate::scan::{compare_scans, scan_ours, Side, SCAN_STREAMS};
use crate::shape::Shape;
use crate::sizes::{LOADS, LOAD_EVENTS, LOAD_STREAMS};
use crate::Settings;

/// Events in the `scan` log by default: fewer than on SQLite, so that
/// filling it and reading it nine times stays within a minute.
const SCAN_EVENTS: usize = 500_000;

/// `load`: 20 accounts of 1,000 events each (`--size` sets the events per
/// account) loaded through the repository, 5 times over, as on SQLite.
/// Baseline: a `SELECT` of the stream's rows (the columns annals' replay
/// reads) on its copy of the log, decoded with serde and folded.
pub(crate) async fn load(
    run: &PgRun,
    settings: Settings,
    report: &Report,
) -> Result<(), Box<dyn Error>> {
    let len = settings.size.unwrap_or(LOAD_EVENTS);
    let shape = settings.shape;
    fill(&run.store, shape, LOAD_STREAMS, len).await?;
    run.copy_log().await?;
    let repository = Repository::<Account, _>::new(run.store.clone())?;
    let select = run
        .raw
        .prepare(&run.raw_sql(include_str!("select_stream.sql")))
        .await?;
    let (raw, select) = (&run.raw, &select);
    let (ours, baseline) = compare_loads(&repository, LOAD_STREAMS, LOADS, |stream| {
        load_raw(raw, select, stream)
    })
    .await?;
    run.report_durability(report).await?;
    report.size("streams", LOAD_STREAMS);
    report.size("events_per_stream", len);
    run.same_shape(report).await?;
    report.compare("load", ours, baseline);
    Ok(())
}

/// Loads an account the raw way: select its events in order, decode, fold.
async fn load_raw(
    raw: &Client,
    select: &Statement,
    stream: String,
) -> Result<(Account, usize), Box<dyn Error>> {
    let rows = raw.query(select, &[&stream]).await?;
    let mut account = Account::default();
    for row in &rows {
        let (position, version, schema_version): (i64, i64, i32) =
            (row.try_get(2)?, row.try_get(3)?, row.try_get(4)?);
        std::hint::black_box((position, version, schema_version));
        account.fold(&decode_raw(row.try_get(0)?, row.try_get(1)?)?);
    }
    Ok((account, rows.len()))
}

/// `scan`: the whole log of 500,000 events (`--size`) over 200 accounts,
/// read page by page following `read_through` and decoded, as on SQLite.
/// Baseline: on its copy of the log, a paged `SELECT` in position order
/// (pages of annals' default read, 10,000 events) of every column annals
/// returns, payload and metadata decoded with serde; and the narrower one
/// of types and payloads only. Each figure is the best of 3.
pub(crate) async fn scan(
    run: &PgRun,
    settings: Settings,
    report: &Report,
) -> Result<(), Box<dyn Error>> {
    let shape = settings.shape;
    let len = settings.size.unwrap_or(SCAN_EVENTS).div_ceil(SCAN_STREAMS);
    let took = fill(&run.store, shape, SCAN_STREAMS, len).await?;
    let total = SCAN_STREAMS * len;
    run.copy_log().await?;
    run.report_durability(report).await?;
    report.size("events", total);
    run.same_shape(report).await?;
    report.figure("fill", report::per_second(total, took), "events/s");
    let whole = run
        .raw
        .prepare(&run.raw_sql(include_str!("select_page.sql")))
        .await?;
    let narrow = run
        .raw
        .prepare(&run.raw_sql(include_str!("select_page_narrow.sql")))
        .await?;
    let (store, raw) = (&run.store, &run.raw);
    let (whole, narrow) = (&whole, &narrow);
    compare_scans(total, report, |side| async move {
        match side {
            Side::Ours => scan_ours(store, ReadAll::after(Position::START)).await,
            Side::Baseline => scan_raw(raw, whole, shape, true).await,
            Side::Narrow => scan_raw(raw, narrow, shape, false).await,
        }
    })
    .await
}

/// Reads the whole log in pages in position order with `select`
/// (`select_page.sql` when `whole`, else `select_page_narrow.sql`) and
/// decodes every event; returns how many and the sum of the deposits.
async fn scan_raw(
    raw: &Client,
    select: &Statement,
    shape: Shape,
    whole: bool,
) -> Result<(usize, u64), Box<dyn Error>> {
    let page = i64::try_from(MAX_READ_LIMIT)?;
    let (mut after, mut count, mut sum) = (0i64, 0, 0u64);
    loop {
        let rows = raw.query(select, &[&after, &page]).await?;
        for row in &rows {
            let event = if whole {
                let envelope = std::hint::black_box(envelope_from_row(row, shape)?);
                after = envelope.position;
                envelope.event
            } else {
                after = row.try_get(0)?;
                decode_raw(row.try_get(1)?, row.try_get(2)?)?
            };
            if let BankEvent::Deposited { amount, .. } = event {
                sum = sum.wrapping_add(amount);
            }
            count += 1;
        }
        // A short page was read through the end of the log.
        if rows.len() < MAX_READ_LIMIT {
            return Ok((count, sum));
        }
    }
}
