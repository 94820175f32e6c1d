//! Routing keys and the patterns subscribers choose them by.

use std::fmt;

use annals_core::RecordedEvent;

/// The key an event is routed by: `"{category}.{event_type}"`, where the
/// category is its stream id's category (`account.Opened` for an `Opened`
/// event in stream `account-42`).
pub fn routing_key(event: &RecordedEvent) -> String {
    format!(
        "{}.{}",
        event.stream_id.category(),
        event.event_type.as_str()
    )
}

/// One part of a pattern: a word to match exactly, or `*` for any word.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Any,
    Word(String),
}

impl Part {
    fn matches(&self, word: &str) -> bool {
        match self {
            Part::Any => true,
            Part::Word(w) => w == word,
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::Any => f.write_str("*"),
            Part::Word(w) => f.write_str(w),
        }
    }
}

/// Which routing keys a subscriber receives: `account.Opened` (exactly
/// that), `account.*` (every type in a category), `*.Opened` (a type in
/// every category) or `*` (everything).
///
/// ```
/// use annals_projections::bus::Pattern;
/// let pattern = Pattern::new("account.*")?;
/// assert!(pattern.matches_key("account.Opened"));
/// assert!(!pattern.matches_key("parcel.Shipped"));
/// # Ok::<(), annals_projections::bus::InvalidPattern>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// `None` for `*` alone: every key, whatever its shape.
    parts: Option<(Part, Part)>,
}

impl Pattern {
    /// Parses a pattern; a malformed one (an empty part, more than one
    /// dot, `*` inside a word) is refused.
    pub fn new(pattern: &str) -> Result<Self, InvalidPattern> {
        let refuse = |problem| InvalidPattern {
            pattern: pattern.to_owned(),
            problem,
        };
        if pattern == "*" {
            return Ok(Pattern { parts: None });
        }
        let mut split = pattern.split('.');
        let (category, event_type) = match (split.next(), split.next(), split.next()) {
            (Some(c), Some(t), None) => (c, t),
            (_, None, _) => return Err(refuse(PatternProblem::NoDot)),
            _ => return Err(refuse(PatternProblem::MoreThanOneDot)),
        };
        let part = |word: &str| {
            if word.is_empty() {
                Err(refuse(PatternProblem::EmptyPart))
            } else if word == "*" {
                Ok(Part::Any)
            } else if word.contains('*') {
                Err(refuse(PatternProblem::WildcardInsideWord))
            } else {
                Ok(Part::Word(word.to_owned()))
            }
        };
        Ok(Pattern {
            parts: Some((part(category)?, part(event_type)?)),
        })
    }

    /// Whether the pattern selects routing key `key`.
    pub fn matches_key(&self, key: &str) -> bool {
        match &self.parts {
            None => true,
            Some((category, event_type)) => key
                .split_once('.')
                .is_some_and(|(c, t)| category.matches(c) && event_type.matches(t)),
        }
    }

    /// Whether the pattern selects `event`, by its routing key.
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        match &self.parts {
            None => true,
            Some((category, event_type)) => {
                category.matches(event.stream_id.category())
                    && event_type.matches(event.event_type.as_str())
            }
        }
    }
}

impl TryFrom<&str> for Pattern {
    type Error = InvalidPattern;
    fn try_from(pattern: &str) -> Result<Self, Self::Error> {
        Pattern::new(pattern)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.parts {
            None => f.write_str("*"),
            Some((category, event_type)) => write!(f, "{category}.{event_type}"),
        }
    }
}

/// A pattern that cannot be parsed: fix the pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pattern {pattern:?}: {problem}")]
#[non_exhaustive]
pub struct InvalidPattern {
    /// The pattern as given.
    pub pattern: String,
    /// What is wrong with it.
    pub problem: PatternProblem,
}

/// What is wrong with a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternProblem {
    /// Not `*` and without a dot between category and event type.
    #[error("has no dot between category and event type")]
    NoDot,
    /// More than one dot.
    #[error("has more than one dot")]
    MoreThanOneDot,
    /// A part before or after the dot is empty.
    #[error("has an empty part")]
    EmptyPart,
    /// A `*` is part of a longer word (`acc*`); `*` stands only alone.
    #[error("has `*` inside a word")]
    WildcardInsideWord,
}
