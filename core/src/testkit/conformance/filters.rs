//! Filtered reads of the global log: what they match, and how far each
//! page says it read.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::{ensure, event, stream, CaseResult, Options, Step};
use crate::testkit::read_log;
use crate::{
    EventStore, EventStoreExt, EventType, ExpectedVersion, NewEvent, Payload, Position, ReadAll,
    RecordedEvent,
};

fn streams_of(events: &[RecordedEvent]) -> Vec<&str> {
    events.iter().map(|e| e.stream_id.as_str()).collect()
}

fn typed(event_type: &str, n: usize) -> NewEvent {
    let payload = Payload::from_json(format!("{{\"n\":{n}}}")).expect("valid JSON");
    NewEvent::new(event_type, 1, payload).expect("valid event type")
}

fn name(event_type: &str) -> EventType {
    EventType::new(event_type).expect("valid event type")
}

/// Guarantee 11: a filtered page shorter than its limit reads through the
/// head, past the events it skipped; so does a page with no match at all,
/// and a read that starts at the head.
pub(crate) async fn short_filtered_page_reads_through_the_head(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    for (i, id) in ["order-1", "stock-1", "stock-2", "order-2", "stock-3"]
        .iter()
        .enumerate()
    {
        store
            .append_to_stream(&stream(id), ExpectedVersion::Any, vec![event(i)])
            .await
            .step("seed")?;
    }
    let head = store.head().await.step("head")?;
    let orders = store
        .read_all(ReadAll::after(Position::START).category("order").limit(10))
        .await
        .step("read orders")?;
    ensure!(
        streams_of(&orders.events) == ["order-1", "order-2"],
        "read {:?}",
        streams_of(&orders.events)
    );
    ensure!(
        orders.read_through >= head,
        "a short page read through {}, not the head {head}",
        orders.read_through
    );
    let none = store
        .read_all(ReadAll::after(Position::START).category("parcel"))
        .await
        .step("read a category with no events")?;
    ensure!(
        none.is_empty() && none.read_through >= head,
        "a page with no match read through {}, not the head {head}",
        none.read_through
    );
    let after_order = store
        .read_all(ReadAll::after(Position(4)).category("order"))
        .await
        .step("read after the last order")?;
    ensure!(
        after_order.is_empty() && after_order.read_through >= head,
        "reading past the last match read through {}",
        after_order.read_through
    );
    let at_head = store
        .read_all(ReadAll::after(head).category("order"))
        .await
        .step("read at the head")?;
    ensure!(
        at_head.is_empty() && at_head.read_through == head,
        "a read at the head read through {}",
        at_head.read_through
    );
    Ok(())
}

/// Guarantee 11: a full page reads through its last event, not beyond: the
/// matches after it are in the next page.
pub(crate) async fn full_page_reads_through_its_last_event(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    for i in 0..6 {
        let id = if i % 2 == 0 { "order-1" } else { "stock-1" };
        store
            .append_to_stream(&stream(id), ExpectedVersion::Any, vec![event(i)])
            .await
            .step("seed")?;
    }
    // Orders are at positions 1, 3 and 5.
    let first = store
        .read_all(ReadAll::after(Position::START).category("order").limit(2))
        .await
        .step("first page")?;
    let positions: Vec<Position> = first.events.iter().map(|e| e.position).collect();
    ensure!(
        positions == [Position(1), Position(3)],
        "first page {positions:?}"
    );
    ensure!(
        first.read_through == Position(3),
        "a full page read through {}, not its last event",
        first.read_through
    );
    let second = store
        .read_all(
            ReadAll::after(first.read_through)
                .category("order")
                .limit(2),
        )
        .await
        .step("second page")?;
    let positions: Vec<Position> = second.events.iter().map(|e| e.position).collect();
    ensure!(positions == [Position(5)], "second page {positions:?}");
    ensure!(
        second.read_through >= Position(6),
        "the last page read through {}",
        second.read_through
    );
    Ok(())
}

/// Guarantee 11 under concurrency: a follower of a filtered read that keeps
/// `read_through` as its checkpoint sees every matching event exactly once,
/// in order, while writers append matching and other events.
pub(crate) async fn filtered_follower_sees_every_match_once_under_writers(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    const WRITERS: usize = 3;
    const PER_WRITER: usize = 60;
    let filter = || {
        ReadAll::after(Position::START)
            .category("order")
            .category("stock")
            .event_type(name("Placed"))
            .limit(4)
    };
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..PER_WRITER {
                let id = ["order", "stock", "parcel"][(w + i) % 3];
                let kind = if i % 2 == 0 { "Placed" } else { "Other" };
                store
                    .append_to_stream(
                        &stream(&format!("{id}-{w}")),
                        ExpectedVersion::Any,
                        vec![typed(kind, i)],
                    )
                    .await
                    .step("writer append")?;
            }
            Ok::<(), String>(())
        }));
    }
    let follower = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut head = store.watch_head();
            let mut checkpoint = Position::START;
            let mut seen: Vec<RecordedEvent> = Vec::new();
            loop {
                let page = store
                    .read_all(filter().after_position(checkpoint))
                    .await
                    .step("follower read")?;
                for e in &page.events {
                    ensure!(
                        e.position > checkpoint && e.position <= page.read_through,
                        "event at {} outside the page ({checkpoint}, {}]",
                        e.position,
                        page.read_through
                    );
                }
                ensure!(
                    page.read_through >= checkpoint,
                    "read_through {} went back from {checkpoint}",
                    page.read_through
                );
                checkpoint = page.read_through;
                let empty = page.is_empty();
                seen.extend(page);
                if empty {
                    let total = store.head().await.step("head")?;
                    if checkpoint >= total && total.0 == (WRITERS * PER_WRITER) as u64 {
                        return Ok(seen);
                    }
                    match tokio::time::timeout(Duration::from_secs(20), head.wait_past(checkpoint))
                        .await
                    {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Err(format!("head watch: {e}")),
                        Err(_) => return Err(format!("follower stuck at {checkpoint}")),
                    }
                }
            }
        })
    };
    for w in writers {
        w.await.step("writer task")??;
    }
    let seen = follower.await.step("follower task")??;
    let expected: Vec<Position> = read_log(&*store)
        .await
        .step("read log")?
        .into_iter()
        .filter(|e| filter().matches(e))
        .map(|e| e.position)
        .collect();
    let got: Vec<Position> = seen.iter().map(|e| e.position).collect();
    ensure!(
        got == expected,
        "the follower saw {} matches, the log holds {}",
        got.len(),
        expected.len()
    );
    Ok(())
}

/// Guarantee 12: category, prefix and type filters match byte for byte, and
/// wildcard characters in a prefix are plain characters.
pub(crate) async fn read_all_filters_by_category_prefix_and_type(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    let ids = [
        "account-1",
        "accounts-1",
        "Account-2",
        "acc_x-1",
        "accXx-1",
        "acc%-1",
        "accZZ-1",
        "account-2",
    ];
    for id in ids {
        let e = NewEvent::new(
            if id.ends_with('2') {
                "Closed"
            } else {
                "Opened"
            },
            1,
            Payload::from_json("{}").step("payload")?,
        )
        .step("event")?;
        store
            .append_to_stream(&stream(id), ExpectedVersion::NoStream, vec![e])
            .await
            .step("seed")?;
    }
    let cases: Vec<(ReadAll, Vec<&str>)> = vec![
        (
            ReadAll::after(Position::START).category("account"),
            vec!["account-1", "account-2"],
        ),
        (
            ReadAll::after(Position::START).category("Account"),
            vec!["Account-2"],
        ),
        (
            ReadAll::after(Position::START).category("acc_x"),
            vec!["acc_x-1"],
        ),
        (ReadAll::after(Position::START).category("acc"), vec![]),
        (
            ReadAll::after(Position::START).stream_prefix("acc_"),
            vec!["acc_x-1"],
        ),
        (
            ReadAll::after(Position::START).stream_prefix("acc%"),
            vec!["acc%-1"],
        ),
        (
            ReadAll::after(Position::START).stream_prefix("account"),
            vec!["account-1", "accounts-1", "account-2"],
        ),
        (ReadAll::after(Position::START).stream_prefix("ACC"), vec![]),
        (
            ReadAll::after(Position::START)
                .stream_prefix("acc")
                .event_types([EventType::new("Closed").step("type")?]),
            vec!["account-2"],
        ),
        (
            ReadAll::after(Position::START).event_types([EventType::new("Closed").step("type")?]),
            vec!["Account-2", "account-2"],
        ),
        (
            ReadAll::after(Position::START).event_types([EventType::new("closed").step("type")?]),
            vec![],
        ),
        (ReadAll::after(Position::START).event_types([]), vec![]),
        (
            ReadAll::after(Position(2)).category("account").limit(1),
            vec!["account-2"],
        ),
    ];
    for (read, expected) in cases {
        let got = store.read_all(read.clone()).await.step("read all")?.events;
        ensure!(
            streams_of(&got) == expected,
            "{read:?} gave {:?}, expected {expected:?}",
            streams_of(&got)
        );
    }
    Ok(())
}

/// Guarantee 12: several categories and prefixes widen the streams read,
/// and event types narrow them, in one query.
pub(crate) async fn categories_and_prefixes_widen_and_types_narrow(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    let seed = [
        ("order-1", "Placed"),
        ("stock-1", "Reserved"),
        ("parcel-1", "Placed"),
        ("order-2", "Paid"),
        ("acc_x-1", "Placed"),
        ("stock-2", "Placed"),
        ("invoice-1", "Paid"),
    ];
    for (n, (id, kind)) in seed.iter().enumerate() {
        store
            .append_to_stream(&stream(id), ExpectedVersion::Any, vec![typed(kind, n)])
            .await
            .step("seed")?;
    }
    let start = || ReadAll::after(Position::START);
    let cases: Vec<(ReadAll, Vec<&str>)> = vec![
        (
            start().category("order").category("stock"),
            vec!["order-1", "stock-1", "order-2", "stock-2"],
        ),
        (
            start().categories(["stock", "order"]),
            vec!["order-1", "stock-1", "order-2", "stock-2"],
        ),
        (
            start().category("order").stream_prefix("acc_"),
            vec!["order-1", "order-2", "acc_x-1"],
        ),
        (
            start()
                .category("order")
                .category("stock")
                .event_type(name("Placed")),
            vec!["order-1", "stock-2"],
        ),
        (
            start()
                .category("order")
                .event_type(name("Placed"))
                .event_type(name("Paid")),
            vec!["order-1", "order-2"],
        ),
        (
            start().event_types([name("Paid"), name("Reserved")]),
            vec!["stock-1", "order-2", "invoice-1"],
        ),
        (
            start()
                .stream_prefix("order-")
                .stream_prefix("parcel")
                .event_type(name("Placed")),
            vec!["order-1", "parcel-1"],
        ),
        (
            start().category("order").category("order"),
            vec!["order-1", "order-2"],
        ),
        (start().category("missing").category("none"), vec![]),
        (
            start().category("order").category("stock").limit(3),
            vec!["order-1", "stock-1", "order-2"],
        ),
    ];
    for (read, expected) in cases {
        let got = store.read_all(read.clone()).await.step("read all")?;
        ensure!(
            streams_of(&got.events) == expected,
            "{:?} gave {:?}, expected {expected:?}",
            read.filter(),
            streams_of(&got.events)
        );
        let all: BTreeSet<Position> = read_log(&*store)
            .await
            .step("read log")?
            .iter()
            .filter(|e| read.matches(e))
            .map(|e| e.position)
            .collect();
        let got: BTreeSet<Position> = got.events.iter().map(|e| e.position).collect();
        ensure!(
            got.is_subset(&all),
            "{:?} returned events its own filter does not match",
            read.filter()
        );
    }
    Ok(())
}

/// A small deterministic generator, so a failing round can be repeated.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % sides as u64).unwrap_or(0)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.roll(items.len())]
    }
}

/// Guarantees 11 and 12 together: for random combinations of categories,
/// prefixes and types, and small pages, a reader that follows
/// `read_through` gets exactly the events the filter's own definition
/// (`ReadAll::matches`) picks from the whole log, in order. Stream ids
/// include the awkward ones: `_`, `%`, letter case, combining marks, the
/// last code points before and after the surrogates.
pub(crate) async fn paged_filtered_reads_find_exactly_what_the_filter_matches(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    let streams = [
        "order-1",
        "order-2",
        "orders-1",
        "order-a-b",
        "stock-1",
        "acc_x-1",
        "accx-1",
        "acc%-1",
        "Acc_x-2",
        "\u{e9}-1",
        "e\u{301}-1",
        "\u{10FFFF}-1",
        "\u{D7FF}z-1",
        "a-1",
        "ab-1",
    ];
    let types = ["Placed", "Paid", "Shipped", "paid"];
    let mut dice = Dice(0x9E37_79B9_7F4A_7C15);
    for n in 0..300 {
        store
            .append_to_stream(
                &stream(dice.pick(&streams)),
                ExpectedVersion::Any,
                vec![typed(dice.pick(&types), n)],
            )
            .await
            .step("seed")?;
    }
    let all = read_log(&*store).await.step("read log")?;
    let categories = [
        "order",
        "stock",
        "acc_x",
        "Acc_x",
        "\u{e9}",
        "e\u{301}",
        "\u{10FFFF}",
        "a",
        "zzz",
        "order-a",
    ];
    let prefixes = [
        "order-",
        "acc_",
        "acc%",
        "Acc",
        "e",
        "\u{D7FF}",
        "\u{10FFFF}",
        "a",
        "",
        "or",
    ];
    for round in 0..120 {
        let mut read = ReadAll::after(Position::START);
        for _ in 0..dice.roll(3) {
            read = read.category(dice.pick(&categories));
        }
        for _ in 0..dice.roll(3) {
            read = read.stream_prefix(dice.pick(&prefixes));
        }
        if dice.roll(2) == 0 {
            let named: Vec<EventType> =
                (0..dice.roll(3)).map(|_| name(dice.pick(&types))).collect();
            read = read.event_types(named);
        }
        let limit = 1 + dice.roll(9);
        let expected: Vec<Position> = all
            .iter()
            .filter(|e| read.matches(e))
            .map(|e| e.position)
            .collect();
        let mut got = Vec::new();
        let mut checkpoint = Position::START;
        loop {
            let page = store
                .read_all(read.clone().after_position(checkpoint).limit(limit))
                .await
                .step("read a page")?;
            ensure!(
                page.read_through >= checkpoint,
                "round {round}: read_through went back"
            );
            let done = page.len() < limit;
            got.extend(page.events.iter().map(|e| e.position));
            checkpoint = page.read_through;
            if done {
                break;
            }
        }
        ensure!(
            got == expected,
            "round {round}: {:?} (limit {limit}) read {} events, the filter matches {}",
            read.filter(),
            got.len(),
            expected.len()
        );
    }
    Ok(())
}
