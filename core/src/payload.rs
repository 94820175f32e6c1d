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

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::ser::{self, Serialize};

/// The deepest nesting of arrays and objects a payload may have: serde_json's
/// own recursion limit, which refuses 128 levels and more when reading, so
/// that nothing is written that could not be read back.
pub const MAX_DEPTH: usize = 127;

/// Why a payload was refused. The message never quotes payload values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// The text is not JSON: fix the producer.
    #[error("payload is not valid JSON: {reason} at line {line} column {column}")]
    Malformed {
        /// What the parser expected.
        reason: String,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
    },
    /// An object has the same key twice (the key itself is payload data
    /// and is not quoted).
    #[error("payload has the same key twice in one object")]
    DuplicateKey,
    /// A float is NaN or infinite, which JSON cannot hold.
    #[error("payload has a non-finite float{}", field.as_ref().map(|f| format!(" in field {f:?}")).unwrap_or_default())]
    NonFiniteFloat {
        /// The struct field holding it, when known.
        field: Option<String>,
    },
    /// A string or key holds `\u0000`.
    #[error("payload has a NUL character (\\u0000) in a string")]
    NulCharacter,
    /// Arrays and objects nest deeper than [`MAX_DEPTH`].
    #[error("payload nests deeper than {max} levels")]
    TooDeep {
        /// The deepest nesting allowed.
        max: usize,
    },
    /// The value's own `Serialize` impl failed.
    #[error("payload could not be serialized: {reason}")]
    Serialize {
        /// The error the `Serialize` impl reported.
        reason: String,
    },
}

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

/// Describes a serde_json error without quoting the value it tripped on.
///
/// serde_json's data errors read like `invalid type: string "secret",
/// expected u64`; this keeps the shape (`invalid type: string, expected
/// u64`) and drops the value, so payloads never reach messages or logs.
pub fn redacted_message(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let message = match message.rfind(" at line ") {
        Some(at) => &message[..at],
        None => &message,
    };
    for prefix in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let expected = rest.find(", expected").map_or("", |at| &rest[at..]);
            // The kind of value is the first word: `string`, `integer`, `map`...
            let kind = rest.split([' ', ',']).next().unwrap_or("value");
            return format!("{prefix}{kind}{expected}");
        }
    }
    // The unknown name came from the data; the expected ones from the type.
    for prefix in ["unknown variant", "unknown field"] {
        if message.starts_with(prefix) {
            let expected = message.find(", expected").map_or("", |at| &message[at..]);
            return format!("{prefix}{expected}");
        }
    }
    message.to_owned()
}

// ---------------------------------------------------------------------------
// Raw JSON text: duplicate keys, NUL and depth.

fn check_json_text(text: &str) -> Result<(), PayloadError> {
    let mut problem = None;
    let mut de = serde_json::Deserializer::from_str(text);
    let walked = Walk {
        problem: &mut problem,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    if let Some(problem) = problem {
        return Err(problem);
    }
    walked.map_err(|e| {
        if e.to_string().starts_with("recursion limit exceeded") {
            PayloadError::TooDeep { max: MAX_DEPTH }
        } else {
            PayloadError::Malformed {
                reason: redacted_message(&e),
                line: e.line(),
                column: e.column(),
            }
        }
    })
}

/// Walks a JSON value, recording the first rule it breaks.
struct Walk<'a> {
    problem: &'a mut Option<PayloadError>,
}

impl Walk<'_> {
    fn refuse<E: de::Error>(self, problem: PayloadError) -> Result<(), E> {
        *self.problem = Some(problem);
        Err(E::custom("payload refused"))
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        if v.contains('\0') {
            return self.refuse(PayloadError::NulCharacter);
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Walk {
                problem: &mut *self.problem,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if key.contains('\0') {
                return self.refuse(PayloadError::NulCharacter);
            }
            if !seen.insert(key) {
                return self.refuse(PayloadError::DuplicateKey);
            }
            map.next_value_seed(Walk {
                problem: &mut *self.problem,
            })?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Typed values: non-finite floats, NUL and depth, checked before serde_json
// gets a chance to write `null`.

fn check_serializable<T: Serialize + ?Sized>(value: &T) -> Result<(), PayloadError> {
    let mut check = Check {
        depth: 0,
        field: None,
    };
    value.serialize(&mut check).map_err(|e| e.0)
}

struct Check {
    depth: usize,
    field: Option<&'static str>,
}

#[derive(Debug)]
struct CheckError(PayloadError);

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for CheckError {}

impl ser::Error for CheckError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        CheckError(PayloadError::Serialize {
            reason: msg.to_string(),
        })
    }
}

impl Check {
    fn enter(&mut self) -> Result<&mut Self, CheckError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(CheckError(PayloadError::TooDeep { max: MAX_DEPTH }));
        }
        Ok(self)
    }

    fn leave(&mut self) -> Result<(), CheckError> {
        self.depth -= 1;
        Ok(())
    }

    fn float(&self, finite: bool) -> Result<(), CheckError> {
        if finite {
            Ok(())
        } else {
            Err(CheckError(PayloadError::NonFiniteFloat {
                field: self.field.map(str::to_owned),
            }))
        }
    }

    fn text(s: &str) -> Result<(), CheckError> {
        if s.contains('\0') {
            Err(CheckError(PayloadError::NulCharacter))
        } else {
            Ok(())
        }
    }
}

impl ser::Serializer for &mut Check {
    type Ok = ();
    type Error = CheckError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn serialize_bool(self, _: bool) -> Result<(), CheckError> {
        Ok(())
    }
    fn serialize_i8(self, _: i8) -> Result<(), CheckError> {
        Ok(())
    }
    fn serialize_i16(self, _: i16) -> Result<(), CheckError> {
        Ok(())
    }
    fn serialize_i32(self, _: i32) -> Result<(), CheckError> {
        Ok(())
    }
    fn serialize_i64(self, _: i64) -> Result<(), CheckError> {
        Ok(())
    }
    fn serialize_i128(self, _: i128) -> Result<(), CheckError> {
        Ok(())
    }
    fn serialize_u8(self, _: u8) -> Result<(), CheckError> {
        Ok(())
    }
    fn serialize_u16(self, _: u16) -> Result<(), CheckError> {
        Ok(())
    }
    fn serialize_u32(self, _: u32) -> Result<(), CheckError> {
        Ok(())
    }
    fn serialize_u64(self, _: u64) -> Result<(), CheckError> {
        Ok(())
    }
    fn serialize_u128(self, _: u128) -> Result<(), CheckError> {
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<(), CheckError> {
        self.float(v.is_finite())
    }
    fn serialize_f64(self, v: f64) -> Result<(), CheckError> {
        self.float(v.is_finite())
    }
    fn serialize_char(self, v: char) -> Result<(), CheckError> {
        Check::text(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<(), CheckError> {
        Check::text(v)
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), CheckError> {
        Ok(())
    }
    fn serialize_none(self) -> Result<(), CheckError> {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), CheckError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), CheckError> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), CheckError> {
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), CheckError> {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), CheckError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), CheckError> {
        self.enter()?;
        value.serialize(&mut *self)?;
        self.leave()
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, CheckError> {
        self.enter()
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, CheckError> {
        self.enter()
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, CheckError> {
        self.enter()
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, CheckError> {
        // `{"Variant": [...]}`: two levels.
        self.enter()?;
        self.enter()
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, CheckError> {
        self.enter()
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, CheckError> {
        self.enter()
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, CheckError> {
        self.enter()?;
        self.enter()
    }
}

impl ser::SerializeSeq for &mut Check {
    type Ok = ();
    type Error = CheckError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CheckError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), CheckError> {
        self.leave()
    }
}

impl ser::SerializeTuple for &mut Check {
    type Ok = ();
    type Error = CheckError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CheckError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), CheckError> {
        self.leave()
    }
}

impl ser::SerializeTupleStruct for &mut Check {
    type Ok = ();
    type Error = CheckError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CheckError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), CheckError> {
        self.leave()
    }
}

impl ser::SerializeTupleVariant for &mut Check {
    type Ok = ();
    type Error = CheckError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CheckError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), CheckError> {
        self.leave()?;
        self.leave()
    }
}

impl ser::SerializeMap for &mut Check {
    type Ok = ();
    type Error = CheckError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), CheckError> {
        key.serialize(&mut **self)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CheckError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), CheckError> {
        self.leave()
    }
}

impl ser::SerializeStruct for &mut Check {
    type Ok = ();
    type Error = CheckError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), CheckError> {
        let outer = self.field.replace(key);
        value.serialize(&mut **self)?;
        self.field = outer;
        Ok(())
    }
    fn end(self) -> Result<(), CheckError> {
        self.leave()
    }
}

impl ser::SerializeStructVariant for &mut Check {
    type Ok = ();
    type Error = CheckError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), CheckError> {
        let outer = self.field.replace(key);
        value.serialize(&mut **self)?;
        self.field = outer;
        Ok(())
    }
    fn end(self) -> Result<(), CheckError> {
        self.leave()?;
        self.leave()
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
