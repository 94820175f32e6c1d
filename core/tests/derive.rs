//! `#[derive(DomainEvent)]` stores each variant under its own name and
//! version, with a payload that holds the variant's content and no enum tag.

use std::error::Error;

use annals_core::upcast::Upcaster;
use annals_core::{DecodeError, DomainEvent, Payload, PayloadError};
use serde::{Deserialize, Serialize};

type TestResult = Result<(), Box<dyn Error>>;

/// One variant of each kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum ParcelEvent {
    Registered {
        sender: String,
        weight_grams: u32,
    },
    Labelled(String),
    Moved(i32, i32),
    Delivered,
    #[event(name = "ParcelWeighed", version = 3)]
    Weighed {
        #[serde(rename = "amt")]
        amount: u64,
        #[serde(default)]
        note: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scale: Option<String>,
    },
    Measured {
        celsius: f64,
    },
    r#Returned {},
}

fn weighed(amount: u64) -> ParcelEvent {
    ParcelEvent::Weighed {
        amount,
        note: String::new(),
        scale: None,
    }
}

/// Encodes, checks the payload text and the stored name, and decodes back.
fn assert_round_trip(event: &ParcelEvent, payload_text: &str) -> TestResult {
    let payload = event.encode()?;
    assert_eq!(payload.as_str(), payload_text);
    let back = ParcelEvent::decode(event.event_type(), event.schema_version(), &payload)?;
    assert_eq!(&back, event);
    Ok(())
}

/// A stored payload, as a store hands it back (not checked on the way in).
fn stored(text: &str) -> Payload {
    Payload::from_stored(text.to_owned())
}

#[test]
fn struct_variant_round_trips_as_a_plain_object() -> TestResult {
    let event = ParcelEvent::Registered {
        sender: "ada".into(),
        weight_grams: 5,
    };
    assert_round_trip(&event, r#"{"sender":"ada","weight_grams":5}"#)
}

#[test]
fn newtype_variant_round_trips_as_its_inner_value() -> TestResult {
    assert_round_trip(&ParcelEvent::Labelled("fragile".into()), r#""fragile""#)
}

#[test]
fn tuple_variant_round_trips_as_an_array() -> TestResult {
    assert_round_trip(&ParcelEvent::Moved(1, 2), "[1,2]")
}

#[test]
fn unit_variant_round_trips_as_an_empty_object() -> TestResult {
    assert_round_trip(&ParcelEvent::Delivered, "{}")
}

#[test]
fn empty_struct_variant_round_trips_as_an_empty_object() -> TestResult {
    assert_round_trip(&ParcelEvent::Returned {}, "{}")
}

#[test]
fn unit_variant_decodes_from_null() -> TestResult {
    let back = ParcelEvent::decode("Delivered", 1, &stored("null"))?;
    assert_eq!(back, ParcelEvent::Delivered);
    Ok(())
}

#[test]
fn deposited_payload_is_exactly_the_documented_bytes() -> TestResult {
    use annals_core::testkit::bank::AccountEvent;
    let payload = AccountEvent::Deposited { amount: 5 }.encode()?;
    assert_eq!(payload.as_str(), r#"{"amount":5}"#);
    Ok(())
}

#[test]
fn variant_without_attributes_is_stored_under_its_name_at_version_1() {
    let event = ParcelEvent::Moved(0, 0);
    assert_eq!((event.event_type(), event.schema_version()), ("Moved", 1));
}

#[test]
fn raw_identifier_variant_is_stored_without_the_r_prefix() {
    assert_eq!(ParcelEvent::Returned {}.event_type(), "Returned");
}

#[test]
fn name_and_version_attributes_set_the_stored_name_and_version() -> TestResult {
    let event = weighed(7);
    assert_eq!(event.event_type(), "ParcelWeighed");
    assert_eq!(event.schema_version(), 3);
    assert_eq!(
        ParcelEvent::decode("ParcelWeighed", 3, &event.encode()?)?,
        event
    );
    Ok(())
}

#[test]
fn known_types_lists_every_stored_name_with_its_version_in_order() {
    assert_eq!(
        ParcelEvent::known_types(),
        &[
            ("Registered", 1),
            ("Labelled", 1),
            ("Moved", 1),
            ("Delivered", 1),
            ("ParcelWeighed", 3),
            ("Measured", 1),
            ("Returned", 1),
        ]
    );
}

#[test]
fn serde_field_attributes_are_honoured() -> TestResult {
    // `rename` and `skip_serializing_if` on the way out...
    assert_eq!(weighed(7).encode()?.as_str(), r#"{"amt":7,"note":""}"#);
    // ...and `rename` and `default` on the way in.
    let back = ParcelEvent::decode("ParcelWeighed", 3, &stored(r#"{"amt":9}"#))?;
    assert_eq!(back, weighed(9));
    Ok(())
}

#[test]
fn tagged_payload_fails_with_invalid_payload() {
    // serde's own `{"Variant": {...}}` form is not what the derive stores.
    let err = ParcelEvent::decode(
        "ParcelWeighed",
        3,
        &stored(r#"{"ParcelWeighed":{"amt":9}}"#),
    )
    .unwrap_err();
    assert!(matches!(err, DecodeError::InvalidPayload { .. }), "{err}");
}

#[test]
fn unknown_event_type_fails_with_unknown_event_type() {
    let err = ParcelEvent::decode("Weighed", 3, &stored("{}")).unwrap_err();
    assert_eq!(
        err,
        DecodeError::UnknownEventType {
            event_type: "Weighed".into()
        }
    );
}

#[test]
fn newer_schema_version_fails_with_future_schema_version() {
    let err = ParcelEvent::decode("ParcelWeighed", 4, &stored(r#"{"amt":1}"#)).unwrap_err();
    assert_eq!(
        err,
        DecodeError::FutureSchemaVersion {
            event_type: "ParcelWeighed".into(),
            found: 4,
            newest: 3,
        }
    );
}

#[test]
fn older_schema_version_fails_with_outdated_schema_version() {
    let err = ParcelEvent::decode("ParcelWeighed", 2, &stored(r#"{"amt":1}"#)).unwrap_err();
    assert_eq!(
        err,
        DecodeError::OutdatedSchemaVersion {
            event_type: "ParcelWeighed".into(),
            found: 2,
            current: 3,
        }
    );
}

/// Decodes `text` as a stored `ParcelWeighed` v3 and returns the
/// `InvalidPayload` reason, checking that it does not quote the payload.
fn invalid_payload_reason(text: &str) -> Result<String, Box<dyn Error>> {
    match ParcelEvent::decode("ParcelWeighed", 3, &stored(text)) {
        Err(DecodeError::InvalidPayload {
            event_type,
            schema_version,
            reason,
        }) => {
            assert_eq!((event_type.as_str(), schema_version), ("ParcelWeighed", 3));
            assert!(
                !reason.contains("SENTINEL"),
                "the reason quotes the payload: {reason}"
            );
            Ok(reason)
        }
        other => Err(format!("expected InvalidPayload, got {other:?}").into()),
    }
}

#[test]
fn mistyped_payload_fails_with_invalid_payload_without_quoting_it() -> TestResult {
    let reason = invalid_payload_reason(r#"{"amt":"SENTINEL"}"#)?;
    assert_eq!(reason, "invalid type: string, expected u64");
    Ok(())
}

#[test]
fn malformed_payload_fails_with_invalid_payload_without_quoting_it() -> TestResult {
    invalid_payload_reason(r#"{"amt": SENTINEL}"#)?;
    invalid_payload_reason(r#"{"amt": 1, "note": "SENTINEL"#)?;
    Ok(())
}

#[test]
fn missing_field_fails_with_invalid_payload() -> TestResult {
    let reason = invalid_payload_reason(r#"{"note":"SENTINEL"}"#)?;
    assert_eq!(reason, "missing field `amt`");
    Ok(())
}

#[test]
fn payload_with_trailing_data_fails_with_invalid_payload() -> TestResult {
    let reason = invalid_payload_reason(r#"{"amt":1} SENTINEL"#)?;
    assert_eq!(reason, "trailing characters");
    invalid_payload_reason(r#"{"amt":1}{"amt":2}"#)?;
    Ok(())
}

#[test]
fn unit_variant_with_fields_fails_with_invalid_payload() {
    let err = ParcelEvent::decode("Delivered", 1, &stored(r#"{"SENTINEL":1}"#)).unwrap_err();
    assert!(matches!(err, DecodeError::InvalidPayload { .. }), "{err}");
    assert!(!err.to_string().contains("SENTINEL"), "{err}");
}

#[test]
fn non_finite_float_fails_at_encode_with_non_finite_float() {
    let event = ParcelEvent::Measured { celsius: f64::NAN };
    assert_eq!(
        event.encode(),
        Err(PayloadError::NonFiniteFloat {
            field: Some("celsius".into())
        })
    );
}

#[test]
fn nul_character_fails_at_encode_with_nul_character() {
    let event = ParcelEvent::Labelled("a\0b".into());
    assert_eq!(event.encode(), Err(PayloadError::NulCharacter));
}

// ---------------------------------------------------------------------------
// Struct events.

/// A struct is one event type, named after the struct.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
struct InvoiceIssued {
    number: u32,
    #[serde(default)]
    lines: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "invoice.paid", version = 2)]
struct InvoicePaid(u64);

#[test]
fn struct_event_round_trips_with_its_plain_serde_form() -> TestResult {
    let event = InvoiceIssued {
        number: 7,
        lines: vec!["tea".into()],
    };
    assert_eq!(
        (event.event_type(), event.schema_version()),
        ("InvoiceIssued", 1)
    );
    let payload = event.encode()?;
    assert_eq!(payload.as_str(), r#"{"number":7,"lines":["tea"]}"#);
    assert_eq!(InvoiceIssued::decode("InvoiceIssued", 1, &payload)?, event);
    assert_eq!(InvoiceIssued::known_types(), &[("InvoiceIssued", 1)]);
    Ok(())
}

#[test]
fn struct_event_takes_name_and_version_attributes() -> TestResult {
    let event = InvoicePaid(120);
    assert_eq!(
        (event.event_type(), event.schema_version()),
        ("invoice.paid", 2)
    );
    let payload = event.encode()?;
    assert_eq!(payload.as_str(), "120");
    assert_eq!(InvoicePaid::decode("invoice.paid", 2, &payload)?, event);
    assert_eq!(InvoicePaid::known_types(), &[("invoice.paid", 2)]);
    Ok(())
}

#[test]
fn struct_event_with_another_name_fails_with_unknown_event_type() {
    let err = InvoicePaid::decode("InvoicePaid", 2, &stored("1")).unwrap_err();
    assert_eq!(
        err,
        DecodeError::UnknownEventType {
            event_type: "InvoicePaid".into()
        }
    );
}

#[test]
fn struct_event_with_another_version_fails_with_schema_version_errors() {
    let newer = InvoicePaid::decode("invoice.paid", 3, &stored("1")).unwrap_err();
    assert!(matches!(
        newer,
        DecodeError::FutureSchemaVersion {
            found: 3,
            newest: 2,
            ..
        }
    ));
    let older = InvoicePaid::decode("invoice.paid", 1, &stored("1")).unwrap_err();
    assert!(matches!(
        older,
        DecodeError::OutdatedSchemaVersion {
            found: 1,
            current: 2,
            ..
        }
    ));
}

#[test]
fn struct_event_with_bad_payload_fails_with_invalid_payload() {
    for text in [r#""SENTINEL""#, "1 SENTINEL", r#"{"number":"SENTINEL"}"#] {
        let err = InvoiceIssued::decode("InvoiceIssued", 1, &stored(text)).unwrap_err();
        assert!(matches!(err, DecodeError::InvalidPayload { .. }), "{err}");
        assert!(!err.to_string().contains("SENTINEL"), "{err}");
    }
}

// ---------------------------------------------------------------------------
// Upcasters, generics and the crate path.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(upcasters = parcel_upcasters)]
enum LabelEvent {
    #[event(version = 2)]
    Printed { text: String },
}

/// Version 1 called the text `label`.
fn parcel_upcasters() -> Vec<Upcaster> {
    vec![Upcaster::reshape("Printed", 1, |payload| {
        let label = payload["label"].take();
        *payload = serde_json::json!({ "text": label });
        Ok::<(), &str>(())
    })]
}

#[test]
fn upcasters_attribute_names_the_function_upcasters_returns() {
    let upcasters = LabelEvent::upcasters();
    let steps: Vec<(&str, u32)> = upcasters
        .iter()
        .map(|u| (u.event_type(), u.from_version()))
        .collect();
    assert_eq!(steps, [("Printed", 1)]);
}

#[test]
fn without_upcasters_attribute_upcasters_is_empty() {
    assert!(ParcelEvent::upcasters().is_empty());
    assert!(InvoiceIssued::upcasters().is_empty());
}

#[test]
fn upcasters_from_the_attribute_build_a_registry() -> TestResult {
    annals_core::upcast::Upcasters::for_events::<LabelEvent>()?;
    Ok(())
}

/// A generic event type: an event for each `T` that serde can handle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum SettingChanged<T> {
    Set { value: T },
    Cleared,
}

#[test]
fn generic_enum_round_trips_for_each_parameter() -> TestResult {
    let number = SettingChanged::Set { value: 3u8 };
    assert_eq!(number.encode()?.as_str(), r#"{"value":3}"#);
    assert_eq!(
        SettingChanged::<u8>::decode("Set", 1, &number.encode()?)?,
        number
    );
    let text = SettingChanged::Set {
        value: String::from("on"),
    };
    assert_eq!(
        SettingChanged::<String>::decode("Set", 1, &text.encode()?)?,
        text
    );
    let err = SettingChanged::<u8>::decode("Set", 1, &text.encode()?).unwrap_err();
    assert!(matches!(err, DecodeError::InvalidPayload { .. }), "{err}");
    Ok(())
}

/// A stand-in for a renamed annals dependency: it re-exports the generated
/// code's items, except one, so the test can tell which root was used.
mod renamed {
    pub mod __private {
        pub use annals_core::__private::*;

        pub fn encode_tagless<T: ?Sized>(_: &T) -> Result<Payload, PayloadError> {
            Payload::from_json(r#""through the renamed root""#)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(crate = crate::renamed)]
enum Renamed {
    Happened,
}

#[test]
fn crate_attribute_sets_the_path_the_generated_code_uses() -> TestResult {
    assert_eq!(
        Renamed::Happened.encode()?.as_str(),
        r#""through the renamed root""#
    );
    Ok(())
}

#[test]
fn every_stored_name_is_a_constant_named_after_its_variant() {
    assert_eq!(ParcelEvent::REGISTERED, "Registered");
    assert_eq!(ParcelEvent::LABELLED, "Labelled");
    assert_eq!(ParcelEvent::MOVED, "Moved");
    assert_eq!(ParcelEvent::DELIVERED, "Delivered");
    // The constant follows the Rust name; its value is the stored name.
    assert_eq!(ParcelEvent::WEIGHED, "ParcelWeighed");
    assert_eq!(InvoiceIssued::EVENT_TYPE, "InvoiceIssued");
    let names: Vec<&str> = ParcelEvent::known_types().iter().map(|(n, _)| *n).collect();
    assert!(names.contains(&ParcelEvent::WEIGHED.as_str()));
}

#[test]
fn stored_name_constants_filter_reads_of_the_log() {
    let read = annals_core::ReadAll::after(annals_core::Position::START)
        .event_types([ParcelEvent::DELIVERED, ParcelEvent::WEIGHED]);
    let filter = read.filter();
    assert_eq!(
        filter.event_types(),
        Some(&[ParcelEvent::DELIVERED, ParcelEvent::WEIGHED][..])
    );
}
