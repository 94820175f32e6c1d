//! Helpers that every SQL backend needs the same way: the byte range of a
//! stream-id prefix, the first version a stream read starts from, the
//! numbers a request's status is stored as, and a cache of the names in
//! one result.

use crate::event::Timestamp;
use crate::id::{EventType, StreamId};
use crate::payload::Payload;
use crate::read::{Direction, ReadStream};
use crate::requests::RequestStatus;
use crate::snapshot::{Snapshot, SnapshotError};

/// The range of stream ids that start with `prefix`: `[lower, upper)`, no
/// upper bound when every character is the last one. Compared byte for
/// byte (UTF-8 order is code-point order), it holds exactly the ids with
/// the prefix, so a backend filters by range, never with `LIKE`.
pub fn prefix_bounds(prefix: &str) -> (String, Option<String>) {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match u32::from(last) + 1 {
            0xD800 => Some('\u{E000}'),
            n => char::from_u32(n),
        };
        if let Some(next) = next {
            chars.push(next);
            return (prefix.to_owned(), Some(chars.into_iter().collect()));
        }
    }
    (prefix.to_owned(), None)
}

/// Where a stream read starts: the version to compare with (`>=` going
/// forward, `<=` going backward) and the direction; `None` when the read's
/// limit is zero and there is nothing to read.
pub fn stream_read_start(read: &ReadStream) -> Option<(Direction, u64)> {
    if read.max_count() == 0 {
        return None;
    }
    Some(match read.direction() {
        Direction::Backward => (Direction::Backward, read.start().unwrap_or(u64::MAX)),
        direction => (direction, read.start().unwrap_or(1)),
    })
}

/// The number a backend stores a request's status as: 0 pending, 1
/// running (shown only: a pending request with a live claim), 2 done, 3
/// dead, 4 discarded.
pub fn request_status_code(status: RequestStatus) -> i16 {
    match status {
        RequestStatus::Pending => 0,
        RequestStatus::Running => 1,
        RequestStatus::Done => 2,
        RequestStatus::Dead => 3,
        RequestStatus::Discarded => 4,
    }
}

/// The status stored as `code`, `None` for a number no status has.
pub fn request_status_from_code(code: i64) -> Option<RequestStatus> {
    Some(match code {
        0 => RequestStatus::Pending,
        1 => RequestStatus::Running,
        2 => RequestStatus::Done,
        3 => RequestStatus::Dead,
        4 => RequestStatus::Discarded,
        _ => return None,
    })
}

/// A stored snapshot row as a snapshot of `stream`: its version, state
/// version, state and time as the backend's integer columns hold them. A
/// number out of range was written behind the store's back:
/// [`SnapshotError::Corrupt`], never the state's content.
pub fn snapshot_from_stored(
    stream: &StreamId,
    version: i64,
    state_version: i64,
    state: String,
    taken_at: i64,
) -> Result<Snapshot, SnapshotError> {
    let corrupt = |reason: &str| SnapshotError::Corrupt {
        stream: stream.clone(),
        reason: reason.to_owned(),
    };
    Ok(Snapshot {
        stream_id: stream.clone(),
        version: u64::try_from(version).map_err(|_| corrupt("version is negative"))?,
        state_version: u32::try_from(state_version)
            .map_err(|_| corrupt("state version is out of range"))?,
        state: Payload::from_stored(state),
        taken_at: Timestamp::from_unix_micros(taken_at),
    })
}

/// The names already read in one result: rows of one stream, or of a few
/// event types, share one allocation, and each name is checked once.
#[derive(Debug, Default)]
pub struct Names {
    stream: Option<StreamId>,
    types: Vec<EventType>,
}

/// How many distinct event types a result remembers.
const REMEMBERED_TYPES: usize = 32;

impl Names {
    /// The stream id stored as `text`, or why it breaks the rules.
    pub fn stream(&mut self, text: &str) -> Result<StreamId, String> {
        if let Some(known) = &self.stream {
            if known.as_str() == text {
                return Ok(known.clone());
            }
        }
        let stream = StreamId::new(text)
            .map_err(|e| format!("stored stream id is invalid: {}", e.problem))?;
        self.stream = Some(stream.clone());
        Ok(stream)
    }

    /// The event type stored as `text`, or why it breaks the rules.
    pub fn event_type(&mut self, text: &str) -> Result<EventType, String> {
        if let Some(known) = self.types.iter().find(|t| t.as_str() == text) {
            return Ok(known.clone());
        }
        let event_type = EventType::new(text)
            .map_err(|e| format!("stored event type is invalid: {}", e.problem))?;
        if self.types.len() < REMEMBERED_TYPES {
            self.types.push(event_type.clone());
        }
        Ok(event_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_bounds_cover_exactly_the_ids_with_the_prefix() {
        assert_eq!(prefix_bounds("acc_"), ("acc_".into(), Some("acc`".into())));
        assert_eq!(
            prefix_bounds("account-"),
            ("account-".into(), Some("account.".into()))
        );
        assert_eq!(prefix_bounds(""), (String::new(), None));
        assert_eq!(
            prefix_bounds("a\u{D7FF}"),
            ("a\u{D7FF}".into(), Some("a\u{E000}".into()))
        );
        assert_eq!(
            prefix_bounds("a\u{10FFFF}"),
            ("a\u{10FFFF}".into(), Some("b".into()))
        );
        assert_eq!(prefix_bounds("\u{10FFFF}"), ("\u{10FFFF}".into(), None));
    }

    #[test]
    fn request_status_codes_go_both_ways() {
        for status in [
            RequestStatus::Pending,
            RequestStatus::Running,
            RequestStatus::Done,
            RequestStatus::Dead,
            RequestStatus::Discarded,
        ] {
            let code = request_status_code(status);
            assert_eq!(request_status_from_code(i64::from(code)), Some(status));
        }
        assert_eq!(request_status_from_code(9), None);
    }

    #[test]
    fn stream_reads_start_at_the_first_or_last_version() {
        assert_eq!(
            stream_read_start(&ReadStream::forward()),
            Some((Direction::Forward, 1))
        );
        assert_eq!(
            stream_read_start(&ReadStream::backward()),
            Some((Direction::Backward, u64::MAX))
        );
        assert_eq!(stream_read_start(&ReadStream::forward().limit(0)), None);
    }
}
