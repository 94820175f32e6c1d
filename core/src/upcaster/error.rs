//! What goes wrong with upcasters: at build time, and on a stored event.

/// Why an upcaster registry was refused at build time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Two upcasters read the same type and version.
    #[error("two upcasters read event type {event_type:?} version {version}")]
    DuplicateStep {
        /// The type.
        event_type: String,
        /// The version.
        version: u32,
    },
    /// A version below the current one has no upcaster, so stored events of
    /// that version could never be read.
    #[error("event type {event_type:?} is at version {current}, but no upcaster reads version {version}")]
    MissingStep {
        /// The type.
        event_type: String,
        /// The version with no step.
        version: u32,
        /// The type's current version.
        current: u32,
    },
    /// An upcaster produces a type and version that is neither current nor
    /// read by another upcaster: a dead end.
    #[error("the upcaster for {from_type:?} version {from_version} produces {event_type:?} version {version}, which is not current and has no upcaster")]
    DeadEnd {
        /// The step's input type.
        from_type: String,
        /// The step's input version.
        from_version: u32,
        /// The type it produces.
        event_type: String,
        /// The version it produces.
        version: u32,
    },
    /// An upcaster reads a version that is current or newer.
    #[error(
        "an upcaster reads event type {event_type:?} version {version}, but {current} is current"
    )]
    NotOlder {
        /// The type.
        event_type: String,
        /// The version it reads.
        version: u32,
        /// The current version.
        current: u32,
    },
    /// Following the upcasters from this type and version comes back to it.
    #[error("the upcasters for event type {event_type:?} version {version} form a cycle")]
    Cycle {
        /// A type on the cycle.
        event_type: String,
        /// Its version.
        version: u32,
    },
    /// Two event types claim different current versions for one name.
    #[error("event type {event_type:?} is declared current at versions {first} and {second}")]
    ConflictingCurrent {
        /// The type.
        event_type: String,
        /// One declared version.
        first: u32,
        /// The other.
        second: u32,
    },
}

/// Why a stored event could not be brought up to date.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpcastError {
    /// The stored payload is not JSON.
    #[error("payload is not JSON: {reason}")]
    Payload {
        /// What the parser said (without quoting the payload).
        reason: String,
    },
    /// The upcaster itself failed.
    #[error("upcaster for {event_type:?} version {version} failed: {reason}")]
    Step {
        /// The type it read.
        event_type: String,
        /// The version it read.
        version: u32,
        /// What the upcaster reported.
        reason: String,
    },
    /// An upcaster returned a type or version it did not declare.
    #[error("upcaster for {event_type:?} version {version} returned {produced_type:?} version {produced_version}, which it does not declare")]
    Undeclared {
        /// The type it read.
        event_type: String,
        /// The version it read.
        version: u32,
        /// The type it returned.
        produced_type: String,
        /// The version it returned.
        produced_version: u32,
    },
    /// The event is stored under an old name (one the upcasters rename or
    /// reshape) at a version no upcaster reads: it was written by code this
    /// registry does not know. Deploy that code's upcasters; never skip it.
    #[error(
        "event type {event_type:?} version {version} is an old name at a version no upcaster reads"
    )]
    NoPath {
        /// The stored type name.
        event_type: String,
        /// The stored schema version.
        version: u32,
    },
    /// The upcast payload cannot be stored as JSON (a NUL or deep nesting),
    /// or the upcast type name is invalid.
    #[error("upcast event is invalid: {reason}")]
    Invalid {
        /// What was wrong.
        reason: String,
    },
}
