//! Event payloads: JSON text that is stored byte for byte.
//!
//! JSON is not lossless by default: serde_json writes `NaN` and infinities as
//! `null`, collapses duplicate keys, and PostgreSQL refuses `\u0000`. A
//! [`Payload`] is checked once, when it is made, so that what is stored is
//! exactly what is read back on every backend:
//!
//! - non-finite floats are refused (they would silently become `null`);
//! - `\u0000` in strings or keys is refused;
//! - duplicate keys in raw JSON are refused (which one would win?);
//! - nesting deeper than [`MAX_DEPTH`] is refused (serde_json's own limit).

mod error;
mod text;
mod value;

use std::fmt;

use serde::ser::Serialize;

pub use error::{redacted_message, PayloadError, MAX_DEPTH};
use text::check_json_text;
use value::check_serializable;

/// JSON text checked against the payload rules, stored byte for byte.
///
/// ```
/// use annals_core::{Payload, PayloadError};
/// let p = Payload::from_json(r#"{"amount": 10}"#)?;
/// assert_eq!(p.as_str(), r#"{"amount": 10}"#); // kept as written
/// assert!(matches!(Payload::encode(&f64::NAN), Err(PayloadError::NonFiniteFloat { .. })));
/// # Ok::<(), PayloadError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Payload(String);

impl Payload {
    /// Checks raw JSON text and keeps it exactly as given.
    pub fn from_json(text: impl Into<String>) -> Result<Self, PayloadError> {
        let text = text.into();
        check_json_text(&text)?;
        Ok(Payload(text))
    }

    /// Serializes a value, refusing what JSON cannot hold faithfully.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Self, PayloadError> {
        check_serializable(value)?;
        serde_json::to_string(value)
            .map(Payload)
            .map_err(|e| PayloadError::Serialize {
                reason: redacted_message(&e),
            })
    }

    /// Wraps text that was checked when it was stored.
    ///
    /// Stores use this for rows they wrote themselves; decoding still checks
    /// the JSON, so a corrupt row gives a decode error, never a panic.
    pub fn from_stored(text: String) -> Self {
        Payload(text)
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The JSON text, owned.
    pub fn into_string(self) -> String {
        self.0
    }

    /// Length of the text in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty (never true for a checked payload).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses the payload into a `serde_json::Value`.
    pub fn to_value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(&self.0)
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Payloads are never printed by default: they may hold personal data.
        write!(f, "Payload({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::error::Error;

    #[derive(serde::Serialize)]
    struct Reading {
        celsius: f64,
    }

    #[test]
    fn raw_json_is_kept_byte_for_byte() -> Result<(), Box<dyn Error>> {
        let text = "{ \"b\":1,\n\"a\" : [1.50, \"\\u00e9\", 12345678901234567890123] }";
        assert_eq!(Payload::from_json(text)?.as_str(), text);
        Ok(())
    }

    #[test]
    fn raw_json_fails_with_malformed() {
        let err = Payload::from_json("{\"a\": }").unwrap_err();
        assert!(
            matches!(
                err,
                PayloadError::Malformed {
                    line: 1,
                    column: 7,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(matches!(
            Payload::from_json("{} trailing"),
            Err(PayloadError::Malformed { .. })
        ));
        assert!(matches!(
            Payload::from_json(""),
            Err(PayloadError::Malformed { .. })
        ));
    }

    #[test]
    fn raw_json_fails_with_duplicate_key() {
        let err = Payload::from_json(r#"{"a": 1, "b": {"c": 1, "c": 2}}"#).unwrap_err();
        assert_eq!(err, PayloadError::DuplicateKey);
    }

    #[test]
    fn raw_json_fails_with_nul_character() {
        for text in [r#""a\u0000b""#, r#"{"a\u0000": 1}"#, r#"[["\u0000"]]"#] {
            assert_eq!(
                Payload::from_json(text).unwrap_err(),
                PayloadError::NulCharacter
            );
        }
    }

    #[test]
    fn raw_json_fails_with_too_deep_past_127_levels() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(Payload::from_json(ok).is_ok());
        for depth in [MAX_DEPTH + 1, MAX_DEPTH + 2, 100_000] {
            let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            assert_eq!(
                Payload::from_json(deep).unwrap_err(),
                PayloadError::TooDeep { max: MAX_DEPTH }
            );
        }
    }

    #[test]
    fn encode_fails_with_non_finite_float_naming_the_field() {
        for value in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let err = Payload::encode(&Reading { celsius: value }).unwrap_err();
            assert_eq!(
                err,
                PayloadError::NonFiniteFloat {
                    field: Some("celsius".into())
                }
            );
        }
        assert!(Payload::encode(&Reading { celsius: -0.5 }).is_ok());
    }

    #[test]
    fn encode_fails_with_nul_character_in_keys_and_values() {
        let mut map = BTreeMap::new();
        map.insert("k\0", 1);
        assert_eq!(
            Payload::encode(&map).unwrap_err(),
            PayloadError::NulCharacter
        );
        assert_eq!(
            Payload::encode(&vec!["\0"]).unwrap_err(),
            PayloadError::NulCharacter
        );
    }

    #[test]
    fn encode_fails_with_too_deep() {
        let mut value = serde_json::Value::Null;
        for _ in 0..MAX_DEPTH {
            value = serde_json::Value::Array(vec![value]);
        }
        let text = Payload::encode(&value).expect("at the limit").into_string();
        assert!(Payload::from_json(text).is_ok(), "what encodes also reads");
        value = serde_json::Value::Array(vec![value]);
        assert_eq!(
            Payload::encode(&value).unwrap_err(),
            PayloadError::TooDeep { max: MAX_DEPTH }
        );
    }

    #[test]
    fn redacted_message_never_quotes_the_value() {
        let err = serde_json::from_str::<u64>(r#""SENTINEL-secret""#).unwrap_err();
        let message = redacted_message(&err);
        assert!(!message.contains("SENTINEL"), "{message}");
        assert_eq!(message, "invalid type: string, expected u64");
        #[derive(Debug, serde::Deserialize)]
        enum Kind {
            A,
        }
        let err = serde_json::from_str::<Kind>(r#""SENTINEL""#).unwrap_err();
        assert!(!redacted_message(&err).contains("SENTINEL"));
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Strict {
            a: u8,
        }
        let err = serde_json::from_str::<Strict>(r#"{"a":1,"SENTINEL":2}"#).unwrap_err();
        let message = redacted_message(&err);
        assert!(!message.contains("SENTINEL"), "{message}");
        assert_eq!(message, "unknown field, expected `a`");
    }

    #[test]
    fn debug_of_a_payload_hides_its_content() -> Result<(), PayloadError> {
        let p = Payload::from_json(r#""SENTINEL""#)?;
        assert!(!format!("{p:?}").contains("SENTINEL"));
        Ok(())
    }
}
