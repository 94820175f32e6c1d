//! Properties of replay and of positions, checked on random inputs.

use std::collections::BTreeMap;

use annals_core::testkit::bank::{Account, AccountCommand};
use annals_core::{
    Aggregate, CommandContext, EventStore, EventStoreExt, ExpectedVersion, InMemoryStore, NewEvent,
    Payload, Position, ReadAll, Repository, StreamId,
};
use proptest::prelude::*;

fn command() -> impl Strategy<Value = AccountCommand> {
    prop_oneof![
        "[a-z]{1,8}".prop_map(|owner| AccountCommand::Open { owner }),
        (0u64..500).prop_map(|amount| AccountCommand::Deposit { amount }),
        (0u64..500).prop_map(|amount| AccountCommand::Withdraw { amount }),
    ]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a test runtime starts")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Replaying a stream always yields the same state, and the same state
    /// as deciding and applying the commands one by one in memory.
    #[test]
    fn replaying_a_stream_always_yields_the_same_state(
        commands in prop::collection::vec(command(), 0..40)
    ) {
        let rt = runtime();
        rt.block_on(async {
            let repo = Repository::<Account, _>::new(InMemoryStore::new());
            let mut model = Account::default();
            for c in commands {
                let decided = model.handle(c.clone());
                let stored = repo.execute("p", c, &CommandContext::new()).await;
                prop_assert_eq!(decided.is_ok(), stored.is_ok());
                for e in decided.unwrap_or_default() {
                    model.apply(&e);
                }
            }
            let first = repo.load("p").await.map_err(|e| TestCaseError::fail(e.to_string()))?;
            let second = repo.load("p").await.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&first, &second);
            prop_assert_eq!(first.state, model);
            Ok(())
        })?;
    }

    /// Any interleaving of appends from several tasks gives strictly
    /// increasing, gap-free positions and contiguous versions per stream.
    #[test]
    fn positions_are_gap_free_and_increasing_across_any_interleaving(
        plans in prop::collection::vec(prop::collection::vec((0usize..4, 1usize..5), 1..8), 1..5)
    ) {
        let rt = runtime();
        rt.block_on(async {
            let store = InMemoryStore::new();
            let mut tasks = Vec::new();
            for (task, plan) in plans.iter().cloned().enumerate() {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    for (n, (stream, count)) in plan.into_iter().enumerate() {
                        let id = StreamId::new(format!("s-{stream}")).expect("valid");
                        let events = (0..count)
                            .map(|i| {
                                let json = format!("{{\"task\":{task},\"n\":{n},\"i\":{i}}}");
                                NewEvent::new("E", 1, Payload::from_json(json).expect("valid"))
                                    .expect("valid")
                            })
                            .collect();
                        store
                            .append_to_stream(&id, ExpectedVersion::Any, events)
                            .await
                            .expect("appends with Any succeed");
                        tokio::task::yield_now().await;
                    }
                }));
            }
            for t in tasks {
                t.await.map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            let log = store
                .read_all(ReadAll::after(Position::START))
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let total: usize = plans.iter().flatten().map(|(_, c)| c).sum();
            prop_assert_eq!(log.len(), total);
            for (e, p) in log.iter().zip(1u64..) {
                prop_assert_eq!(e.position, Position(p));
            }
            let mut versions: BTreeMap<&str, u64> = BTreeMap::new();
            for e in &log {
                let v = versions.entry(e.stream_id.as_str()).or_default();
                *v += 1;
                prop_assert_eq!(e.version, *v);
            }
            Ok(())
        })?;
    }
}
