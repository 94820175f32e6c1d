use annals_core::testkit::bank::AccountEvent;

#[derive(annals_core::EventSet)]
enum Ledger {
    #[events(category = "account", aggregate = annals_core::testkit::bank::Account)]
    Account(AccountEvent),
}

fn main() {}
