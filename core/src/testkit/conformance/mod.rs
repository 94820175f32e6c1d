//! The store conformance suite: the contract of [`EventStore`] as tests.
//!
//! Every backend runs all of it through one call with a factory that makes a
//! fresh, empty store per case. The suite runs every case, prints each case's
//! name with its result, and fails at the end with the list of broken
//! guarantees:
//!
//! ```
//! use annals_core::testkit::conformance;
//! use annals_core::InMemoryStore;
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! conformance::run(|| async { Ok::<_, std::convert::Infallible>(InMemoryStore::new()) }).await;
//! # }
//! ```
//!
//! Run it on a multi-threaded runtime
//! (`#[tokio::test(flavor = "multi_thread", worker_threads = 2)]`) so that
//! the racing cases really race.

mod basics;
mod checkpoints;
mod filters;
mod idempotency;
mod json;
mod races;
mod reads;
mod requests;
mod snapshots;
mod tracking;

use std::fmt::{Debug, Display};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Barrier;

use crate::{
    CheckpointStore, EventStore, HandlerStore, NewEvent, Payload, SnapshotStore, StreamId,
};

/// What a case returns: `Err` names the broken expectation.
pub(crate) type CaseResult = Result<(), String>;

type CaseFuture = Pin<Box<dyn Future<Output = CaseResult> + Send>>;

/// One check of the contract of a store trait `T`.
struct Case<T: ?Sized> {
    name: &'static str,
    /// The number of the guarantee in the trait's docs.
    guarantee: u8,
    run: fn(Arc<T>, Options) -> CaseFuture,
}

/// What a backend promises beyond the common contract.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    /// Positions have no gaps (every store but PostgreSQL).
    pub(crate) gap_free_positions: bool,
}

impl Default for Options {
    /// The common contract: gap-free positions.
    fn default() -> Self {
        Options {
            gap_free_positions: true,
        }
    }
}

/// Runs every case against fresh stores from `factory`; panics at the end if
/// any guarantee is broken.
pub async fn run<F, Fut, S, E>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<S, E>>,
    S: EventStore + 'static,
    E: Debug,
{
    Suite::new(factory).run().await;
}

/// The suite with options, for backends that promise less or more.
pub struct Suite<F> {
    factory: F,
    options: Options,
    case_timeout: Duration,
}

impl<F, Fut, S, E> Suite<F>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<S, E>>,
    S: EventStore + 'static,
    E: Debug,
{
    /// The full suite with gap-free positions expected.
    pub fn new(factory: F) -> Self {
        Suite {
            factory,
            options: Options::default(),
            case_timeout: Duration::from_secs(120),
        }
    }

    /// Allows gaps between positions (still unique and strictly increasing).
    pub fn positions_may_have_gaps(mut self) -> Self {
        self.options.gap_free_positions = false;
        self
    }

    /// Runs every case; panics at the end with the list of failures.
    pub async fn run(self) {
        run_contract(
            &all_cases(),
            self.factory,
            |store| Arc::new(store) as Arc<dyn EventStore>,
            self.options,
            self.case_timeout,
        )
        .await;
    }
}

/// Runs the snapshot store contract ([`SnapshotStore`]'s numbered
/// guarantees) against fresh stores from `factory`; panics at the end if any
/// is broken.
///
/// ```
/// use annals_core::testkit::conformance;
/// use annals_core::InMemoryStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// conformance::run_snapshots(|| async { Ok::<_, std::convert::Infallible>(InMemoryStore::new()) }).await;
/// # }
/// ```
pub async fn run_snapshots<F, Fut, S, E>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<S, E>>,
    S: SnapshotStore + 'static,
    E: Debug,
{
    run_contract(
        &snapshot_cases(),
        factory,
        |store| Arc::new(store) as Arc<dyn SnapshotStore>,
        Options::default(),
        Duration::from_secs(60),
    )
    .await;
}

/// Runs the checkpoint store contract ([`CheckpointStore`]'s numbered
/// guarantees), and guarantee 13 of [`EventStore`] (appends that track a
/// checkpoint, which needs both traits), against fresh stores from
/// `factory`; panics at the end if any is broken.
///
/// Run it on a multi-threaded runtime, so that the cases where saves race
/// with a reader, and tracked appends with each other, really race.
///
/// ```
/// use annals_core::testkit::conformance;
/// use annals_core::InMemoryStore;
///
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() {
/// conformance::run_checkpoints(|| async { Ok::<_, std::convert::Infallible>(InMemoryStore::new()) }).await;
/// # }
/// ```
pub async fn run_checkpoints<F, Fut, S, E>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<S, E>>,
    S: EventStore + CheckpointStore + 'static,
    E: Debug,
{
    run_contract(
        &checkpoint_cases(),
        factory,
        |store| Arc::new(store) as Arc<dyn CheckpointedStore>,
        Options::default(),
        Duration::from_secs(60),
    )
    .await;
}

/// Runs the handler request contract ([`HandlerStore`]'s numbered
/// guarantees) against fresh stores from `factory`; panics at the end if
/// any is broken.
///
/// Run it on a multi-threaded runtime, so that racing claims really race.
///
/// ```
/// use annals_core::testkit::conformance;
/// use annals_core::InMemoryStore;
///
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() {
/// conformance::run_handler_requests(|| async { Ok::<_, std::convert::Infallible>(InMemoryStore::new()) }).await;
/// # }
/// ```
pub async fn run_handler_requests<F, Fut, S, E>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<S, E>>,
    S: HandlerStore + 'static,
    E: Debug,
{
    run_contract(
        &request_cases(),
        factory,
        |store| Arc::new(store) as Arc<dyn HandlerStore>,
        Options::default(),
        Duration::from_secs(60),
    )
    .await;
}

/// A store that keeps followers' checkpoints beside its log: what the
/// cases of tracked appends need. Every store that is both is one.
pub(crate) trait CheckpointedStore: EventStore + CheckpointStore {}

impl<S: EventStore + CheckpointStore + ?Sized> CheckpointedStore for S {}

/// Runs `cases` of the contract of the trait `T` against fresh stores from
/// `factory`, each shared as `Arc<T>` by `share`.
async fn run_contract<T, F, Fut, S, E>(
    cases: &[Case<T>],
    factory: F,
    share: fn(S) -> Arc<T>,
    options: Options,
    timeout: Duration,
) where
    T: ?Sized + Send + Sync + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<S, E>>,
    E: Debug,
{
    let factory = &factory;
    let make = || async move { factory().await.map(share).map_err(|e| format!("{e:?}")) };
    run_cases(cases, make, options, timeout).await;
}

/// Runs each case on a fresh store, reports each, and panics at the end with
/// the list of broken guarantees.
async fn run_cases<T, M, Fut>(cases: &[Case<T>], make: M, options: Options, timeout: Duration)
where
    T: ?Sized + Send + Sync + 'static,
    M: Fn() -> Fut,
    Fut: Future<Output = Result<Arc<T>, String>>,
{
    let mut failures = Vec::new();
    for case in cases {
        let outcome = match make().await {
            Err(e) => Err(format!("the factory failed to make a store: {e}")),
            Ok(store) => {
                // Spawned so that a panicking case is reported, not fatal.
                let task = tokio::spawn((case.run)(store, options));
                match tokio::time::timeout(timeout, task).await {
                    Err(_) => Err(format!("did not finish within {timeout:?}")),
                    Ok(Err(join)) => Err(format!("panicked: {}", panic_message(join))),
                    Ok(Ok(result)) => result,
                }
            }
        };
        match outcome {
            Ok(()) => println!("conformance: {} ... ok", case.name),
            Err(why) => {
                println!("conformance: {} ... FAILED: {why}", case.name);
                failures.push(format!(
                    "guarantee {}: {}: {why}",
                    case.guarantee, case.name
                ));
            }
        }
    }
    println!(
        "conformance: {} passed, {} failed",
        cases.len() - failures.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "the store breaks {} case(s) of the contract:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

fn panic_message(join: tokio::task::JoinError) -> String {
    match join.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a non-text panic".to_owned()),
        Err(e) => e.to_string(),
    }
}

macro_rules! cases {
    ($($guarantee:literal $module:ident :: $name:ident),* $(,)?) => {
        cases!(|store| store; $($guarantee $module::$name),*)
    };
    // Each case gets the store as `$share` makes it from the suite's.
    (|$store:ident| $share:expr; $($guarantee:literal $module:ident :: $name:ident),* $(,)?) => {
        vec![$(Case {
            name: stringify!($name),
            guarantee: $guarantee,
            run: |$store, options| Box::pin($module::$name($share, options)),
        }),*]
    };
}

fn snapshot_cases() -> Vec<Case<dyn SnapshotStore>> {
    cases![
        1 snapshots::missing_snapshot_loads_as_none,
        1 snapshots::saved_snapshot_loads_back_exactly,
        2 snapshots::newer_snapshot_replaces_an_older_one,
        2 snapshots::older_snapshot_never_replaces_a_newer_one,
        1 snapshots::snapshots_of_different_streams_are_separate,
    ]
}

/// The checkpoint store contract, then guarantee 13 of the store contract.
fn checkpoint_cases() -> Vec<Case<dyn CheckpointedStore>> {
    // The checkpoint cases need only the checkpoint half: an `Arc` of the
    // store is one (without trait upcasting, which the minimum Rust version
    // lacks).
    let mut cases = cases![|store| Arc::new(store) as Arc<dyn CheckpointStore>;
        1 checkpoints::missing_checkpoint_loads_as_none,
        1 checkpoints::saved_checkpoint_loads_back_exactly,
        1 checkpoints::checkpoints_of_different_names_are_separate,
        1 checkpoints::hostile_but_valid_names_round_trip,
        2 checkpoints::save_moves_the_checkpoint_forward,
        2 checkpoints::save_below_the_checkpoint_never_moves_it_back,
        2 checkpoints::skipped_events_are_recorded_with_their_checkpoint,
        2 checkpoints::saving_the_same_skipped_event_twice_keeps_one_record,
        2 checkpoints::readers_never_find_a_checkpoint_without_its_skipped_events,
        3 checkpoints::skipped_events_list_in_position_order,
        3 checkpoints::name_without_skipped_events_lists_none,
        4 checkpoints::reset_forgets_the_checkpoint_and_its_skipped_events,
        4 checkpoints::reset_of_one_name_leaves_the_others,
    ];
    cases.extend(cases![
        13 tracking::tracked_append_commits_events_and_checkpoint_together,
        13 tracking::tracked_append_at_or_before_the_checkpoint_fails_with_already_tracked,
        13 tracking::tracked_range_from_at_or_before_the_checkpoint_fails_with_already_tracked,
        13 tracking::tracked_append_with_a_conflict_leaves_the_checkpoint,
        13 tracking::retry_of_committed_tracked_append_returns_original_result,
        13 tracking::racing_tracked_appends_of_one_position_exactly_one_wins,
        13 tracking::untracked_append_leaves_checkpoints_alone,
        13 tracking::tracked_append_with_invalid_name_fails_with_invalid_checkpoint_name,
    ]);
    cases
}

fn request_cases() -> Vec<Case<dyn HandlerStore>> {
    cases![
        1 requests::each_pair_is_stored_once_with_its_checkpoint,
        2 requests::claims_take_priority_then_position,
        2 requests::racing_claims_never_share_a_request,
        2 requests::expired_claim_is_claimed_again_with_a_failure,
        2 requests::ordering_key_holds_only_its_own_key,
        3 requests::renewed_claim_holds_past_its_lease,
        4 requests::finishing_records_each_outcome,
        5 requests::listing_filters_and_pages,
        6 requests::dead_requests_are_requeued_or_discarded,
        8 requests::counts_follow_each_status,
    ]
}

fn all_cases() -> Vec<Case<dyn EventStore>> {
    cases![
        1 basics::versions_start_at_one_without_gaps,
        2 basics::positions_increase_in_commit_order,
        3 basics::each_expected_version_accepts_its_state,
        3 basics::append_with_stale_version_fails_with_conflict,
        3 basics::expected_version_mismatches_fail_with_conflict_and_write_nothing,
        4 basics::multi_stream_append_commits_all_streams_together,
        4 basics::multi_stream_append_with_one_conflict_writes_nothing,
        5 idempotency::retry_of_committed_append_returns_original_result,
        5 idempotency::retry_after_the_stream_moved_on_returns_original_result,
        5 idempotency::partial_overlap_fails_with_partial_duplicate,
        5 idempotency::reused_id_with_other_content_fails_with_event_id_reused,
        5 idempotency::reused_id_in_another_stream_fails_with_event_id_reused,
        6 idempotency::empty_append_fails_with_empty,
        6 idempotency::duplicate_id_in_one_append_fails_with_duplicate_event_id,
        6 idempotency::stream_named_twice_fails_with_duplicate_stream,
        6 idempotency::oversized_payload_fails_with_payload_too_large,
        6 idempotency::oversized_append_fails_with_too_many_events,
        6 idempotency::invalid_metadata_fails_with_invalid_metadata,
        7 reads::events_read_back_exactly_as_appended,
        7 reads::hostile_but_valid_ids_are_stored_byte_exact,
        7 reads::read_stream_honours_direction_start_and_limit,
        7 reads::read_all_pages_after_a_position,
        7 reads::long_stream_reads_to_end_across_pages,
        7 reads::replay_reads_match_full_reads,
        7 json::any_json_payload_reads_back_byte_for_byte,
        8 races::followers_never_skip_committed_events,
        9 races::racing_appends_with_one_version_exactly_one_wins,
        9 races::read_modify_write_loops_lose_nothing,
        9 races::appends_with_any_all_succeed,
        9 races::racing_retries_of_one_append_write_once,
        4 races::racing_multi_stream_appends_are_all_or_nothing,
        10 races::head_watch_wakes_after_commit,
        11 filters::short_filtered_page_reads_through_the_head,
        11 filters::full_page_reads_through_its_last_event,
        11 filters::filtered_follower_sees_every_match_once_under_writers,
        12 filters::read_all_filters_by_category_prefix_and_type,
        12 filters::categories_and_prefixes_widen_and_types_narrow,
        12 filters::paged_filtered_reads_find_exactly_what_the_filter_matches,
    ]
}

// ---------------------------------------------------------------------------
// Helpers shared by the cases.

/// Turns any displayable error into a case failure naming the step.
pub(crate) trait Step<T> {
    fn step(self, what: &str) -> Result<T, String>;
}

impl<T, E: Display> Step<T> for Result<T, E> {
    fn step(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

/// Fails the case with a message unless the condition holds.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}
pub(crate) use ensure;

pub(crate) fn stream(id: &str) -> StreamId {
    // Cases only name valid ids.
    StreamId::new(id).expect("conformance cases use valid stream ids")
}

/// A small event whose payload records `n`.
pub(crate) fn event(n: usize) -> NewEvent {
    let payload = Payload::from_json(format!("{{\"n\":{n}}}")).expect("valid JSON");
    NewEvent::new("Happened", 1, payload).expect("valid event type")
}

/// Whether a whole stream, read oldest first, has versions 1, 2, 3... with
/// no gap.
pub(crate) fn versions_are_contiguous(stream: &[crate::RecordedEvent]) -> bool {
    stream.iter().zip(1..).all(|(e, v)| e.version == v)
}

pub(crate) fn events(range: std::ops::Range<usize>) -> Vec<NewEvent> {
    range.map(event).collect()
}

/// Runs `n` tasks, released together by a barrier so that they really race,
/// and returns their results in task order.
pub(crate) async fn race<T, F, Fut>(n: usize, task: F) -> Result<Vec<T>, String>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let barrier = Arc::new(Barrier::new(n));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (barrier, work) = (barrier.clone(), task(i));
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            work.await
        }));
    }
    let mut results = Vec::with_capacity(n);
    for task in tasks {
        results.push(task.await.step("racing task")?);
    }
    Ok(results)
}
