//! Given / when / then for aggregates.

use std::fmt::Debug;

use crate::Aggregate;

/// Tests an aggregate's decisions without a store.
///
/// These helpers are assertions: they panic with a message that shows what
/// was expected and what happened, as test assertions do.
///
/// ```
/// use annals_core::testkit::AggregateTest;
/// use annals_core::testkit::bank::{Account, AccountCommand, AccountEvent, BankError};
///
/// AggregateTest::<Account>::given([
///     AccountEvent::Opened { owner: "ada".into() },
///     AccountEvent::Deposited { amount: 30 },
/// ])
/// .when(AccountCommand::Withdraw { amount: 50 })
/// .then_error(BankError::InsufficientFunds { balance: 30, requested: 50 });
///
/// AggregateTest::<Account>::given_no_events()
///     .when(AccountCommand::Open { owner: "ada".into() })
///     .then_events([AccountEvent::Opened { owner: "ada".into() }]);
/// ```
pub struct AggregateTest<A: Aggregate> {
    state: A,
}

impl<A: Aggregate> AggregateTest<A> {
    /// Starts from the state these past events build.
    pub fn given(events: impl IntoIterator<Item = A::Event>) -> Self {
        let mut state = A::default();
        for event in events {
            state.apply(&event);
        }
        AggregateTest { state }
    }

    /// Starts from a new aggregate.
    pub fn given_no_events() -> Self {
        AggregateTest {
            state: A::default(),
        }
    }

    /// Runs a command against the state.
    pub fn when(self, command: A::Command) -> Then<A> {
        let result = self.state.handle(command);
        Then {
            state: self.state,
            result,
        }
    }
}

/// The outcome of [`AggregateTest::when`], to check.
pub struct Then<A: Aggregate> {
    state: A,
    result: Result<Vec<A::Event>, A::Error>,
}

impl<A: Aggregate> Then<A>
where
    A::Event: Debug,
{
    /// Asserts the command produced exactly these events, in order.
    pub fn then_events(self, expected: impl IntoIterator<Item = A::Event>) -> Self
    where
        A::Event: PartialEq,
    {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        match &self.result {
            Ok(events) => assert_eq!(
                events, &expected,
                "the command produced other events than expected"
            ),
            Err(e) => panic!("expected events {expected:?}, but the command failed: {e}"),
        }
        self
    }

    /// Asserts the command produced no events and no error.
    pub fn then_nothing(self) -> Self {
        match &self.result {
            Ok(events) => assert!(events.is_empty(), "expected no events, got {events:?}"),
            Err(e) => panic!("expected no events, but the command failed: {e}"),
        }
        self
    }

    /// Asserts the command failed with exactly this error.
    pub fn then_error(self, expected: A::Error) -> Self
    where
        A::Error: PartialEq + Debug,
    {
        match &self.result {
            Ok(events) => panic!("expected error {expected:?}, but got events {events:?}"),
            Err(e) => assert_eq!(e, &expected, "the command failed with another error"),
        }
        self
    }

    /// Asserts the command failed with an error that passes `check`.
    pub fn then_error_matches(self, check: impl FnOnce(&A::Error) -> bool) -> Self
    where
        A::Error: Debug,
    {
        match &self.result {
            Ok(events) => panic!("expected an error, but got events {events:?}"),
            Err(e) => assert!(check(e), "the error {e:?} did not match"),
        }
        self
    }

    /// Asserts the state after applying the produced events passes `check`.
    pub fn then_state(self, check: impl FnOnce(&A) -> bool) -> Self
    where
        A: Debug + Clone,
    {
        let mut state = self.state.clone();
        if let Ok(events) = &self.result {
            for event in events {
                state.apply(event);
            }
        }
        assert!(check(&state), "the resulting state {state:?} did not match");
        self
    }

    /// The produced events, for checks the helpers do not cover.
    pub fn result(&self) -> &Result<Vec<A::Event>, A::Error> {
        &self.result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::bank::{Account, AccountCommand, AccountEvent, BankError};

    fn opened() -> AccountEvent {
        AccountEvent::Opened {
            owner: "ada".into(),
        }
    }

    #[test]
    fn then_events_passes_when_events_match() {
        AggregateTest::<Account>::given([opened()])
            .when(AccountCommand::Deposit { amount: 5 })
            .then_events([AccountEvent::Deposited { amount: 5 }])
            .then_state(|a| a.balance == 5);
    }

    #[test]
    #[should_panic(expected = "the command produced other events than expected")]
    fn then_events_fails_when_events_differ() {
        AggregateTest::<Account>::given([opened()])
            .when(AccountCommand::Deposit { amount: 5 })
            .then_events([AccountEvent::Deposited { amount: 6 }]);
    }

    #[test]
    #[should_panic(expected = "but the command failed")]
    fn then_events_fails_when_the_command_fails() {
        AggregateTest::<Account>::given_no_events()
            .when(AccountCommand::Deposit { amount: 5 })
            .then_events([AccountEvent::Deposited { amount: 5 }]);
    }

    #[test]
    fn then_error_passes_on_the_domain_rule() {
        AggregateTest::<Account>::given([opened()])
            .when(AccountCommand::Withdraw { amount: 1 })
            .then_error(BankError::InsufficientFunds {
                balance: 0,
                requested: 1,
            });
        AggregateTest::<Account>::given([opened()])
            .when(AccountCommand::Open {
                owner: "bob".into(),
            })
            .then_error_matches(|e| matches!(e, BankError::AlreadyOpen));
    }

    #[test]
    #[should_panic(expected = "but got events")]
    fn then_error_fails_when_the_command_succeeds() {
        AggregateTest::<Account>::given([opened()])
            .when(AccountCommand::Deposit { amount: 1 })
            .then_error(BankError::ZeroAmount);
    }

    #[test]
    #[should_panic(expected = "did not match")]
    fn then_state_fails_when_the_state_differs() {
        AggregateTest::<Account>::given([opened()])
            .when(AccountCommand::Deposit { amount: 1 })
            .then_state(|a| a.balance == 2);
    }
}
