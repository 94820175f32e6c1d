//! Typed values: non-finite floats, NUL and depth, checked by a serializer
//! that writes nothing, before serde_json gets a chance to write `null`.

use std::fmt;

use serde::ser::{self, Serialize};

use crate::payload::error::{PayloadError, MAX_DEPTH};

/// Checks that a value serializes to JSON that reads back as it was.
pub(crate) fn check_serializable<T: Serialize + ?Sized>(value: &T) -> Result<(), PayloadError> {
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
