use annals_core::testkit::bank::AccountEvent;

#[derive(annals_core::EventSet)]
enum Empty {
    #[events(category = "")]
    Account(AccountEvent),
}

#[derive(annals_core::EventSet)]
enum Dash {
    #[events(category = "bank-account")]
    Account(AccountEvent),
}

#[derive(annals_core::EventSet)]
enum Control {
    #[events(category = "acc\tount")]
    Account(AccountEvent),
}

#[derive(annals_core::EventSet)]
enum Padded {
    #[events(category = "account ")]
    Account(AccountEvent),
}

#[derive(annals_core::EventSet)]
enum NotAString {
    #[events(category = account)]
    Account(AccountEvent),
}

fn main() {}
