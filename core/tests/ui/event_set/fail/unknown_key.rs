use annals_core::testkit::bank::AccountEvent;

#[derive(annals_core::EventSet)]
#[events(category = "account")]
enum OnTheEnum {
    #[events(crate = ::annals_core)]
    Account(AccountEvent),
}

#[derive(annals_core::EventSet)]
enum Misspelt {
    #[events(categroy = "account")]
    Account(AccountEvent),
}

#[derive(annals_core::EventSet)]
enum Twice {
    #[events(category = "account", category = "bank")]
    Account(AccountEvent),
}

fn main() {}
