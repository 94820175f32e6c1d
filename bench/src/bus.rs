//! The in-process event bus: the log's committed events handed to ten
//! subscribers, beside a raw scan of the same events.
//!
//! The bus reads the log from its start, page after page, and hands every
//! event to ten subscribers, each in a task of its own, each decoding it.
//! The baseline is the raw scan of `scan`: the same columns, read in
//! position order and decoded once, with no framework. The figure is the
//! log's events per second through the bus (each delivered ten times), so
//! the ratio says what following the log and fanning out costs beside
//! reading it once.

use std::error::Error;
use std::time::{Duration, Instant};

use annals::projections::bus::EventBus;
use annals::Position;

use crate::model::BankEvent;
use crate::report::{self, Report};
use crate::scan::{scan_raw, RawColumns};
use crate::Settings;

/// Subscribers of every event.
const SUBSCRIBERS: usize = 10;
/// Accounts the log's events are spread over.
const STREAMS: usize = 100;

pub(crate) async fn subscribers(settings: Settings, report: &Report) -> Result<(), Box<dyn Error>> {
    let shape = settings.shape;
    let len = settings.size.unwrap_or(100_000).div_ceil(STREAMS);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("annals.db");
    let store = settings.open_store(&path).await?;
    let took = crate::read::fill(&store, shape, STREAMS, len).await?;
    let total = STREAMS * len;
    report.size("events", total);
    report.size("subscribers", SUBSCRIBERS);
    report.figure("fill", report::per_second(total, took), "events/s");
    let deliveries = u64::try_from(total * SUBSCRIBERS)?;
    let mut best = [Duration::MAX; 2];
    for _ in 0..3 {
        let bus = EventBus::new(store.clone());
        let mut subscriptions = Vec::with_capacity(SUBSCRIBERS);
        for _ in 0..SUBSCRIBERS {
            subscriptions.push(bus.subscribe("*", |event| async move {
                std::hint::black_box(event.decode::<BankEvent>()?);
                Ok(())
            })?);
        }
        let start = Instant::now();
        let running = bus.start_at(Position::START)?;
        // The counts move as handlers finish: polling them costs a lock.
        while bus.counts().delivered < deliveries {
            if bus.counts().failed > 0 {
                return Err("a subscriber failed".into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        best[0] = best[0].min(start.elapsed());
        running.stop().await;
        drop(subscriptions);

        let start = Instant::now();
        let (count, _) = scan_raw(&path, shape, RawColumns::Envelope)?;
        best[1] = best[1].min(start.elapsed());
        if count != total {
            return Err(format!("the raw scan read {count} of {total} events").into());
        }
    }
    let [ours, baseline] = best.map(|took| report::per_second(total, took));
    report.compare("bus", ours, baseline);
    report.figure(
        "bus_deliveries",
        report::per_second(total * SUBSCRIBERS, best[0]),
        "deliveries/s",
    );
    Ok(())
}
