use annals_core::testkit::bank::AccountEvent;

struct Note;

#[derive(annals_core::EventSet)]
enum Ledger {
    #[events(aggregate = AccountEvent)]
    Account(AccountEvent),
    Note(Note),
}

fn main() {}
