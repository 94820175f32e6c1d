//! Building the read model from the whole log: a new projection catching
//! up, a rebuild of the model it built, and a projection that reads one
//! category of the log beside one that reads all of it.

use std::error::Error;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use annals::projections::SqliteProjection;
use annals::{AppendRequest, EventStore, ExpectedVersion, NewEvent, StreamId};

use super::{catch_up, Balances, Loan};
use crate::model::account_event;
use crate::model::BankEvent;
use crate::raw::{balances_summary, build_balances};
use crate::read::print_event_sizes;
use crate::report::{self, Report};
use crate::scan::RareCategoryLog;
use crate::shape::Shape;
use crate::Settings;

/// Events in the log by default.
const DEFAULT_EVENTS: usize = 1_000_000;
/// The accounts the `rebuild` log is spread over.
pub(crate) const STREAMS: usize = 10_000;
/// The runner's default batch, which the baseline's pages and write
/// transactions match.
pub(crate) const BATCH: usize = 1_000;
/// Each side runs this many times, alternating; each figure is the best.
const ROUNDS: usize = 3;

/// `rebuild`: a log of 1,000,000 events (`--size`) spread round-robin over
/// 10,000 accounts, and the balances model built from it. `catch_up`: a new
/// projection builds the model from the start of the log, timed from its
/// start until `wait_idle` returns. `rebuild`: `Running::rebuild` on the
/// model it built (into a shadow database, then swapped in), timed until it
/// returns. Baseline: raw rusqlite building the same model into a database
/// of its own, the log read page by page in pages of the runner's batch
/// size (see [`build_balances`]). Both are events per second of the log.
pub(crate) async fn rebuild(settings: Settings, report: &Report) -> Result<(), Box<dyn Error>> {
    let shape = settings.shape;
    let total = settings.size.unwrap_or(DEFAULT_EVENTS);
    let streams = STREAMS.min(total);
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("annals.db");
    let store = settings.open_store(&log).await?;
    let took = fill_round_robin(&store, shape, streams, total).await?;
    report.size("events", total);
    report.size("streams", streams);
    report.size("batch", BATCH);
    print_event_sizes(&log, shape, report)?;
    report.figure("fill", report::per_second(total, took), "events/s");
    compare_builds(&store, dir.path(), total, report, |raw| {
        std::future::ready(build_balances(&log, &raw, BATCH))
    })
    .await
}

/// Builds the balances of a log of `total` events with annals (a new
/// projection catching up, then a rebuild of it) and the raw way with
/// `build` (given the model's path; returns how many events it handled),
/// [`ROUNDS`] times over, alternating, each model a new SQLite file in
/// `dir`; checks that the models agree and prints each side's best.
pub(crate) async fn compare_builds<S, F, Fut>(
    store: &S,
    dir: &Path,
    total: usize,
    report: &Report,
    mut build: F,
) -> Result<(), Box<dyn Error>>
where
    S: EventStore + Clone + 'static,
    F: FnMut(PathBuf) -> Fut,
    Fut: Future<Output = Result<usize, Box<dyn Error>>>,
{
    let mut best = [Duration::MAX; 3];
    for round in 0..ROUNDS {
        let model = dir.join(format!("balances-{round}.db"));
        let (running, took) = catch_up::<BankEvent, _>(store, &model).await?;
        best[0] = best[0].min(took);
        let started = Instant::now();
        running.rebuild(Balances::<BankEvent>::NAME).await?;
        best[1] = best[1].min(started.elapsed());
        running.stop().await;
        let ours = balances_summary(&model)?;
        let raw = dir.join(format!("raw-{round}.db"));
        let started = Instant::now();
        let handled = build(raw.clone()).await?;
        best[2] = best[2].min(started.elapsed());
        let baseline = balances_summary(&raw)?;
        if handled != total || ours != baseline || usize::try_from(ours.1)? != total {
            return Err(format!(
                "the models disagree: ours {ours:?}, the baseline's {baseline:?} \
                 after {handled} of {total} events"
            )
            .into());
        }
    }
    let [catch_up, rebuild, baseline] = best.map(|took| report::per_second(total, took));
    report.figure("catch_up", catch_up, "events/s");
    report.figure("rebuild", rebuild, "events/s");
    report.figure("baseline_build", baseline, "events/s");
    report.ratio("catch_up", catch_up / baseline.max(1e-9));
    report.ratio("rebuild", rebuild / baseline.max(1e-9));
    Ok(())
}

/// Writes `total` events over `streams` accounts, round-robin (event `n`
/// is the next of account `n % streams`), in appends of 1,000 events that
/// each go to 1,000 accounts once. Returns the time it took.
pub(crate) async fn fill_round_robin<S: EventStore>(
    store: &S,
    shape: Shape,
    streams: usize,
    total: usize,
) -> Result<Duration, Box<dyn Error>> {
    // At most one event per account in an append: a stream appears once.
    let per_append = streams.min(1_000);
    let ids: Vec<StreamId> = (0..streams)
        .map(|s| StreamId::new(format!("account-{s}")))
        .collect::<Result<_, _>>()?;
    let start = Instant::now();
    for first in (0..total).step_by(per_append) {
        let mut request = AppendRequest::new();
        for n in first..(first + per_append).min(total) {
            let (account, k) = (n % streams, n / streams);
            let event = NewEvent::from_domain(&account_event(shape, account, k), shape.metadata())?;
            request = request.stream(ids[account].clone(), ExpectedVersion::Any, vec![event]);
        }
        store.append(request).await?;
    }
    Ok(start.elapsed())
}

/// `filtered-rebuild`: the `scan-filtered` log ([`RareCategoryLog`]: 1% of
/// 1,000,000 events, `--size`, in category `loan`), and two new projections
/// catching up from the start, each doing one upsert per event it handles:
/// one reads the `loan` category only (through its index), the other every
/// event. Each is timed
/// from its start until `wait_idle` returns; `ratio_filtered` is the time
/// of the whole log over the time of the category.
pub(crate) async fn filtered(settings: Settings, report: &Report) -> Result<(), Box<dyn Error>> {
    let RareCategoryLog {
        dir,
        store,
        blocks,
        total,
        ..
    } = RareCategoryLog::write(&settings, report).await?;
    let (mut filtered, mut all) = (Duration::MAX, Duration::MAX);
    for round in 0..ROUNDS {
        let model = dir.path().join(format!("loans-{round}.db"));
        let (running, took) = catch_up::<Loan, _>(&store, &model).await?;
        running.stop().await;
        filtered = filtered.min(took);
        check_events(&model, blocks)?;
        let model = dir.path().join(format!("all-{round}.db"));
        let (running, took) = catch_up::<BankEvent, _>(&store, &model).await?;
        running.stop().await;
        all = all.min(took);
        check_events(&model, total)?;
    }
    report.figure("filtered_time", report::millis(filtered), "ms");
    report.figure("all_time", report::millis(all), "ms");
    report.figure("filtered", report::per_second(blocks, filtered), "events/s");
    report.figure("all", report::per_second(total, all), "events/s");
    report.ratio(
        "filtered",
        all.as_secs_f64() / filtered.as_secs_f64().max(1e-9),
    );
    Ok(())
}

/// Checks that the model at `model` handled `expected` events.
fn check_events(model: &Path, expected: usize) -> Result<(), Box<dyn Error>> {
    let (_, events, _) = balances_summary(model)?;
    if usize::try_from(events)? != expected {
        return Err(format!("a model handled {events} of {expected} events").into());
    }
    Ok(())
}
