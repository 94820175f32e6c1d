//! Durable handlers end to end: the log's events turned into requests by
//! the processor and run by an executor with 4 workers, beside a raw scan
//! of the same events; then the bus with ten subscribers on its own log.
//!
//! One no-op handler is configured for every event, so each event makes
//! one request, stored with the handler's checkpoint, then claimed, run and
//! marked done: three writes per event on the store's writer (the store,
//! one file, is written by one writer). The figure is requests per second
//! from the start of the handlers until every request is done; the
//! baseline is `scan`'s raw read of the same events, so the ratio says
//! what making the work durable costs beside reading the log once.

use std::error::Error;
use std::time::{Duration, Instant};

use annals::projections::handlers::{Attempt, EventHandler, Handlers};
use annals::projections::{async_trait, Envelope, HandlerError};

use crate::model::BankEvent;
use crate::report::{self, Report};
use crate::scan::{scan_raw, RawColumns};
use crate::Settings;

/// Accounts the log's events are spread over.
const STREAMS: usize = 100;
/// Requests run at once.
const WORKERS: usize = 4;

struct NoOp;

#[async_trait]
impl EventHandler for NoOp {
    type Events = BankEvent;
    const NAME: &'static str = "no-op";

    async fn handle(&self, event: &Envelope<BankEvent>, _: &Attempt) -> Result<(), HandlerError> {
        std::hint::black_box(&event.event);
        Ok(())
    }
}

pub(crate) async fn durable(settings: Settings, report: &Report) -> Result<(), Box<dyn Error>> {
    let shape = settings.shape;
    let len = settings.size.unwrap_or(100_000).div_ceil(STREAMS);
    let total = STREAMS * len;
    report.size("events", total);
    report.size("workers", WORKERS);
    let mut best = [Duration::MAX; 2];
    // A fresh log each time: the handler's requests are made once per log.
    for _ in 0..2 {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("annals.db");
        let store = settings.open_store(&path).await?;
        crate::read::fill(&store, shape, STREAMS, len).await?;

        let start = Instant::now();
        let running = Handlers::new(store.clone())
            .on("*", NoOp)
            .workers(WORKERS)
            .start()?;
        running
            .wait_settled_within(Duration::from_secs(600))
            .await?;
        best[0] = best[0].min(start.elapsed());
        let counts = running.counts().await?;
        running.stop().await;
        if counts.requests.done != u64::try_from(total)? {
            return Err(format!("{} of {total} requests done", counts.requests.done).into());
        }

        let start = Instant::now();
        let (count, _) = scan_raw(&path, shape, RawColumns::Envelope)?;
        best[1] = best[1].min(start.elapsed());
        if count != total {
            return Err(format!("the raw scan read {count} of {total} events").into());
        }
        store.close().await;
    }
    let [ours, baseline] = best.map(|took| report::per_second(total, took));
    report.compare("handlers", ours, baseline);
    crate::bus::subscribers(settings, report).await
}
