use annals_core::testkit::bank::AccountEvent;

#[derive(annals_core::EventSet)]
enum Ledger {
    Closed,
    Account { event: AccountEvent },
    Pair(AccountEvent, AccountEvent),
    Tagged(#[events(category = "account")] AccountEvent),
}

fn main() {}
