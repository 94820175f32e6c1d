#[derive(annals_core::EventSet)]
struct Ledger {
    account: annals_core::testkit::bank::AccountEvent,
}

#[derive(annals_core::EventSet)]
union Bits {
    int: u32,
}

fn main() {}
