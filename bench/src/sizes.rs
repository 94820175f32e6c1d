//! The default sizes of the workloads that the peer example
//! (`examples/postgres_es.rs`) runs too, so that both run the same.

/// Commands of `append-seq`.
pub(crate) const APPEND_SEQ_COMMANDS: usize = 4_000;
/// Commands of `append-concurrent`.
pub(crate) const APPEND_CONCURRENT_COMMANDS: usize = 12_800;
/// The tasks of `append-concurrent`.
pub(crate) const TASKS: usize = 64;
/// The accounts each task of `append-concurrent` writes to.
pub(crate) const ACCOUNTS_PER_TASK: usize = 10;
/// The accounts at most that `append-seq` goes round.
pub(crate) const ACCOUNTS: usize = 1_000;
/// The streams of `load`.
pub(crate) const LOAD_STREAMS: usize = 20;
/// The events of each stream of `load`.
pub(crate) const LOAD_EVENTS: usize = 1_000;
/// How many times `load` loads each stream.
pub(crate) const LOADS: usize = 5;

/// The commands each task of `append-concurrent` issues, for `size`
/// commands in all (`--size`, else [`APPEND_CONCURRENT_COMMANDS`]):
/// rounded up, and at least one per account.
pub(crate) fn commands_per_task(size: Option<usize>) -> usize {
    size.unwrap_or(APPEND_CONCURRENT_COMMANDS)
        .div_ceil(TASKS)
        .max(ACCOUNTS_PER_TASK)
}
