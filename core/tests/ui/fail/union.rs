#[derive(annals_core::DomainEvent)]
union Bits {
    int: u32,
    float: f32,
}

fn main() {}
