//! The read side: projections building a read model from the log, catching
//! up, rebuilding and following live commits, beside raw rusqlite building
//! the same model.
//!
//! Every scenario builds one model, the balances (per stream, how many
//! events and the sum of the deposits; one upsert per event), in an SQLite
//! file of its own, through annals' exactly-once runner with its default
//! batch of 1,000 events.

mod live;
mod rebuild;

use std::error::Error;
use std::marker::PhantomData;
use std::path::Path;
use std::time::{Duration, Instant};

use annals::projections::{
    BatchFailure, Envelope, HandlerError, Projections, Running, SqliteProjection,
};
use annals::{EventSet, EventStore};
use rusqlite::{params, Transaction};

use crate::model::BankEvent;
use crate::raw::{balance_change, CREATE_BALANCES, UPSERT_BALANCE};

pub(crate) use live::lag;
pub(crate) use rebuild::{compare_builds, fill_round_robin, filtered, rebuild, BATCH, STREAMS};

/// The balances read model, fed the events of `E`: the same table and the
/// same upsert per event as the raw baseline's.
pub(crate) struct Balances<E>(PhantomData<fn() -> E>);

impl<E> Balances<E> {
    pub(crate) fn new() -> Self {
        Balances(PhantomData)
    }
}

impl<E: EventSet + AsRef<BankEvent>> SqliteProjection for Balances<E> {
    type Events = E;
    const NAME: &'static str = "balances";

    fn create(&self, db: &Transaction<'_>) -> Result<(), HandlerError> {
        db.execute_batch(CREATE_BALANCES)?;
        Ok(())
    }

    fn handle(&mut self, db: &Transaction<'_>, event: &Envelope<E>) -> Result<(), HandlerError> {
        let change = balance_change(event.event.as_ref())?;
        db.prepare_cached(UPSERT_BALANCE)?
            .execute(params![event.stream_id.as_str(), change])?;
        Ok(())
    }

    /// The statement prepared once per batch, as the baseline prepares it
    /// once per page.
    fn handle_batch(
        &mut self,
        db: &Transaction<'_>,
        events: &[Envelope<E>],
    ) -> Result<(), BatchFailure> {
        let at = |index: usize| move |error: HandlerError| BatchFailure { index, error };
        let mut upsert = db
            .prepare_cached(UPSERT_BALANCE)
            .map_err(|e| at(0)(e.into()))?;
        for (index, event) in events.iter().enumerate() {
            let change = balance_change(event.event.as_ref()).map_err(|e| at(index)(e.into()))?;
            upsert
                .execute(params![event.stream_id.as_str(), change])
                .map_err(|e| at(index)(e.into()))?;
        }
        Ok(())
    }
}

/// Bank events in the streams of the `scan-filtered` log's rare category
/// (`loan`, the `RARE` of the scan scenarios) only: an event set read
/// through the category's index rather than by event type across the
/// whole log.
#[derive(EventSet)]
pub(crate) enum Loan {
    #[events(category = "loan")]
    Loan(BankEvent),
}

impl AsRef<BankEvent> for Loan {
    fn as_ref(&self) -> &BankEvent {
        let Loan::Loan(event) = self;
        event
    }
}

/// Starts the balances projection of `E` into a new model at `model`.
fn start<E: EventSet + AsRef<BankEvent>, S: EventStore + Clone + 'static>(
    store: &S,
    model: &Path,
) -> Result<Running, Box<dyn Error>> {
    Ok(Projections::new(store.clone())
        .sqlite(model, Balances::<E>::new())
        .start()?)
}

/// Builds the balances of `E` into a new model at `model` from the start of
/// the log, and returns the runner with the time from its start until
/// `wait_idle` returned.
pub(crate) async fn catch_up<E: EventSet + AsRef<BankEvent>, S: EventStore + Clone + 'static>(
    store: &S,
    model: &Path,
) -> Result<(Running, Duration), Box<dyn Error>> {
    let started = Instant::now();
    let running = start::<E, _>(store, model)?;
    running.wait_idle().await?;
    Ok((running, started.elapsed()))
}
