//! Telling an idempotent retry of a committed append from a reused id.

use crate::append::error::AppendError;
use crate::append::outcome::AppendOutcome;
use crate::append::request::AppendRequest;
use crate::event::{EventId, RecordedEvent};

/// Whether an append was committed before, by its event ids.
#[derive(Debug)]
#[non_exhaustive]
pub enum PriorAppend {
    /// None of its ids are stored: it is new.
    NotFound,
    /// It was committed before; this is the original result.
    Committed(AppendOutcome),
}

impl AppendRequest {
    /// Decides whether this request was already committed, given what the
    /// store holds under its event ids (`stored[i]` for the i-th event in
    /// commit order, `None` when that id is not stored).
    ///
    /// - no id stored: [`PriorAppend::NotFound`];
    /// - every id stored, each in this request's stream, at consecutive
    ///   versions in this order, with the same content:
    ///   [`PriorAppend::Committed`] with the original result;
    /// - some ids stored: [`AppendError::PartialDuplicate`];
    /// - every id stored but elsewhere or different: [`AppendError::EventIdReused`].
    pub fn find_prior_commit(
        &self,
        stored: Vec<Option<RecordedEvent>>,
    ) -> Result<PriorAppend, AppendError> {
        let total = stored.len();
        let already: Vec<EventId> = stored.iter().flatten().map(|e| e.event_id).collect();
        if already.is_empty() {
            return Ok(PriorAppend::NotFound);
        }
        if already.len() < total {
            return Err(AppendError::PartialDuplicate {
                already_stored: already,
                total,
            });
        }
        let mut stored = stored.into_iter().flatten();
        let mut recorded = Vec::with_capacity(total);
        for s in self.streams() {
            let mut previous: Option<u64> = None;
            for event in &s.events {
                // Lengths match: `stored` has one entry per event, all `Some`.
                let Some(found) = stored.next() else {
                    return Err(AppendError::EventIdReused {
                        event_id: event.event_id(),
                    });
                };
                let in_place =
                    found.stream_id == s.stream && previous.is_none_or(|p| found.version == p + 1);
                if !in_place || !event.same_content_as(&found) {
                    return Err(AppendError::EventIdReused {
                        event_id: event.event_id(),
                    });
                }
                previous = Some(found.version);
                recorded.push(found);
            }
        }
        Ok(PriorAppend::Committed(AppendOutcome::new(recorded)))
    }
}
