//! Reads: a page of one stream, or a page of the global log.
//!
//! Every read returns one bounded page (at most [`MAX_READ_LIMIT`] events),
//! so memory stays bounded whatever the size of the log; a long read is
//! many pages.
//!
//! # Pages of the global log say how far they looked
//!
//! A filtered read of the global log skips events that do not match. A page
//! therefore carries [`Page::read_through`]: the position up to which the
//! store looked, matching or not. A follower keeps `read_through` as its
//! checkpoint, so a page with few or no matches still moves it past the
//! events it skipped.

mod error;
mod log;
mod stream;

pub use error::ReadError;
pub use log::{LogFilter, Page, ReadAll};
pub use stream::{Direction, ReadStream, ReplayEvent, MAX_READ_LIMIT};
