use annals_core::testkit::bank::AccountEvent;

#[derive(annals_core::EventSet)]
enum Ledger {
    #[events(category = "account")]
    Account(AccountEvent),
    #[events(category = "archive")]
    Archive(AccountEvent),
}

fn main() {}
