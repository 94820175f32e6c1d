//! Building the read model from a log on PostgreSQL. Only the event store
//! changes: the balances model stays an SQLite file of its own, built by
//! the same projection (and by the same raw writer) as on SQLite.

use std::error::Error;
use std::path::PathBuf;

use annals::postgres::tokio_postgres::Client;

use super::PgRun;
use crate::model::{decode_raw, BankEvent};
use crate::project::{compare_builds, fill_round_robin, BATCH, STREAMS};
use crate::raw::RawBalances;
use crate::report::{self, Report};
use crate::Settings;

/// Events in the `rebuild` log by default: fewer than on SQLite, so that
/// filling it and building the model nine times stays within a minute.
const REBUILD_EVENTS: usize = 400_000;

/// `rebuild`: a log of 400,000 events (`--size`) spread round-robin over
/// 10,000 accounts, and the balances model built from it by a new
/// projection catching up and by a rebuild, as on SQLite. Baseline: on its
/// copy of the log, a paged `SELECT` in position order in pages of the
/// runner's batch, each page decoded and written to the baseline's own
/// SQLite model in one transaction, as on SQLite.
pub(crate) async fn rebuild(
    run: &PgRun,
    settings: Settings,
    report: &Report,
) -> Result<(), Box<dyn Error>> {
    let shape = settings.shape;
    let total = settings.size.unwrap_or(REBUILD_EVENTS);
    let streams = STREAMS.min(total);
    let took = fill_round_robin(&run.store, shape, streams, total).await?;
    run.copy_log().await?;
    run.report_durability(report).await?;
    report.size("events", total);
    report.size("streams", streams);
    report.size("batch", BATCH);
    run.same_shape(report).await?;
    report.figure("fill", report::per_second(total, took), "events/s");
    let dir = tempfile::tempdir()?;
    let select = run.raw_sql(include_str!("select_page_balances.sql"));
    let (raw, select) = (&run.raw, select.as_str());
    compare_builds(&run.store, dir.path(), total, report, |model| {
        build_balances(raw, select, model)
    })
    .await
}

/// Builds the balances of the baseline's log into a new SQLite model at
/// `model`, reading pages of [`BATCH`] events with `select`. Returns how
/// many events it handled.
async fn build_balances(
    raw: &Client,
    select: &str,
    model: PathBuf,
) -> Result<usize, Box<dyn Error>> {
    let mut model = RawBalances::create(&model)?;
    let select = raw.prepare(select).await?;
    let limit = i64::try_from(BATCH)?;
    let (mut after, mut handled) = (0i64, 0usize);
    let mut events: Vec<(String, BankEvent)> = Vec::with_capacity(BATCH);
    loop {
        events.clear();
        for row in raw.query(&select, &[&after, &limit]).await? {
            after = row.try_get(0)?;
            let event = decode_raw(row.try_get(2)?, row.try_get(3)?)?;
            events.push((row.try_get(1)?, event));
        }
        if events.is_empty() {
            break;
        }
        model.write_page(&events, after)?;
        handled += events.len();
        // A short page was read through the end of the log.
        if events.len() < BATCH {
            break;
        }
    }
    Ok(handled)
}
