//! `#[derive(DomainEvent)]`: stored names, schema versions and tag-free
//! payloads for annals events; and `#[derive(EventSet)]`, several event
//! types as the one type a reader of the global log decodes into (see
//! [the last section](#deriveeventset)).
//!
//! Use them through `annals-core` (feature `derive`), which re-exports them,
//! or through `annals`; the generated code names their items.
//!
//! Each variant of an event enum is one stored event type. The derive gives
//! every variant a stored name and a schema version, and encodes the
//! variant's content *without* the enum tag: the name is stored beside the
//! payload, so upcasters can reshape the JSON without knowing the enum.
//!
//! ```
//! use annals_core::upcast::Upcaster;
//! use annals_core::DomainEvent;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize, DomainEvent)]
//! #[event(upcasters = account_upcasters)]
//! enum AccountEvent {
//!     Opened { owner: String },
//!     #[event(name = "MoneyDeposited", version = 2)]
//!     Deposited { cents: u64 },
//!     Closed,
//! }
//!
//! /// Version 1 of "MoneyDeposited" counted whole euros.
//! fn account_upcasters() -> Vec<Upcaster> {
//!     vec![Upcaster::reshape("MoneyDeposited", 1, |payload| {
//!         let euros = payload["euros"].as_u64().ok_or("euros is not a number")?;
//!         *payload = serde_json::json!({ "cents": euros * 100 });
//!         Ok::<(), &str>(())
//!     })]
//! }
//!
//! let event = AccountEvent::Deposited { cents: 500 };
//! assert_eq!((event.event_type(), event.schema_version()), ("MoneyDeposited", 2));
//! let payload = event.encode()?;
//! assert_eq!(payload.as_str(), r#"{"cents":500}"#);
//! assert_eq!(AccountEvent::decode("MoneyDeposited", 2, &payload)?, event);
//! assert_eq!(AccountEvent::Closed.encode()?.as_str(), "{}");
//! assert_eq!(
//!     AccountEvent::known_types(),
//!     &[("Opened", 1), ("MoneyDeposited", 2), ("Closed", 1)]
//! );
//! // Each stored name is a constant, for filters the compiler checks.
//! assert_eq!(AccountEvent::DEPOSITED, "MoneyDeposited");
//! assert_eq!(AccountEvent::CLOSED.as_str(), "Closed");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Stored names as constants
//!
//! Each variant's stored name becomes an associated constant of type
//! `EventType`, named after the variant in SCREAMING_SNAKE_CASE
//! (`Deposited` gives `AccountEvent::DEPOSITED`, whatever its stored name);
//! a struct gets `EVENT_TYPE`. Filters of the global log take them
//! (`ReadAll::after(p).event_type(AccountEvent::DEPOSITED)`), so a typo is a
//! compile error rather than a filter that silently reads nothing. Two
//! variants whose constants would collide (`Paid` and `PAID`) are refused.
//!
//! # The payload
//!
//! | the event | Rust value | stored payload |
//! |---|---|---|
//! | struct variant | `Deposited { cents: 5 }` | `{"cents":5}` |
//! | newtype variant | `Renamed(String::from("ada"))` | the inner value: `"ada"` |
//! | tuple variant | `Moved(1, 2)` | `[1,2]` |
//! | unit variant | `Closed` | `{}` (decoding also accepts `null`) |
//! | a struct type | `struct Opened { owner: String }` | serde's own form: `{"owner":"ada"}` |
//!
//! Only the outermost tag goes: an enum inside a field keeps serde's usual
//! representation. The content comes from the type's own `Serialize` and
//! `Deserialize`, so derive both with serde; field attributes (`rename`,
//! `default`, `with`, `skip_serializing_if`, `flatten`...) and variant
//! `rename`/`alias`/`rename_all` keep working. No intermediate
//! `serde_json::Value` is built in either direction.
//!
//! Encoding refuses what an `annals_core::Payload` refuses: a NaN or infinite float, a `\u0000`, nesting deeper than
//! `MAX_DEPTH`. Decoding fails with
//!
//! - `DecodeError::UnknownEventType` for a stored name the type does not know;
//! - `DecodeError::FutureSchemaVersion` for a version newer than the variant's;
//! - `DecodeError::OutdatedSchemaVersion` for an older one (register an
//!   upcaster, so the store brings it up to date before it is decoded);
//! - `DecodeError::InvalidPayload` when the JSON does not fit the variant or
//!   has anything after the value; the message names the mismatch, never the
//!   stored value.
//!
//! # Attributes
//!
//! On a variant (or on a struct, which is one event type):
//!
//! - `#[event(name = "...")]`: the stored name. Default: the variant's (or
//!   struct's) identifier, without `r#`. It follows the event type rules:
//!   non-empty, at most 255 bytes, no control characters, no leading or
//!   trailing whitespace. Two variants cannot share a name.
//! - `#[event(version = N)]`: the schema version this code writes and reads,
//!   an integer of 1 or more. Default: 1.
//!
//! On the enum (or on a struct):
//!
//! - `#[event(upcasters = path::to::function)]`: a `fn() -> Vec<Upcaster>`
//!   that becomes `DomainEvent::upcasters`. Default: no upcasters.
//! - `#[event(crate = path::to::annals)]`: where the annals items are, for a
//!   dependency renamed in `Cargo.toml`. Default: read from `Cargo.toml`,
//!   `::annals_core` if the package depends on `annals-core` (or is it),
//!   else `::annals`.
//!
//! Several keys can share one attribute: `#[event(name = "Opened", version = 3)]`.
//! serde's own variant `rename` does not change the stored name: only
//! `#[event(name = "...")]` does, so the stored name and the Rust name can
//! each change without touching the other.
//!
//! # Generics
//!
//! A generic type gets an impl that carries its generics and holds when
//! `Self: Serialize + DeserializeOwned + Send + Sync + 'static`, so
//! `enum Changed<T> { Set(T) }` is an event type for each `T` that fits.
//! Borrowed data cannot be decoded into: an event type is `'static`.
//!
//! # Compile errors
//!
//! The derive refuses, pointing at the offending token:
//!
//! - a union, and an enum with no variants;
//! - two variants with the same stored name, and a stored name that breaks
//!   the rules above;
//! - two variants whose stored-name constants would have one name;
//! - `version = 0`, or a version that is not an integer literal;
//! - an unknown key in `#[event(...)]`, a key given twice, `name` or
//!   `version` on an enum, `upcasters` or `crate` on a variant, and
//!   `#[event]` on a field;
//! - `#[serde(tag = ...)]`, `#[serde(content = ...)]` and
//!   `#[serde(untagged)]` on the enum: the tag-free payload is built from
//!   serde's default, externally tagged representation;
//! - `#[serde(skip)]`, `#[serde(skip_serializing)]`,
//!   `#[serde(skip_deserializing)]`, `#[serde(other)]` and
//!   `#[serde(untagged)]` on a variant: decoding picks a variant by serde's
//!   variant index, which these shift or bypass.
//!
//! The enum's `Serialize` and `Deserialize` must be serde's derived impls: a
//! hand-written impl, or `#[serde(from = ...)]`/`#[serde(into = ...)]` on the
//! enum, does not give the variant structure the payload is built from.
//! A struct has no such limit: its payload is whatever its serde impls write.
//!
//! # `#[derive(EventSet)]`
//!
//! An enum whose variants each hold one `DomainEvent` type becomes an
//! `EventSet`: one filter for the read, one type to decode into.
//!
//! ```
//! use annals_core::{DomainEvent, EventSet, Position, ReadAll};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Serialize, Deserialize, DomainEvent)]
//! enum OrderEvent {
//!     OrderPlaced,
//! }
//!
//! #[derive(Debug, Serialize, Deserialize, DomainEvent)]
//! enum ParcelEvent {
//!     ParcelShipped,
//! }
//!
//! #[derive(Debug, EventSet)]
//! enum Followed {
//!     #[events(category = "order")]
//!     Order(OrderEvent),
//!     #[events(category = "parcel")]
//!     Parcel(ParcelEvent),
//! }
//!
//! let read = Followed::narrow(ReadAll::after(Position::START));
//! assert_eq!(read.filter().categories(), ["order", "parcel"]);
//! ```
//!
//! - `#[events(category = "...")]` on a variant: the stream category its
//!   events live in. It follows the category rules: a valid name (as for a
//!   stored name above) with no `-`.
//! - `#[events(aggregate = path::to::Aggregate)]` on a variant: the same,
//!   with the aggregate's `Aggregate::CATEGORY`.
//! - `#[events(crate = path::to::annals)]` on the enum: as `#[event(crate =
//!   ...)]` above.
//!
//! The generated impl:
//!
//! - `narrow`: when every variant names a category, reads those
//!   categories, every event type in them; otherwise (a variant without a
//!   category takes its events from any stream) reads the event types of
//!   every variant, with the old names their upcasters read, in any stream;
//! - `upcasters`: declares every variant's type with its upcasters;
//! - `decode`: tries the variants in order, a variant with a category only
//!   on events of that category, with `RecordedEvent::decode_known`. The
//!   first that knows the event decodes it; an error is returned as it is;
//!   `Ok(None)` when none knows it.
//!
//! The derive refuses, pointing at the offending token: a struct, a union,
//! an enum with no variants and a generic enum; a variant that does not
//! hold exactly one type as `Variant(Type)`; one type in two variants (an
//! alias too); two variants with one category (an aggregate's included,
//! which the compiler compares); `category` with `aggregate` on one
//! variant; an invalid category; and an unknown key, a key given twice or a
//! key out of place in `#[events(...)]`.

mod attr;
mod event_set;
mod expand;
mod root;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

/// Implements `DomainEvent` for an enum (one stored event type per variant)
/// or a struct (one stored event type), with tag-free JSON payloads.
///
/// Attributes: `#[event(name = "...", version = N)]` on a variant or a
/// struct; `#[event(upcasters = path::to::fn, crate = path::to::annals)]` on
/// the type. See the annals-derive crate docs for the payload of each
/// variant kind and the full rules.
#[proc_macro_derive(DomainEvent, attributes(event))]
pub fn derive_domain_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Implements `EventSet` for an enum whose variants each hold one event
/// type (`Order(OrderEvent)`): the events a reader of the global log wants,
/// decoded into one type.
///
/// Attributes: `#[events(category = "...")]` or `#[events(aggregate =
/// path::to::Aggregate)]` on a variant, the stream category its events live
/// in; `#[events(crate = path::to::annals)]` on the enum. See the
/// annals-derive crate docs for how the set reads and decodes.
#[proc_macro_derive(EventSet, attributes(events))]
pub fn derive_event_set(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    event_set::derive(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
