//! Aggregates: the consistency boundary that turns commands into events.
//!
//! An aggregate is plain application code. Its state is rebuilt by applying
//! its past events in order ([`Aggregate::apply`], infallible and
//! deterministic); a command is decided against that state
//! ([`Aggregate::handle`], which never mutates) and yields new events or a
//! domain error. Storage, concurrency and retries belong to the
//! [`crate::Repository`].

use crate::domain::DomainEvent;

/// An event-sourced aggregate.
///
/// ```
/// use annals_core::testkit::bank::{Account, AccountCommand, AccountEvent, BankError};
/// use annals_core::Aggregate;
///
/// let mut account = Account::default();
/// account.apply(&AccountEvent::Opened { owner: "ada".into() });
/// let events = account.handle(AccountCommand::Deposit { amount: 50 })?;
/// assert_eq!(events, vec![AccountEvent::Deposited { amount: 50 }]);
/// assert!(account.handle(AccountCommand::Withdraw { amount: 80 }).is_err());
/// # Ok::<(), BankError>(())
/// ```
///
/// The state is `Clone` so that the repository can keep decided-on state in
/// its cache and hand out copies, never sharing one mutably; a command is
/// `Clone` so that it can be decided again after a conflict.
pub trait Aggregate: Default + Clone + Send + Sync + 'static {
    /// The stream category: instance `42` lives in stream `{CATEGORY}-42`.
    /// Must be a valid name without `-`; a repository refuses to be built
    /// for an aggregate whose category is not.
    const CATEGORY: &'static str;

    /// The version of the state's own schema, stored with snapshots. Bump it
    /// when the state type changes shape: older snapshots are then ignored
    /// and rebuilt from the events.
    const STATE_VERSION: u32 = 1;

    /// The events this aggregate records.
    type Event: DomainEvent;

    /// The commands it handles. `Clone`, so that a command can be decided
    /// again on fresh state when its append meets a conflict.
    type Command: Clone + Send;

    /// The domain error a command can fail with.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Moves the state forward by one event. Must not fail and must depend on
    /// nothing but the state and the event.
    fn apply(&mut self, event: &Self::Event);

    /// Decides what a command means in the current state.
    fn handle(&self, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error>;
}
