//! What a crash test needs: seeded randomness, batches whose every event
//! can be recognised afterwards, and the check that what survived is what
//! was promised.
//!
//! A crash test runs writers in a child process, kills it in the middle
//! of appending, and reads the log again. Two promises must hold: an
//! acknowledged append is present, at the positions and with the ids it
//! was acknowledged with; and an append is all there or not there at all.
//! To check the second without a record of what was in flight, every event
//! carries its batch in its metadata (`batch_id`, `index`, `count`) and a
//! payload that is a pure function of both, so a torn, reordered or changed
//! batch shows in the log itself.
//!
//! - [`Dice`] and [`seed`]: random choices that `ANNALS_TEST_SEED` repeats.
//! - [`random_batch`]: one append of 1 to `max_events` events over 1-3
//!   streams, with exact expected versions.
//! - [`Ack`]: an acknowledged append as one line of text, for the child to
//!   print and the parent to parse.
//! - [`verify_batches`]: checks the log against the acknowledgements.

use std::collections::{BTreeMap, HashSet};

use crate::{
    AppendOutcome, AppendRequest, EventId, ExpectedVersion, Metadata, NewEvent, Payload, Position,
    RecordedEvent, StreamId,
};

/// A small deterministic generator (xorshift64), so that a failing run can
/// be repeated from its seed.
#[derive(Debug, Clone)]
pub struct Dice(u64);

impl Dice {
    /// Dice that start from `seed`; 0, where xorshift would stay, is
    /// replaced by a fixed odd number.
    pub fn new(seed: u64) -> Dice {
        Dice(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// A number below `sides` (0 when `sides` is 0).
    pub fn roll(&mut self, sides: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % sides.max(1)
    }
}

/// The seed of a randomised test: `ANNALS_TEST_SEED` when it is set to a
/// number, or else one taken from the clock. A test prints it, so that a
/// failure can be repeated.
pub fn seed() -> u64 {
    std::env::var("ANNALS_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| {
                    u64::try_from(d.as_nanos() % u128::from(u64::MAX)).unwrap_or(1) | 1
                })
        })
}

/// The payload of event `index` of batch `batch`: a pure function of both,
/// of varied length, with odd spacing, an exponent, escapes and non-ASCII
/// text, all of which a store must give back byte for byte.
pub fn batch_payload(batch: &str, index: u64) -> String {
    // The batch id is written as a JSON string, so that any id gives valid JSON.
    let batch = serde_json::Value::from(batch);
    let pad = "é\\\"x".repeat(usize::try_from(index * 7 % 23).unwrap_or(0));
    format!("{{ \"batch\":{batch},\n\t\"index\" : {index}, \"pad\":\"{pad}\", \"f\": 1.5e-7 }}")
}

/// One append for a crash test: 1 to `max_events` events of type
/// `Crashed`, spread in order over 1-3 consecutive entries of `streams`
/// (each entry a stream and the version the writer's appends have brought
/// it to), with `Exact` expected versions. Each event has the metadata
/// fields `batch_id`, `index` and `count` and the payload
/// [`batch_payload`]`(batch, index)`. The versions in `streams` are moved
/// on as if the append succeeds.
///
/// # Panics
///
/// If `streams` is empty.
pub fn random_batch(
    dice: &mut Dice,
    batch: &str,
    max_events: u64,
    streams: &mut [(StreamId, u64)],
) -> AppendRequest {
    assert!(!streams.is_empty(), "a batch needs a stream to go to");
    let candidates = streams.len() as u64;
    let count = 1 + dice.roll(max_events);
    let spans = (1 + dice.roll(3)).min(count).min(candidates);
    let first_stream = dice.roll(candidates);
    let mut request = AppendRequest::new();
    let mut index = 0;
    for s in 0..spans {
        let k = usize::try_from((first_stream + s) % candidates)
            .expect("an index below a slice length fits in usize");
        // Leave at least one event for each later span.
        let here = if s + 1 == spans {
            count - index
        } else {
            1 + dice.roll(count - index - (spans - s - 1))
        };
        let events = (index..index + here)
            .map(|i| batch_event(batch, i, count))
            .collect();
        let (stream, version) = &mut streams[k];
        request = request.stream(stream.clone(), ExpectedVersion::Exact(*version), events);
        *version += here;
        index += here;
    }
    request
}

/// Event `index` of the `count` events of batch `batch`.
fn batch_event(batch: &str, index: u64, count: u64) -> NewEvent {
    let mut metadata = Metadata::default();
    metadata.fields.insert("batch_id".into(), batch.into());
    metadata.fields.insert("index".into(), index.into());
    metadata.fields.insert("count".into(), count.into());
    let payload = Payload::from_json(batch_payload(batch, index))
        .expect("a batch payload is valid JSON within the payload rules");
    NewEvent::new("Crashed", 1, payload)
        .expect("\"Crashed\" is a valid event type")
        .with_metadata(metadata)
}

/// One acknowledged append: its batch, the positions of its first and last
/// events, and the ids of its events in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The batch id, as given to [`random_batch`].
    pub batch: String,
    /// Where the append's first event is.
    pub first: Position,
    /// Where the append's last event is.
    pub last: Position,
    /// The ids the writer sent, in the order of the request.
    pub ids: Vec<EventId>,
}

impl Ack {
    /// The acknowledgement of an append of batch `batch` whose request had
    /// the event ids `ids` and that returned `outcome`.
    pub fn new(batch: impl Into<String>, ids: Vec<EventId>, outcome: &AppendOutcome) -> Ack {
        Ack {
            batch: batch.into(),
            first: outcome.first_position().unwrap_or(Position::START),
            last: outcome.last_position().unwrap_or(Position::START),
            ids,
        }
    }

    /// One line of text (no line break): `batch first last id,id,...`.
    /// A child prints it after a marker of its choosing; [`Ack::parse`]
    /// reads it back, as long as the batch id has no space.
    pub fn line(&self) -> String {
        let ids: Vec<String> = self.ids.iter().map(EventId::to_string).collect();
        format!(
            "{} {} {} {}",
            self.batch,
            self.first.0,
            self.last.0,
            ids.join(",")
        )
    }

    /// Reads a line written by [`Ack::line`]; `Err` names what was wrong.
    pub fn parse(line: &str) -> Result<Ack, String> {
        let bad = |what: &str| format!("a bad ACK line ({what}): {line:?}");
        let mut parts = line.trim_end().split(' ');
        let batch = parts
            .next()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| bad("no batch"))?;
        let mut position = |what: &str| {
            parts
                .next()
                .and_then(|p| p.parse().ok())
                .map(Position)
                .ok_or_else(|| bad(what))
        };
        let first = position("no first position")?;
        let last = position("no last position")?;
        let ids = match parts.next() {
            Some("") => Vec::new(),
            Some(ids) => ids
                .split(',')
                .map(|id| {
                    uuid::Uuid::parse_str(id)
                        .ok()
                        .and_then(|uuid| EventId::from_uuid(uuid).ok())
                        .ok_or_else(|| bad("an event id"))
                })
                .collect::<Result<_, _>>()?,
            None => return Err(bad("no event ids")),
        };
        if parts.next().is_some() {
            return Err(bad("more than four fields"));
        }
        Ok(Ack {
            batch: batch.to_owned(),
            first,
            last,
            ids,
        })
    }
}

/// Checks a whole log, in position order, made of [`random_batch`]
/// appends, against the appends acknowledged so far:
///
/// 1. positions and stream versions have no gaps ([`check_no_gaps`](super::check_no_gaps));
/// 2. every event belongs to a batch, and every stored batch is whole, in
///    order, contiguous in the log, with the payload bytes it was sent;
/// 3. every acknowledged batch is there, at the positions and with the
///    event ids it was acknowledged with.
///
/// Returns how many stored batches have no acknowledgement (appends that
/// committed while their writer died). `Err` names the first broken
/// promise and ends with `context` (the seed, say).
pub fn verify_batches(
    events: &[RecordedEvent],
    acked: &[Ack],
    context: &str,
) -> Result<usize, String> {
    super::check_no_gaps(events).map_err(|gap| format!("the log has a gap: {gap} ({context})"))?;
    let mut batches: BTreeMap<&str, Vec<&RecordedEvent>> = BTreeMap::new();
    for e in events {
        let batch = e.metadata.fields.get("batch_id").and_then(|b| b.as_str());
        let batch = batch
            .ok_or_else(|| format!("the event at {} has no batch_id ({context})", e.position))?;
        batches.entry(batch).or_default().push(e);
    }
    for (batch, stored) in &batches {
        let count_of = |e: &RecordedEvent| e.metadata.fields.get("count").and_then(|c| c.as_u64());
        let count =
            count_of(stored[0]).ok_or_else(|| format!("batch {batch} has no count ({context})"))?;
        if stored.len() as u64 != count {
            return Err(format!(
                "batch {batch} is torn: {} of its {count} events are stored ({context})",
                stored.len()
            ));
        }
        for (e, index) in stored.iter().zip(0u64..) {
            if count_of(e) != Some(count) {
                return Err(format!(
                    "batch {batch}: the event at {} has another count ({context})",
                    e.position
                ));
            }
            if e.metadata.fields.get("index").and_then(|i| i.as_u64()) != Some(index) {
                return Err(format!(
                    "batch {batch} is out of order: the event at {} is not number {index} ({context})",
                    e.position
                ));
            }
            if e.payload.as_str() != batch_payload(batch, index) {
                return Err(format!(
                    "batch {batch}: the payload bytes of event {index} changed ({context})"
                ));
            }
        }
        if !stored
            .windows(2)
            .all(|w| w[1].position.0 == w[0].position.0 + 1)
        {
            return Err(format!(
                "batch {batch} is not contiguous in the log ({context})"
            ));
        }
    }
    for ack in acked {
        let stored = batches
            .get(ack.batch.as_str())
            .ok_or_else(|| format!("acknowledged batch {} is missing ({context})", ack.batch))?;
        let (first, last) = (stored[0].position, stored[stored.len() - 1].position);
        if (first, last) != (ack.first, ack.last) {
            return Err(format!(
                "batch {} moved: acknowledged at {}..={}, stored at {first}..={last} ({context})",
                ack.batch, ack.first, ack.last
            ));
        }
        if !stored
            .iter()
            .map(|e| e.event_id)
            .eq(ack.ids.iter().copied())
        {
            return Err(format!(
                "batch {} has other event ids than were acknowledged ({context})",
                ack.batch
            ));
        }
    }
    let acked: HashSet<&str> = acked.iter().map(|a| a.batch.as_str()).collect();
    Ok(batches.keys().filter(|b| !acked.contains(*b)).count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::read_log;
    use crate::{EventStore, InMemoryStore};
    use std::error::Error;

    fn streams(n: u64) -> Result<Vec<(StreamId, u64)>, Box<dyn Error>> {
        (0..n)
            .map(|k| Ok((StreamId::new(format!("crash-{k}"))?, 0)))
            .collect()
    }

    /// Appends `batches` random batches; returns the log and their acks.
    async fn appended(batches: u64) -> Result<(Vec<RecordedEvent>, Vec<Ack>), Box<dyn Error>> {
        let store = InMemoryStore::new();
        let mut dice = Dice::new(11);
        let mut streams = streams(4)?;
        let mut acks = Vec::new();
        for n in 0..batches {
            let batch = format!("b{n}");
            let request = random_batch(&mut dice, &batch, 12, &mut streams);
            let ids = request.events().map(NewEvent::event_id).collect();
            let outcome = store.append(request).await?;
            acks.push(Ack::new(batch, ids, &outcome));
        }
        Ok((read_log(&store).await?, acks))
    }

    #[test]
    fn dice_repeat_from_their_seed_and_roll_from_zero() {
        let (mut a, mut b) = (Dice::new(42), Dice::new(42));
        let rolls: Vec<u64> = (0..20).map(|_| a.roll(1000)).collect();
        assert_eq!(rolls, (0..20).map(|_| b.roll(1000)).collect::<Vec<_>>());
        let mut zero = Dice::new(0);
        assert!((0..20).any(|_| zero.roll(1000) != 0));
        assert_eq!(zero.roll(0), 0);
    }

    #[test]
    fn batch_payloads_are_accepted_json_kept_byte_for_byte() -> Result<(), Box<dyn Error>> {
        for index in 0..30 {
            let text = batch_payload("c0t1n\"2", index);
            assert_eq!(Payload::from_json(text.clone())?.as_str(), text);
        }
        Ok(())
    }

    #[tokio::test]
    async fn random_batches_verify_with_their_acks() -> Result<(), Box<dyn Error>> {
        let (log, acks) = appended(40).await?;
        assert!(log.len() >= 40);
        assert_eq!(verify_batches(&log, &acks, "test"), Ok(0));
        assert_eq!(verify_batches(&log, &acks[..30], "test"), Ok(10));
        Ok(())
    }

    #[tokio::test]
    async fn ack_lines_read_back() -> Result<(), Box<dyn Error>> {
        let (_, acks) = appended(5).await?;
        for ack in &acks {
            assert_eq!(Ack::parse(&ack.line()).as_ref(), Ok(ack));
        }
        assert!(Ack::parse("b1 3").is_err());
        assert!(Ack::parse("b1 3 4 not-an-id").is_err());
        Ok(())
    }

    #[tokio::test]
    async fn a_missing_or_moved_acknowledged_batch_fails() -> Result<(), Box<dyn Error>> {
        let (log, mut acks) = appended(5).await?;
        let mut moved = acks.clone();
        moved[2].first = Position(moved[2].first.0 + 1);
        assert!(
            verify_batches(&log, &moved, "test").is_err_and(|e| e.starts_with("batch b2 moved"))
        );
        let mut other_ids = acks.clone();
        other_ids[1].ids.reverse();
        other_ids[1].ids.push(EventId::new());
        assert!(
            verify_batches(&log, &other_ids, "test").is_err_and(|e| e.contains("other event ids"))
        );
        acks[0].batch = "gone".into();
        assert!(verify_batches(&log, &acks, "seed 7")
            .is_err_and(|e| e == "acknowledged batch gone is missing (seed 7)"));
        Ok(())
    }

    #[tokio::test]
    async fn a_torn_batch_fails() -> Result<(), Box<dyn Error>> {
        let store = InMemoryStore::new();
        let mut streams = streams(1)?;
        let mut dice = Dice::new(5);
        let request = loop {
            let request = random_batch(&mut dice, "torn", 12, &mut streams);
            if request.event_count() > 1 {
                break request;
            }
            streams[0].1 = 0;
        };
        // Store all but the last event of the batch.
        let mut events: Vec<NewEvent> = request.events().cloned().collect();
        events.pop();
        store
            .append(AppendRequest::to_stream(
                streams[0].0.clone(),
                ExpectedVersion::NoStream,
                events,
            ))
            .await?;
        let log = read_log(&store).await?;
        assert!(
            verify_batches(&log, &[], "test").is_err_and(|e| e.starts_with("batch torn is torn"))
        );
        Ok(())
    }
}
