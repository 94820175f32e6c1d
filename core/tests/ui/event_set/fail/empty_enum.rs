#[derive(annals_core::EventSet)]
enum Nothing {}

fn main() {}
