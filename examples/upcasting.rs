//! Schema evolution: events stored by old code, read by new code.
//!
//! Stored events are never rewritten. When an event's shape changes, the new
//! code declares *upcasters*: small steps that turn the stored JSON of an old
//! version into the next version as events are read. A step can rename a
//! type, reshape its payload, or split one event into several.
//!
//! This program writes an account's events with the old code (module `old`),
//! then loads and reads them with the new code (module `new`), whose event
//! enum declares its upcasters with `#[event(upcasters = ...)]`.
//!
//! Run it with `cargo run --example upcasting`. The events go into a
//! temporary SQLite store that is removed when the program ends.

use annals::prelude::*;
use annals::sqlite::SqliteStore;
use annals::upcast::Upcasters;
use annals::{
    ExpectedVersion, LoadError, Metadata, NewEvent, Payload, Position, ReadAll, RecordedEvent,
    Repository, StreamId,
};

/// The code as it was: amounts in whole euros, and the opening deposit kept
/// inside "AccountCreated".
mod old {
    use annals::DomainEvent;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Serialize, Deserialize, DomainEvent)]
    pub enum AccountEvent {
        AccountCreated { name: String, initial_euros: u64 },
        MoneyDeposited { euros: u64 },
    }
}

/// The code as it is now: "Opened" (version 3) holds only the owner, and
/// every deposit, the opening one included, is a "Deposited" (version 2) in
/// cents.
mod new {
    use annals::prelude::*;
    use annals::upcast::{StepError, UpcastEvent, Upcaster};
    use serde::{Deserialize, Serialize};
    use serde_json::{json, Value};

    #[derive(Debug, Serialize, Deserialize, DomainEvent)]
    #[event(upcasters = account_upcasters)]
    pub enum AccountEvent {
        #[event(version = 3)]
        Opened { owner: String },
        #[event(version = 2)]
        Deposited { cents: u64 },
    }

    /// Reads whole euros from a payload field, as cents. An upcaster's
    /// error reaches logs: it names the field, never the stored value.
    fn cents(payload: &Value, field: &str) -> Result<u64, StepError> {
        let euros = payload[field]
            .as_u64()
            .ok_or_else(|| StepError::new(format!("no {field}")))?;
        euros
            .checked_mul(100)
            .ok_or_else(|| StepError::new(format!("{field} too large")))
    }

    /// Each step takes one (type, version) to the next; the registry checks
    /// at start-up that every old version has a path to a current one.
    fn account_upcasters() -> Vec<Upcaster> {
        vec![
            // Rename: "AccountCreated" v1 is now called "Opened" (still v1).
            Upcaster::rename("AccountCreated", 1, "Opened"),
            // Reshape: Opened v1 -> v2. "name" became "owner"; euros became cents.
            Upcaster::reshape("Opened", 1, |payload| {
                let initial_cents = cents(payload, "initial_euros")?;
                *payload = json!({ "owner": payload["name"], "initial_cents": initial_cents });
                Ok::<(), StepError>(())
            }),
            // Split: Opened v2 -> Opened v3, plus a Deposited v2 for the
            // opening deposit. Both keep the stored event's place in the log.
            Upcaster::new(
                "Opened",
                2,
                &[("Opened", 3), ("Deposited", 2)],
                |event: UpcastEvent| {
                    let opened = UpcastEvent {
                        schema_version: 3,
                        payload: json!({ "owner": event.payload["owner"] }),
                        ..event.clone()
                    };
                    let deposited = UpcastEvent {
                        event_type: "Deposited".into(),
                        schema_version: 2,
                        payload: json!({ "cents": event.payload["initial_cents"] }),
                        ..event
                    };
                    Ok::<_, StepError>(vec![opened, deposited])
                },
            ),
            // "MoneyDeposited" v1 {euros}: renamed, then reshaped into cents.
            Upcaster::rename("MoneyDeposited", 1, "Deposited"),
            Upcaster::reshape("Deposited", 1, |payload| {
                *payload = json!({ "cents": cents(payload, "euros")? });
                Ok::<(), StepError>(())
            }),
        ]
    }

    /// The account, as the new code sees it.
    #[derive(Debug, Default, Clone)]
    pub struct Account {
        pub owner: String,
        pub balance_cents: u64,
    }

    impl Aggregate for Account {
        const CATEGORY: &'static str = "account";
        type Event = AccountEvent;
        // This example only loads accounts; examples/bank.rs runs commands.
        type Command = ();
        type Error = std::convert::Infallible;

        fn apply(&mut self, event: &AccountEvent) {
            match event {
                AccountEvent::Opened { owner } => self.owner.clone_from(owner),
                AccountEvent::Deposited { cents } => self.balance_cents += cents,
            }
        }

        fn handle(&self, _command: ()) -> Result<Vec<AccountEvent>, Self::Error> {
            Ok(Vec::new())
        }
    }
}

/// One line per event: its place, its stored type and version, its payload.
fn describe(event: &RecordedEvent) -> String {
    format!(
        "position {} | {:<14} v{} {}",
        event.position,
        event.event_type.as_str(),
        event.schema_version,
        event.payload.as_str()
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = SqliteStore::open_temporary().await?;
    let stream = StreamId::new("account-ada")?;

    println!("1. The old code writes Ada's account in its own shapes. As stored:");
    let history = [
        old::AccountEvent::AccountCreated {
            name: "Ada Lovelace".into(),
            initial_euros: 100,
        },
        old::AccountEvent::MoneyDeposited { euros: 5 },
    ];
    let events = history
        .iter()
        .map(|event| NewEvent::from_domain(event, Metadata::default()))
        .collect::<Result<Vec<_>, _>>()?;
    store
        .append_to_stream(&stream, ExpectedVersion::NoStream, events)
        .await?;
    let stored = store.read_stream_to_end(&stream).await?;
    for event in &stored {
        println!("   {}", describe(event));
    }

    println!("\n2. The new code loads the account. Its repository checks the upcasters");
    println!("   when it is made, and runs them on every old event it reads:");
    let accounts = Repository::<new::Account, _>::new(store.clone())?;
    let ada = accounts.load("ada").await?;
    println!(
        "   owner {:?}, balance {} cents, stream version {} (two events stored)",
        ada.state.owner, ada.state.balance_cents, ada.version
    );

    println!("\n3. The same events read through the upcasters, before and after:");
    let upcasting = store
        .clone()
        .with_upcasters(Upcasters::for_events::<new::AccountEvent>()?);
    let current = upcasting.read_stream_to_end(&stream).await?;
    for before in &stored {
        println!("   stored   {}", describe(before));
        // A split's parts share the stored event's position.
        for after in current.iter().filter(|e| e.position == before.position) {
            println!("   read as  {}", describe(after));
        }
    }

    println!("\n4. A read of the log filtered by a new name finds the old names too:");
    let deposits = upcasting
        .read_all(ReadAll::after(Position::START).event_type(new::AccountEvent::DEPOSITED))
        .await?;
    for event in &deposits {
        println!("   {}", describe(event));
    }

    println!("\n5. Events read from the plain store decode with the type's own upcasters;");
    println!("   one that an upcaster splits needs the upcasting store of step 3:");
    let log = store.read_all(ReadAll::after(Position::START)).await?;
    for event in &log {
        match event.decode::<new::AccountEvent>() {
            Ok(decoded) => println!("   position {}: {decoded:?}", event.position),
            Err(error) => println!("   {error}"),
        }
    }

    println!("\n6. Nothing was rewritten. The stored rows still hold the old shapes:");
    let unchanged = store.read_stream_to_end(&stream).await? == stored;
    println!("   stored rows identical to step 1: {unchanged}");

    println!("\n7. An event from a schema newer than this code is an error, not a skip:");
    let newer = NewEvent::new("Deposited", 3, Payload::from_json(r#"{"cents":1}"#)?)?;
    store
        .append_to_stream(&stream, ExpectedVersion::Exact(2), vec![newer])
        .await?;
    match accounts.load("ada").await {
        Err(error @ LoadError::Decode(_)) => println!("   {error}"),
        other => return Err(format!("expected a decode error, got {other:?}").into()),
    }
    Ok(())
}
