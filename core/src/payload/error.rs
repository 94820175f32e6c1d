//! Why a payload was refused, and how serde's errors are told without the
//! values they quote.

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
