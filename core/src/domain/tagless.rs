//! Tag-free payloads for enums, without an intermediate `serde_json::Value`.
//!
//! serde's default representation of `Deposited { amount: 5 }` is
//! `{"Deposited":{"amount":5}}`. annals stores the name in the `event_type`
//! column and only `{"amount":5}` in the payload, so that the two are
//! independent and upcasters can reshape the JSON without knowing the enum.
//!
//! Both directions reuse the enum's own serde derives, so field attributes
//! (`rename`, `default`, `with`, ...) keep working:
//!
//! - [`Tagless`] hands the enum a serializer that turns the outermost
//!   `serialize_*_variant` call into its untagged form: a struct variant
//!   becomes a struct, a newtype variant its inner value, a tuple variant a
//!   tuple, a unit variant an empty map. Everything nested is serialized by
//!   the inner serializer untouched.
//! - [`decode_variant`] hands the enum's `Deserialize` impl a deserializer
//!   whose only data is an enum: the variant is named by its index (which
//!   serde's derived variant identifier accepts), and the variant's content
//!   is read straight from the JSON text.
//!
//! Because serde's derived indexes are the variants' positions, the derive
//! refuses `#[serde(skip)]` and `#[serde(other)]` on variants, and the
//! internally, adjacently and untagged representations on the enum.

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use serde::ser::{self, Serialize, SerializeMap, SerializeStruct, SerializeTuple, Serializer};

use crate::domain::DecodeError;
use crate::payload::{Payload, PayloadError};

/// Encodes an enum value as its variant's content, without the enum tag.
///
/// The payload checks of [`Payload::encode`] (non-finite floats, NUL,
/// depth) apply unchanged.
pub fn encode_tagless<T: Serialize + ?Sized>(value: &T) -> Result<Payload, PayloadError> {
    Payload::encode(&Tagless(value))
}

/// Decodes the content of the variant at `index` (its position in the enum)
/// from a tag-free payload.
///
/// Trailing data after the JSON value is refused. Errors never quote the
/// payload.
pub fn decode_variant<T: DeserializeOwned>(
    index: u32,
    event_type: &str,
    schema_version: u32,
    payload: &Payload,
) -> Result<T, DecodeError> {
    let mut json = serde_json::Deserializer::from_str(payload.as_str());
    T::deserialize(VariantDeserializer {
        index,
        json: &mut json,
    })
    .and_then(|value| json.end().map(|()| value))
    .map_err(|e| DecodeError::invalid_payload(event_type, schema_version, &e))
}

// ---------------------------------------------------------------------------
// Encoding.

/// A value whose outermost enum variant is serialized without its tag.
pub struct Tagless<'a, T: ?Sized>(pub &'a T);

impl<T: Serialize + ?Sized> Serialize for Tagless<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(TaglessSerializer(serializer))
    }
}

/// Forwards to `S`, except that a variant becomes its untagged form.
struct TaglessSerializer<S>(S);

/// A tuple variant written as a plain tuple.
struct TupleVariant<S>(S);

/// A struct variant written as a plain struct.
struct StructVariant<S>(S);

impl<S: Serializer> Serializer for TaglessSerializer<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = S::SerializeSeq;
    type SerializeTuple = S::SerializeTuple;
    type SerializeTupleStruct = S::SerializeTupleStruct;
    type SerializeTupleVariant = TupleVariant<S::SerializeTuple>;
    type SerializeMap = S::SerializeMap;
    type SerializeStruct = S::SerializeStruct;
    type SerializeStructVariant = StructVariant<S::SerializeStruct>;

    // The four variant forms: the reason this serializer exists.

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        // `{}` rather than `null`: every payload of an enum event is then an
        // object or an array, and a unit variant can grow fields later.
        self.0.serialize_map(Some(0))?.end()
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        value.serialize(self.0)
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        self.0.serialize_tuple(len).map(TupleVariant)
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        self.0.serialize_struct(variant, len).map(StructVariant)
    }

    // Everything else is forwarded as is.

    fn serialize_bool(self, v: bool) -> Result<S::Ok, S::Error> {
        self.0.serialize_bool(v)
    }
    fn serialize_i8(self, v: i8) -> Result<S::Ok, S::Error> {
        self.0.serialize_i8(v)
    }
    fn serialize_i16(self, v: i16) -> Result<S::Ok, S::Error> {
        self.0.serialize_i16(v)
    }
    fn serialize_i32(self, v: i32) -> Result<S::Ok, S::Error> {
        self.0.serialize_i32(v)
    }
    fn serialize_i64(self, v: i64) -> Result<S::Ok, S::Error> {
        self.0.serialize_i64(v)
    }
    fn serialize_i128(self, v: i128) -> Result<S::Ok, S::Error> {
        self.0.serialize_i128(v)
    }
    fn serialize_u8(self, v: u8) -> Result<S::Ok, S::Error> {
        self.0.serialize_u8(v)
    }
    fn serialize_u16(self, v: u16) -> Result<S::Ok, S::Error> {
        self.0.serialize_u16(v)
    }
    fn serialize_u32(self, v: u32) -> Result<S::Ok, S::Error> {
        self.0.serialize_u32(v)
    }
    fn serialize_u64(self, v: u64) -> Result<S::Ok, S::Error> {
        self.0.serialize_u64(v)
    }
    fn serialize_u128(self, v: u128) -> Result<S::Ok, S::Error> {
        self.0.serialize_u128(v)
    }
    fn serialize_f32(self, v: f32) -> Result<S::Ok, S::Error> {
        self.0.serialize_f32(v)
    }
    fn serialize_f64(self, v: f64) -> Result<S::Ok, S::Error> {
        self.0.serialize_f64(v)
    }
    fn serialize_char(self, v: char) -> Result<S::Ok, S::Error> {
        self.0.serialize_char(v)
    }
    fn serialize_str(self, v: &str) -> Result<S::Ok, S::Error> {
        self.0.serialize_str(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<S::Ok, S::Error> {
        self.0.serialize_bytes(v)
    }
    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_none()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.0.serialize_some(value)
    }
    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit()
    }
    fn serialize_unit_struct(self, name: &'static str) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit_struct(name)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_newtype_struct(name, value)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<S::SerializeSeq, S::Error> {
        self.0.serialize_seq(len)
    }
    fn serialize_tuple(self, len: usize) -> Result<S::SerializeTuple, S::Error> {
        self.0.serialize_tuple(len)
    }
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<S::SerializeTupleStruct, S::Error> {
        self.0.serialize_tuple_struct(name, len)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<S::SerializeMap, S::Error> {
        self.0.serialize_map(len)
    }
    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<S::SerializeStruct, S::Error> {
        self.0.serialize_struct(name, len)
    }
    fn collect_str<T: fmt::Display + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.0.collect_str(value)
    }
    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

impl<S: SerializeTuple> ser::SerializeTupleVariant for TupleVariant<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), S::Error> {
        self.0.serialize_element(value)
    }
    fn end(self) -> Result<S::Ok, S::Error> {
        self.0.end()
    }
}

impl<S: SerializeStruct> ser::SerializeStructVariant for StructVariant<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), S::Error> {
        self.0.serialize_field(key, value)
    }
    fn skip_field(&mut self, key: &'static str) -> Result<(), S::Error> {
        self.0.skip_field(key)
    }
    fn end(self) -> Result<S::Ok, S::Error> {
        self.0.end()
    }
}

// ---------------------------------------------------------------------------
// Decoding.

type JsonDeserializer<'p> = serde_json::Deserializer<serde_json::de::StrRead<'p>>;

/// A deserializer holding one enum value: the variant at `index`, whose
/// content is the JSON text.
struct VariantDeserializer<'a, 'p> {
    index: u32,
    json: &'a mut JsonDeserializer<'p>,
}

impl<'de> de::Deserializer<'de> for VariantDeserializer<'_, 'de> {
    type Error = serde_json::Error;

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_enum(self)
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        // Only a type whose `Deserialize` is serde's derived enum impl gets
        // here; anything else asks for another shape.
        Err(de::Error::custom(
            "the type does not deserialize as an enum (#[derive(DomainEvent)] needs serde's derived, externally tagged representation)",
        ))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

impl<'de> de::EnumAccess<'de> for VariantDeserializer<'_, 'de> {
    type Error = serde_json::Error;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self), Self::Error> {
        // serde's derived variant identifier accepts the variant's index.
        let index: de::value::U32Deserializer<serde_json::Error> = self.index.into_deserializer();
        let variant = seed.deserialize(index)?;
        Ok((variant, self))
    }
}

impl<'de> de::VariantAccess<'de> for VariantDeserializer<'_, 'de> {
    type Error = serde_json::Error;

    fn unit_variant(self) -> Result<(), Self::Error> {
        de::Deserializer::deserialize_any(&mut *self.json, UnitContent)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, Self::Error> {
        seed.deserialize(&mut *self.json)
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        de::Deserializer::deserialize_tuple(&mut *self.json, len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        // serde_json ignores the struct name.
        de::Deserializer::deserialize_struct(&mut *self.json, "", fields, visitor)
    }
}

/// The content of a unit variant: `{}` (what is written) or `null`.
struct UnitContent;

impl<'de> Visitor<'de> for UnitContent {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an empty object or null")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if map.next_key::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::invalid_length(1, &self));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};
    use std::error::Error;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Shape {
        Empty,
        Circle(f64),
        Point(i32, i32),
        Rect {
            w: u32,
            #[serde(rename = "height")]
            h: u32,
        },
        Nested {
            inner: Option<Box<Shape>>,
        },
    }

    fn round_trip(shape: &Shape, index: u32, expected: &str) -> Result<(), Box<dyn Error>> {
        let payload = encode_tagless(shape)?;
        assert_eq!(payload.as_str(), expected);
        let back: Shape = decode_variant(index, "Shape", 1, &payload)?;
        assert_eq!(&back, shape);
        Ok(())
    }

    #[test]
    fn each_variant_kind_round_trips_without_its_tag() -> Result<(), Box<dyn Error>> {
        round_trip(&Shape::Empty, 0, "{}")?;
        round_trip(&Shape::Circle(1.5), 1, "1.5")?;
        round_trip(&Shape::Point(1, -2), 2, "[1,-2]")?;
        round_trip(&Shape::Rect { w: 3, h: 4 }, 3, r#"{"w":3,"height":4}"#)?;
        Ok(())
    }

    #[test]
    fn nested_enums_keep_their_tag() -> Result<(), Box<dyn Error>> {
        let shape = Shape::Nested {
            inner: Some(Box::new(Shape::Circle(2.0))),
        };
        round_trip(&shape, 4, r#"{"inner":{"Circle":2.0}}"#)
    }

    #[test]
    fn unit_variant_decodes_from_null() -> Result<(), Box<dyn Error>> {
        let payload = Payload::from_json("null")?;
        assert_eq!(
            decode_variant::<Shape>(0, "Shape", 1, &payload)?,
            Shape::Empty
        );
        Ok(())
    }

    #[test]
    fn unit_variant_with_content_fails_with_invalid_payload() -> Result<(), Box<dyn Error>> {
        for text in [r#"{"SENTINEL":1}"#, "[]", r#""SENTINEL""#] {
            let payload = Payload::from_json(text)?;
            let err = decode_variant::<Shape>(0, "Shape", 1, &payload).unwrap_err();
            assert!(matches!(err, DecodeError::InvalidPayload { .. }), "{err}");
            assert!(!err.to_string().contains("SENTINEL"), "{err}");
        }
        Ok(())
    }

    #[test]
    fn tagless_depth_counts_only_the_content() -> Result<(), Box<dyn Error>> {
        // The tag is not written, so it does not count towards MAX_DEPTH:
        // nest a tuple variant's content exactly to the limit.
        let mut value = serde_json::Value::Null;
        for _ in 0..crate::payload::MAX_DEPTH - 1 {
            value = serde_json::Value::Array(vec![value]);
        }
        #[derive(Serialize)]
        enum Deep {
            V(serde_json::Value, u8),
        }
        let payload = encode_tagless(&Deep::V(value.clone(), 0))?;
        assert!(Payload::from_json(payload.into_string()).is_ok());
        let too_deep = Deep::V(serde_json::Value::Array(vec![value]), 0);
        assert_eq!(
            encode_tagless(&too_deep).unwrap_err(),
            PayloadError::TooDeep {
                max: crate::payload::MAX_DEPTH
            }
        );
        Ok(())
    }

    #[test]
    fn a_type_that_is_not_an_enum_fails_with_invalid_payload() -> Result<(), Box<dyn Error>> {
        let payload = Payload::from_json("1")?;
        let err = decode_variant::<u64>(0, "Number", 1, &payload).unwrap_err();
        assert!(matches!(err, DecodeError::InvalidPayload { .. }), "{err}");
        Ok(())
    }
}
