#[derive(serde::Serialize, serde::Deserialize, annals_core::DomainEvent)]
#[serde(tag = "type", content = "data")]
enum Adjacent {
    Opened { owner: String },
}

#[derive(serde::Serialize, serde::Deserialize, annals_core::DomainEvent)]
#[serde(untagged)]
enum Untagged {
    Opened { owner: String },
}

fn main() {}
