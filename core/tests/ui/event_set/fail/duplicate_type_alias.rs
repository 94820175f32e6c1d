use annals_core::testkit::bank::AccountEvent;

type Alias = AccountEvent;

#[derive(annals_core::EventSet)]
enum Ledger {
    #[events(category = "account")]
    Account(AccountEvent),
    #[events(category = "archive")]
    Archive(Alias),
}

fn main() {}
