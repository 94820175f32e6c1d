//! Expected versions, and the version a stream actually had.

use std::fmt;

/// What the appender believes the stream's version to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExpectedVersion {
    /// Append whatever the stream's version is.
    Any,
    /// The stream must not exist yet. `Exact(0)` means the same.
    NoStream,
    /// The stream must exist, at any version.
    StreamExists,
    /// The stream must be exactly at this version (versions start at 1).
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream at `current` (`None` when it has no events) meets
    /// this expectation.
    pub fn matches(&self, current: Option<u64>) -> bool {
        match (self, current) {
            (ExpectedVersion::Any, _) => true,
            (ExpectedVersion::NoStream | ExpectedVersion::Exact(0), None) => true,
            (ExpectedVersion::StreamExists, Some(_)) => true,
            (ExpectedVersion::Exact(v), Some(c)) => *v == c,
            _ => false,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream | ExpectedVersion::Exact(0) => f.write_str("no stream"),
            ExpectedVersion::StreamExists => f.write_str("an existing stream"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// The version a stream had when an append was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActualVersion {
    /// The stream has no events.
    NoStream,
    /// The stream's last event has this version.
    At(u64),
}

impl From<Option<u64>> for ActualVersion {
    fn from(version: Option<u64>) -> Self {
        version.map_or(ActualVersion::NoStream, ActualVersion::At)
    }
}

impl fmt::Display for ActualVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActualVersion::NoStream => f.write_str("no stream"),
            ActualVersion::At(v) => write!(f, "version {v}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_zero_means_no_stream() {
        assert!(ExpectedVersion::Exact(0).matches(None));
        assert!(!ExpectedVersion::Exact(0).matches(Some(1)));
        assert!(ExpectedVersion::NoStream.matches(None));
        assert!(!ExpectedVersion::StreamExists.matches(None));
        assert!(ExpectedVersion::Any.matches(Some(9)));
    }
}
