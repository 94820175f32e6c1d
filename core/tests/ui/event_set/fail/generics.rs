#[derive(annals_core::EventSet)]
enum Ledger<E> {
    Any(E),
}

fn main() {}
