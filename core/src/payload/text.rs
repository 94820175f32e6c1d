//! Raw JSON text: duplicate keys, NUL and depth, checked by walking the
//! text once without building a value.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use crate::payload::error::{redacted_message, PayloadError, MAX_DEPTH};

pub(crate) fn check_json_text(text: &str) -> Result<(), PayloadError> {
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
