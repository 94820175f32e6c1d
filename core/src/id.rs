//! Validated names: stream ids, event type names and tenants.
//!
//! Names are byte-exact on every backend: no case folding, no Unicode
//! normalisation. They must be non-empty, at most [`MAX_NAME_LEN`] bytes,
//! free of control characters and of invisible format characters (such as
//! the zero-width space), and must not start or end with whitespace, so
//! that two names that look the same on screen are not two different
//! names in the store.

use std::fmt;
use std::sync::Arc;

/// The longest stream id, event type name or tenant, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameProblem {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    TooLong {
        /// The length of the refused name, in bytes.
        len: usize,
        /// The longest name allowed, in bytes.
        max: usize,
    },
    /// The name holds a control character (NUL, newline, escape...).
    ControlCharacter {
        /// Byte offset of the first control character.
        at: usize,
    },
    /// The name holds an invisible format character (a zero-width space or
    /// joiner, a direction mark, a soft hyphen...): `account-1` followed by
    /// one would look like `account-1` and be another stream.
    InvisibleCharacter {
        /// Byte offset of the first such character.
        at: usize,
    },
    /// The name starts or ends with whitespace.
    SurroundingWhitespace,
    /// A stream id has an empty category (`"-42"`) or an empty id (`"account-"`).
    MissingPart,
    /// A category holds a `-`, which would make `{category}-{id}` ambiguous.
    DashInCategory,
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameProblem::Empty => f.write_str("it is empty"),
            NameProblem::TooLong { len, max } => {
                write!(f, "it is {len} bytes long, more than the maximum of {max}")
            }
            NameProblem::ControlCharacter { at } => {
                write!(f, "it holds a control character at byte {at}")
            }
            NameProblem::InvisibleCharacter { at } => {
                write!(f, "it holds an invisible format character at byte {at}")
            }
            NameProblem::SurroundingWhitespace => f.write_str("it starts or ends with whitespace"),
            NameProblem::MissingPart => {
                f.write_str("it must read {category}-{id} with both parts non-empty")
            }
            NameProblem::DashInCategory => f.write_str("a category must not contain '-'"),
        }
    }
}

/// A name was refused. The message names the kind of name and the reason but
/// shows only a bounded, escaped prefix of the value, and nothing of a
/// tenant name (which is metadata, and metadata never reaches messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind}{shown}: {problem}")]
pub struct InvalidName {
    /// What kind of name it was: `"stream id"`, `"event type"`, `"category"`, `"tenant"`.
    pub kind: &'static str,
    /// The reason.
    pub problem: NameProblem,
    shown: String,
}

impl InvalidName {
    fn new(kind: &'static str, value: &str, problem: NameProblem) -> Self {
        // Show at most 64 characters, escaped, so a hostile name cannot forge
        // log lines or flood an error message.
        let mut shown: String = value.chars().take(64).collect::<String>();
        if shown.len() < value.len() {
            shown.push('…');
        }
        InvalidName {
            kind,
            problem,
            shown: format!(" {shown:?}"),
        }
    }

    /// A refusal that says what is wrong without showing the value.
    fn hidden(kind: &'static str, problem: NameProblem) -> Self {
        InvalidName {
            kind,
            problem,
            shown: String::new(),
        }
    }
}

/// Whether `c` is an invisible format character (Unicode general category
/// Cf, as of Unicode 15): it changes nothing on screen, so a name holding
/// one is a look-alike of the name without it.
fn is_invisible_format(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
}

/// What is wrong with a name under the rules every name shares, if anything.
fn name_problem(value: &str) -> Option<NameProblem> {
    if value.is_empty() {
        return Some(NameProblem::Empty);
    }
    if value.len() > MAX_NAME_LEN {
        return Some(NameProblem::TooLong {
            len: value.len(),
            max: MAX_NAME_LEN,
        });
    }
    // Most names are printable ASCII, which holds no control and no
    // invisible character: only the whitespace rule is left to check.
    let printable_ascii = value.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    if printable_ascii {
        let padded = value.starts_with(' ') || value.ends_with(' ');
        return padded.then_some(NameProblem::SurroundingWhitespace);
    }
    if let Some((at, _)) = value.char_indices().find(|(_, c)| c.is_control()) {
        Some(NameProblem::ControlCharacter { at })
    } else if let Some((at, _)) = value.char_indices().find(|(_, c)| is_invisible_format(*c)) {
        Some(NameProblem::InvisibleCharacter { at })
    } else if value.starts_with(char::is_whitespace) || value.ends_with(char::is_whitespace) {
        Some(NameProblem::SurroundingWhitespace)
    } else {
        None
    }
}

/// Checks the rules shared by every name.
pub(crate) fn check_name(kind: &'static str, value: &str) -> Result<(), InvalidName> {
    match name_problem(value) {
        Some(problem) => Err(InvalidName::new(kind, value, problem)),
        None => Ok(()),
    }
}

/// Checks a tenant name by the rules of every name; the error never shows
/// the name.
pub(crate) fn check_tenant(value: &str) -> Result<(), InvalidName> {
    match name_problem(value) {
        Some(problem) => Err(InvalidName::hidden("tenant", problem)),
        None => Ok(()),
    }
}

/// The id of a stream: `{category}-{id}`, split at the first `-`.
///
/// ```
/// use annals_core::StreamId;
/// let stream = StreamId::new("account-42")?;
/// assert_eq!(stream.category(), "account");
/// assert_eq!(stream.id(), "42");
/// assert!(StreamId::new("").is_err());
/// # Ok::<(), annals_core::InvalidName>(())
/// ```
///
/// Cloning is cheap: the text is shared.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(Arc<str>);

impl StreamId {
    /// Validates a stream id.
    pub fn new(value: impl Into<String>) -> Result<Self, InvalidName> {
        let value = value.into();
        check_name("stream id", &value)?;
        let problem = match value.split_once('-') {
            Some((category, id)) if !category.is_empty() && !id.is_empty() => {
                // Each part follows the whitespace rule too: "account- 42"
                // must not pass for "account-42".
                let padded = |part: &str| {
                    part.starts_with(char::is_whitespace) || part.ends_with(char::is_whitespace)
                };
                if padded(category) || padded(id) {
                    NameProblem::SurroundingWhitespace
                } else {
                    return Ok(StreamId(Arc::from(value)));
                }
            }
            _ => NameProblem::MissingPart,
        };
        Err(InvalidName::new("stream id", &value, problem))
    }

    /// Builds `{category}-{id}`, checking the category has no `-`.
    pub fn from_parts(category: &str, id: &str) -> Result<Self, InvalidName> {
        check_category(category)?;
        StreamId::new(format!("{category}-{id}"))
    }

    /// The part before the first `-`.
    pub fn category(&self) -> &str {
        self.0.split_once('-').map_or(&*self.0, |(c, _)| c)
    }

    /// The part after the first `-`.
    pub fn id(&self) -> &str {
        self.0.split_once('-').map_or("", |(_, id)| id)
    }

    /// The whole id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks a stream category: a valid name with no `-`.
pub fn check_category(category: &str) -> Result<(), InvalidName> {
    check_name("category", category)?;
    if category.contains('-') {
        return Err(InvalidName::new(
            "category",
            category,
            NameProblem::DashInCategory,
        ));
    }
    Ok(())
}

impl TryFrom<&str> for StreamId {
    type Error = InvalidName;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        StreamId::new(value)
    }
}

impl TryFrom<String> for StreamId {
    type Error = InvalidName;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        StreamId::new(value)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Validated ids hold no control characters, so printing them raw is
        // safe; `pad` honours width and alignment.
        f.pad(&self.0)
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamId({:?})", self.0)
    }
}

impl AsRef<str> for StreamId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The stored name of an event type, such as `"AccountOpened"`.
///
/// Follows the same rules as stream ids, without the `{category}-{id}` shape.
/// `#[derive(DomainEvent)]` writes each stored name of an event enum as a
/// constant (`AccountEvent::OPENED`), so a filter on event types names
/// constants the compiler checks rather than strings a typo breaks.
///
/// Cloning is cheap: the text is shared or static.
#[derive(Clone)]
pub struct EventType(Name);

/// The text of an [`EventType`]: static for names known at compile time.
#[derive(Clone)]
enum Name {
    Static(&'static str),
    Shared(Arc<str>),
}

impl EventType {
    /// Validates an event type name.
    pub fn new(value: impl Into<String>) -> Result<Self, InvalidName> {
        let value = value.into();
        check_name("event type", &value)?;
        Ok(EventType(Name::Shared(Arc::from(value))))
    }

    /// A name checked at compile time; for code generated by
    /// `#[derive(DomainEvent)]`, which refuses invalid names at the
    /// offending token. Not public API.
    #[doc(hidden)]
    pub const fn from_checked_static(name: &'static str) -> Self {
        EventType(Name::Static(name))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Name::Static(name) => name,
            Name::Shared(name) => name,
        }
    }
}

impl PartialEq for EventType {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for EventType {}

impl std::hash::Hash for EventType {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for EventType {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for EventType {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl TryFrom<&str> for EventType {
    type Error = InvalidName;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        EventType::new(value)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Debug for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventType({:?})", self.as_str())
    }
}

impl PartialEq<str> for EventType {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for EventType {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl AsRef<str> for EventType {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_id_splits_at_the_first_dash() -> Result<(), InvalidName> {
        let s = StreamId::new("a-b-c")?;
        assert_eq!((s.category(), s.id()), ("a", "b-c"));
        Ok(())
    }

    #[test]
    fn stream_id_fails_with_empty() {
        let err = StreamId::new("").unwrap_err();
        assert_eq!(err.problem, NameProblem::Empty);
        assert_eq!(err.kind, "stream id");
    }

    #[test]
    fn stream_id_fails_with_too_long() {
        let err = StreamId::new(format!("a-{}", "x".repeat(10 * 1024))).unwrap_err();
        assert_eq!(
            err.problem,
            NameProblem::TooLong {
                len: 10 * 1024 + 2,
                max: MAX_NAME_LEN
            }
        );
        assert!(err.to_string().len() < 300, "message stays bounded");
    }

    #[test]
    fn stream_id_fails_with_control_character() {
        for (value, at) in [("a-b\0c", 3), ("a-\nb", 2), ("a\u{1b}-b", 1)] {
            let err = StreamId::new(value).unwrap_err();
            assert_eq!(err.problem, NameProblem::ControlCharacter { at });
            assert!(!err.to_string().contains('\n'));
        }
    }

    #[test]
    fn stream_id_fails_with_surrounding_whitespace() {
        for value in [
            " account-1",
            "account-1 ",
            "account-1\u{a0}",
            "account- 1",
            "account -1",
        ] {
            let err = StreamId::new(value).unwrap_err();
            assert_eq!(err.problem, NameProblem::SurroundingWhitespace);
        }
    }

    #[test]
    fn stream_id_fails_with_missing_part() {
        for value in ["-42", "account-", "account", "-"] {
            let err = StreamId::new(value).unwrap_err();
            assert_eq!(err.problem, NameProblem::MissingPart, "{value}");
        }
    }

    #[test]
    fn stream_id_is_byte_exact_for_case_and_normalisation() -> Result<(), InvalidName> {
        assert_ne!(StreamId::new("Account-1")?, StreamId::new("account-1")?);
        // U+00E9 versus e + U+0301: stored as given, two different streams.
        assert_ne!(
            StreamId::new("caf\u{e9}-1")?,
            StreamId::new("cafe\u{301}-1")?
        );
        Ok(())
    }

    #[test]
    fn look_alike_ids_fail_with_invisible_character() {
        for (value, at) in [
            ("account-1\u{200b}", 9),
            ("acc\u{200d}ount-1", 3),
            ("account-\u{feff}1", 8),
            ("\u{2066}account-1", 0),
        ] {
            let err = StreamId::new(value).unwrap_err();
            assert_eq!(
                err.problem,
                NameProblem::InvisibleCharacter { at },
                "{value:?}"
            );
        }
        assert!(EventType::new("Opened\u{ad}").is_err());
    }

    #[test]
    fn tenant_errors_never_show_the_tenant() {
        let err = check_tenant(" acme-secret-tenant").unwrap_err();
        assert_eq!(err.problem, NameProblem::SurroundingWhitespace);
        assert!(!err.to_string().contains("acme"), "{err}");
        assert!(!format!("{err:?}").contains("acme"), "{err:?}");
    }

    #[test]
    fn static_and_checked_event_types_are_equal() -> Result<(), InvalidName> {
        const OPENED: EventType = EventType::from_checked_static("Opened");
        assert_eq!(OPENED, EventType::new("Opened")?);
        assert_eq!(OPENED.to_string(), "Opened");
        Ok(())
    }

    #[test]
    fn category_fails_with_dash() {
        let err = StreamId::from_parts("bank-account", "1").unwrap_err();
        assert_eq!(err.problem, NameProblem::DashInCategory);
    }

    #[test]
    fn event_type_fails_with_the_same_rules_as_ids() {
        assert_eq!(EventType::new("").unwrap_err().problem, NameProblem::Empty);
        assert!(matches!(
            EventType::new("x".repeat(1024)).unwrap_err().problem,
            NameProblem::TooLong { len: 1024, .. }
        ));
        assert!(matches!(
            EventType::new("A\tB").unwrap_err().problem,
            NameProblem::ControlCharacter { at: 1 }
        ));
    }
}
