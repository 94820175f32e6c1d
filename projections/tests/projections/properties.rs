//! For random logs, batch sizes and crash points, the exactly-once model
//! equals the fold of the log, with every event applied once.

use annals_core::testkit::bank::AccountEvent;
use annals_core::{InMemoryStore, Position};
use annals_projections::{
    Envelope, FailurePolicy, HandlerError, ProjectionFailure, Projections, SqliteProjection,
    WaitError,
};
use proptest::prelude::*;
use rusqlite::{params, Transaction};

use crate::fixtures::*;

/// The balances model, failing once at a chosen position: a crash in the
/// middle of a batch, which rolls the batch back.
struct CrashingBalances {
    inner: Balances<1>,
    crash_at: Option<u64>,
}

impl SqliteProjection for CrashingBalances {
    type Events = AccountEvent;
    const NAME: &'static str = "balances";

    fn create(&self, db: &Transaction<'_>) -> Result<(), HandlerError> {
        self.inner.create(db)
    }

    fn handle(
        &mut self,
        db: &Transaction<'_>,
        event: &Envelope<AccountEvent>,
    ) -> Result<(), HandlerError> {
        // Written first so that the crash leaves work for the rollback.
        self.inner.handle(db, event)?;
        if self.crash_at == Some(event.position.0) {
            db.execute("UPDATE balances SET cents = cents + ?1", params![1_000_000])?;
            return Err("crashed".into());
        }
        Ok(())
    }
}

async fn run_case(events: Vec<(u8, u8)>, batch: usize, crashes: Vec<u64>) -> Result<(), String> {
    let (_dir, model, store) = setup();
    let store: InMemoryStore = store;
    let mut head = Position::START;
    for (account, amount) in &events {
        let account = account.to_string();
        let event = if head.0 % 7 == 0 {
            AccountEvent::Opened {
                owner: account.clone(),
            }
        } else {
            AccountEvent::Deposited {
                amount: u64::from(*amount) + 100,
            }
        };
        head = record(&store, &account, event).await;
    }
    for crash in crashes.into_iter().chain([0]) {
        let crash_at = (crash > 0).then(|| crash % head.0.max(1) + 1);
        let projection = CrashingBalances {
            inner: Balances::<1>::with(Switches::default(), FailurePolicy::Stop),
            crash_at,
        };
        let running = Projections::new(store.clone())
            .batch_size(batch)
            .sqlite(&model, projection)
            .start()
            .map_err(|e| e.to_string())?;
        match running.wait_for("balances", head).await {
            Ok(()) => {}
            Err(WaitError::Failed(ProjectionFailure::Event { position, .. }))
                if Some(position.0) == crash_at => {}
            Err(other) => return Err(format!("unexpected: {other}")),
        }
        running.stop().await;
    }
    let seen = model_seen(&model);
    if seen != (1..=head.0).collect::<Vec<_>>() {
        return Err(format!("events applied {seen:?}, log has 1..={head}"));
    }
    let (model, folded) = (model_balances(&model), folded_balances(&store).await);
    if model != folded {
        return Err(format!("model {model:?} != fold {folded:?}"));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn exactly_once_model_equals_the_fold_of_the_log_whatever_the_crashes(
        events in prop::collection::vec((0u8..6, 0u8..50), 1..120),
        batch in 1usize..40,
        crashes in prop::collection::vec(0u64..1_000, 0..4),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let result = runtime.block_on(run_case(events, batch, crashes));
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }
}
