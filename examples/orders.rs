//! Order fulfilment, event-sourced: orders and the stock they reserve.
//!
//! Two aggregates: an `Order` (placed with lines, then confirmed, rejected
//! or cancelled) and a `Stock` per SKU (received, reserved for an order,
//! released). Placing an order and reserving its stock is one unit of work:
//! every event goes into the store in one atomic append, or none does. A
//! projection of both aggregates' events keeps a read model (stock
//! available per SKU, orders per status) live beside the commands.
//!
//! Run it with `cargo run --example orders`. The events are kept in a SQLite
//! file (the path is printed; pass another path as the first argument), so
//! running it again continues where the last run stopped.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use annals::prelude::*;
use annals::projections::{async_trait, Envelope, HandlerError, Projection, Projections};
use annals::sqlite::SqliteStore;
use annals::{
    CommandContext, Done, Error, EventSet, Position, ReadAll, RecordedEvent, Repository,
    RetryPolicy, StreamId, Unit, UnitOfWork,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Barrier;

// ---------------------------------------------------------------------------
// The order
// ---------------------------------------------------------------------------

/// One line of an order: so many units of one SKU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Line {
    sku: String,
    quantity: u64,
}

fn line(sku: &str, quantity: u64) -> Line {
    Line {
        sku: sku.into(),
        quantity,
    }
}

/// What can happen to an order. The stored names carry the aggregate's
/// name because event types share one namespace in the global log: a bare
/// "Placed" or "Released" could one day mean two things to a reader that
/// filters by type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum OrderEvent {
    #[event(name = "OrderPlaced")]
    Placed { lines: Vec<Line> },
    #[event(name = "OrderConfirmed")]
    Confirmed,
    #[event(name = "OrderRejected")]
    Rejected { reason: String },
    #[event(name = "OrderCancelled")]
    Cancelled { reason: String },
}

#[derive(Debug, Clone)]
enum OrderCommand {
    Place { lines: Vec<Line> },
    Confirm,
    Reject { reason: String },
    Cancel { reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Status {
    Placed,
    Confirmed,
    Rejected,
    Cancelled,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, not `write_str`, so that `{:<10}` lines the statuses up.
        f.pad(match self {
            Status::Placed => "placed",
            Status::Confirmed => "confirmed",
            Status::Rejected => "rejected",
            Status::Cancelled => "cancelled",
        })
    }
}

#[derive(Debug, thiserror::Error)]
enum OrderError {
    #[error("the order already exists")]
    AlreadyPlaced,
    #[error("an order needs at least one line")]
    NoLines,
    #[error("line {sku}: the quantity must be at least 1")]
    ZeroQuantity { sku: String },
    #[error("SKU {sku} appears on two lines")]
    DuplicateSku { sku: String },
    #[error("there is no such order")]
    NotPlaced,
    #[error("the order is {status}: it cannot be {wanted}")]
    WrongStatus { status: Status, wanted: Status },
}

#[derive(Debug, Default, Clone)]
struct Order {
    status: Option<Status>,
    lines: Vec<Line>,
}

impl Order {
    /// Refuses a move to `wanted` unless the order is in one of `from`.
    fn require(&self, from: &[Status], wanted: Status) -> Result<(), OrderError> {
        match self.status {
            None => Err(OrderError::NotPlaced),
            Some(status) if from.contains(&status) => Ok(()),
            Some(status) => Err(OrderError::WrongStatus { status, wanted }),
        }
    }
}

impl Aggregate for Order {
    const CATEGORY: &'static str = "order";
    type Event = OrderEvent;
    type Command = OrderCommand;
    type Error = OrderError;

    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::Placed { lines } => {
                self.status = Some(Status::Placed);
                self.lines.clone_from(lines);
            }
            OrderEvent::Confirmed => self.status = Some(Status::Confirmed),
            OrderEvent::Rejected { .. } => self.status = Some(Status::Rejected),
            OrderEvent::Cancelled { .. } => self.status = Some(Status::Cancelled),
        }
    }

    fn handle(&self, command: OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        match command {
            OrderCommand::Place { lines } => {
                if self.status.is_some() {
                    return Err(OrderError::AlreadyPlaced);
                }
                if lines.is_empty() {
                    return Err(OrderError::NoLines);
                }
                for (i, l) in lines.iter().enumerate() {
                    if l.quantity == 0 {
                        return Err(OrderError::ZeroQuantity { sku: l.sku.clone() });
                    }
                    // One reservation per order and SKU keeps release simple.
                    if lines[..i].iter().any(|earlier| earlier.sku == l.sku) {
                        return Err(OrderError::DuplicateSku { sku: l.sku.clone() });
                    }
                }
                Ok(vec![OrderEvent::Placed { lines }])
            }
            OrderCommand::Confirm => {
                self.require(&[Status::Placed], Status::Confirmed)?;
                Ok(vec![OrderEvent::Confirmed])
            }
            OrderCommand::Reject { reason } => {
                self.require(&[Status::Placed], Status::Rejected)?;
                Ok(vec![OrderEvent::Rejected { reason }])
            }
            OrderCommand::Cancel { reason } => {
                self.require(&[Status::Placed, Status::Confirmed], Status::Cancelled)?;
                Ok(vec![OrderEvent::Cancelled { reason }])
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The stock of one SKU (the SKU is the aggregate id: stream "stock-{sku}")
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum StockEvent {
    #[event(name = "StockReceived")]
    Received { quantity: u64 },
    #[event(name = "StockReserved")]
    Reserved { order_id: String, quantity: u64 },
    #[event(name = "StockReleased")]
    Released { order_id: String, quantity: u64 },
}

#[derive(Debug, Clone)]
enum StockCommand {
    Receive { quantity: u64 },
    Reserve { order_id: String, quantity: u64 },
    Release { order_id: String },
}

#[derive(Debug, thiserror::Error)]
enum StockError {
    #[error("the quantity must be at least 1")]
    ZeroQuantity,
    #[error("not enough stock: {available} available, {wanted} wanted")]
    Insufficient { available: u64, wanted: u64 },
    #[error("order {order_id} already holds a reservation")]
    AlreadyReserved { order_id: String },
    #[error("order {order_id} holds no reservation")]
    NotReserved { order_id: String },
}

#[derive(Debug, Default, Clone)]
struct Stock {
    available: u64,
    /// What each order holds, so that a release gives back exactly that.
    reserved: BTreeMap<String, u64>,
}

impl Aggregate for Stock {
    const CATEGORY: &'static str = "stock";
    type Event = StockEvent;
    type Command = StockCommand;
    type Error = StockError;

    fn apply(&mut self, event: &StockEvent) {
        match event {
            StockEvent::Received { quantity } => self.available += quantity,
            StockEvent::Reserved { order_id, quantity } => {
                // `handle` reserves only what is available, so this never
                // saturates; saturating keeps a hand-edited log from panicking.
                self.available = self.available.saturating_sub(*quantity);
                self.reserved.insert(order_id.clone(), *quantity);
            }
            StockEvent::Released { order_id, quantity } => {
                self.available += quantity;
                self.reserved.remove(order_id);
            }
        }
    }

    fn handle(&self, command: StockCommand) -> Result<Vec<StockEvent>, StockError> {
        match command {
            StockCommand::Receive { quantity: 0 } | StockCommand::Reserve { quantity: 0, .. } => {
                Err(StockError::ZeroQuantity)
            }
            StockCommand::Receive { quantity } => Ok(vec![StockEvent::Received { quantity }]),
            StockCommand::Reserve { order_id, .. } if self.reserved.contains_key(&order_id) => {
                Err(StockError::AlreadyReserved { order_id })
            }
            StockCommand::Reserve { quantity, .. } if quantity > self.available => {
                Err(StockError::Insufficient {
                    available: self.available,
                    wanted: quantity,
                })
            }
            StockCommand::Reserve { order_id, quantity } => {
                Ok(vec![StockEvent::Reserved { order_id, quantity }])
            }
            StockCommand::Release { order_id } => match self.reserved.get(&order_id) {
                Some(&quantity) => Ok(vec![StockEvent::Released { order_id, quantity }]),
                None => Err(StockError::NotReserved { order_id }),
            },
        }
    }
}

// ---------------------------------------------------------------------------
// Units of work: what spans both aggregates
// ---------------------------------------------------------------------------

/// Places an order, reserves every line and confirms the order, all in the
/// unit: nothing is stored until the unit commits, and then all of it is.
/// The first refusal ends the unit, and since the unit is then dropped
/// without a commit, the reservations made for earlier lines go with it.
async fn place(unit: &Unit<SqliteStore>, order_id: &str, lines: &[Line]) -> Result<Order, Error> {
    unit.execute::<Order>(
        order_id,
        OrderCommand::Place {
            lines: lines.to_vec(),
        },
    )
    .await?;
    for l in lines {
        let reserve = StockCommand::Reserve {
            order_id: order_id.into(),
            quantity: l.quantity,
        };
        unit.execute::<Stock>(&l.sku, reserve).await?;
    }
    Ok(unit
        .execute::<Order>(order_id, OrderCommand::Confirm)
        .await?)
}

/// How a placement ended, for the caller to print.
enum Placed {
    Confirmed(Done<Order>),
    /// Stock was short: the order was recorded as rejected, nothing reserved.
    Rejected {
        reason: String,
    },
}

/// Places an order; when stock is short, records the order as placed and
/// rejected (in one append of its own) so that the refusal is in the log.
async fn place_or_reject(
    work: &UnitOfWork<SqliteStore>,
    ctx: &CommandContext,
    order_id: &str,
    lines: &[Line],
) -> Result<Placed, Error> {
    let placed = work
        .run(
            ctx,
            |unit| async move { place(&unit, order_id, lines).await },
        )
        .await;
    match placed {
        Ok(done) => Ok(Placed::Confirmed(done)),
        Err(error) => match stock_refusal(&error) {
            Some(reason) => {
                reject(work, ctx, order_id, lines, &reason).await?;
                Ok(Placed::Rejected { reason })
            }
            None => Err(error),
        },
    }
}

/// The reason to give the customer when a unit failed because a stock
/// aggregate refused (short stock), as "{sku}: {why}"; `None` for any other
/// failure, which the caller passes on.
fn stock_refusal(error: &Error) -> Option<String> {
    match error {
        Error::Refused { stream, .. } => error
            .refusal::<StockError>()
            .map(|why| format!("{}: {why}", stream.id())),
        _ => None,
    }
}

async fn reject(
    work: &UnitOfWork<SqliteStore>,
    ctx: &CommandContext,
    order_id: &str,
    lines: &[Line],
    reason: &str,
) -> Result<(), Error> {
    work.run(ctx, |unit| async move {
        let place = OrderCommand::Place {
            lines: lines.to_vec(),
        };
        unit.execute::<Order>(order_id, place).await?;
        let reject = OrderCommand::Reject {
            reason: reason.into(),
        };
        unit.execute::<Order>(order_id, reject).await?;
        Ok::<_, Error>(())
    })
    .await?;
    Ok(())
}

/// Cancels an order and gives its stock back, in one append.
async fn cancel(
    work: &UnitOfWork<SqliteStore>,
    ctx: &CommandContext,
    order_id: &str,
    reason: &str,
) -> Result<Done<()>, Error> {
    work.run(ctx, |unit| async move {
        let order = unit.load::<Order>(order_id).await?;
        let cancel = OrderCommand::Cancel {
            reason: reason.into(),
        };
        unit.execute::<Order>(order_id, cancel).await?;
        for l in &order.lines {
            let release = StockCommand::Release {
                order_id: order_id.into(),
            };
            unit.execute::<Stock>(&l.sku, release).await?;
        }
        Ok::<_, Error>(())
    })
    .await
}

// ---------------------------------------------------------------------------
// The read model: a projection of orders and stock
// ---------------------------------------------------------------------------

/// The events the shop floor's view reads: two aggregates' events, as one
/// type. The runner reads only these two categories from the store.
#[derive(Debug, EventSet)]
enum ShopEvent {
    #[events(aggregate = Order)]
    Order(OrderEvent),
    #[events(aggregate = Stock)]
    Stock(StockEvent),
}

/// What the shop floor wants to see, built from the log alone.
#[derive(Debug, Default)]
struct Floor {
    available: BTreeMap<String, u64>,
    orders: BTreeMap<String, Status>,
    events_seen: u64,
}

impl Floor {
    fn orders_per_status(&self) -> BTreeMap<Status, usize> {
        let mut counts = BTreeMap::new();
        for status in self.orders.values() {
            *counts.entry(*status).or_default() += 1;
        }
        counts
    }
}

/// Keeps a [`Floor`] in memory, shared with whoever reads it.
#[derive(Clone, Default)]
struct ShopFloor(Arc<Mutex<Floor>>);

impl ShopFloor {
    fn read(&self) -> std::sync::MutexGuard<'_, Floor> {
        // Handlers never panic while holding the lock.
        self.0.lock().expect("the floor's lock is never poisoned")
    }
}

#[async_trait]
impl Projection for ShopFloor {
    type Events = ShopEvent;
    const NAME: &'static str = "shop-floor";
    // The view lives in memory: each run rebuilds it from the whole log.
    const IN_MEMORY: bool = true;

    async fn handle(&mut self, event: &Envelope<ShopEvent>) -> Result<(), HandlerError> {
        let mut floor = self.read();
        let id = event.stream_id.id().to_string();
        match &event.event {
            ShopEvent::Order(order) => {
                let status = match order {
                    OrderEvent::Placed { .. } => Status::Placed,
                    OrderEvent::Confirmed => Status::Confirmed,
                    OrderEvent::Rejected { .. } => Status::Rejected,
                    OrderEvent::Cancelled { .. } => Status::Cancelled,
                };
                floor.orders.insert(id, status);
            }
            ShopEvent::Stock(stock) => {
                let available = floor.available.entry(id).or_default();
                match stock {
                    StockEvent::Received { quantity } | StockEvent::Released { quantity, .. } => {
                        *available += quantity
                    }
                    StockEvent::Reserved { quantity, .. } => {
                        *available = available.saturating_sub(*quantity)
                    }
                }
            }
        }
        floor.events_seen += 1;
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), HandlerError> {
        *self.read() = Floor::default();
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The program
// ---------------------------------------------------------------------------

fn print_events(events: &[RecordedEvent]) {
    for e in events {
        println!(
            "     position {:<4} {:<20} v{:<3} {:<15} {}",
            e.position,
            e.stream_id.as_str(),
            e.version,
            e.event_type.as_str(),
            e.payload.as_str()
        );
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("annals-orders-example.db"));
    let store = SqliteStore::open(&path).await?;
    println!("Event store: {}", path.display());
    let head = store.head().await?;
    if head == Position::START {
        println!("The store is empty: this is the first run.\n");
    } else {
        println!("The store already holds {head} events from earlier runs.\n");
    }
    // Order ids must be new on every run; the head only ever grows, so it
    // makes a run number that no earlier run used.
    let run = format!("r{}", head.0);
    let order_id = |name: &str| format!("{run}{name}");

    let floor = ShopFloor::default();
    let projections = Projections::new(store.clone())
        .projection(floor.clone())
        .start()?;
    println!("0. A projection of orders and stock follows the global log from position 0.\n");

    let ctx = CommandContext::new().field("channel", "example");
    let stock = Repository::<Stock, _>::new(store.clone())?.with_retry(RetryPolicy::on_conflict(3));
    let work = UnitOfWork::new(store.clone()).with_retry(RetryPolicy::on_conflict(3));

    println!("1. Receiving stock");
    for (sku, quantity) in [("widget", 10), ("gadget", 5)] {
        let done = stock
            .execute(sku, StockCommand::Receive { quantity }, &ctx)
            .await?;
        println!(
            "   stock-{sku}: received {quantity} -> {} available",
            done.state.available
        );
    }
    // The race of step 4 is for the last 3 gizmos: top the shelf up to 3.
    let gizmos = stock.load("gizmo").await?.state.available;
    if gizmos < 3 {
        let receive = StockCommand::Receive {
            quantity: 3 - gizmos,
        };
        stock.execute("gizmo", receive, &ctx).await?;
    }
    println!(
        "   stock-gizmo: topped up to {} available",
        stock.load("gizmo").await?.state.available
    );

    println!("\n2. Placing an order: the order and its reservations in one append");
    let first = order_id("a");
    let lines = [line("widget", 2), line("gadget", 1)];
    match place_or_reject(&work, &ctx, &first, &lines).await? {
        Placed::Confirmed(done) => {
            println!(
                "   order-{first} is {}; one append of {} events over 3 streams:",
                done.value.status.map_or("?".into(), |s| s.to_string()),
                done.events.len()
            );
            print_events(&done.events);
            // The projection runs on its own; wait until it has read this
            // order, as a page that shows the model after a write would.
            projections
                .wait_for(ShopFloor::NAME, done.position())
                .await?;
            let status = floor.read().orders.get(&first).copied();
            println!(
                "   the shop floor has read it: order-{first} is {}",
                status.map_or("?".into(), |s| s.to_string())
            );
        }
        Placed::Rejected { reason } => println!("   order-{first} rejected: {reason}"),
    }

    println!("\n3. Short stock: nothing is reserved, and the order is rejected");
    let short = order_id("b");
    let widgets_before = stock.load("widget").await?.state.available;
    let gadgets = stock.load("gadget").await?.state.available;
    let lines = [line("widget", 1), line("gadget", gadgets + 1)];
    println!(
        "   order-{short} wants 1 widget (of {widgets_before}) and {} gadgets (of {gadgets})",
        gadgets + 1
    );
    match place_or_reject(&work, &ctx, &short, &lines).await? {
        Placed::Confirmed(_) => println!("   unexpected: order-{short} was confirmed"),
        Placed::Rejected { reason } => println!("   refused: {reason}"),
    }
    let widgets_after = stock.load("widget").await?.state.available;
    println!(
        "   widgets available before {widgets_before}, after {widgets_after}: the widget \
         reservation decided in the unit was never stored"
    );
    let stream = StreamId::from_parts(Order::CATEGORY, &short)?;
    println!("   order-{short} as stored:");
    print_events(&store.read_stream_to_end(&stream).await?);

    println!("\n4. Two customers, the last 3 gizmos");
    // Both units load the gizmo stock and decide before either commits, so
    // they decide on the same version; the barrier makes that certain here.
    // Only a first attempt waits: a retry runs alone.
    let barrier = Arc::new(Barrier::new(2));
    let mut racers = Vec::new();
    for name in ["c", "d"] {
        let (work, ctx, barrier) = (work.clone(), ctx.clone(), barrier.clone());
        let id = order_id(name);
        racers.push(tokio::spawn(async move {
            let attempts = AtomicU32::new(0);
            let lines = [line("gizmo", 3)];
            let result = work
                .run(&ctx, |unit| {
                    let (id, lines, barrier, attempts) = (&id, &lines, &barrier, &attempts);
                    async move {
                        let attempt = attempts.fetch_add(1, Ordering::SeqCst) + 1;
                        let decided = place(&unit, id, lines).await;
                        if attempt == 1 {
                            barrier.wait().await;
                        }
                        decided
                    }
                })
                .await;
            let attempts = attempts.load(Ordering::SeqCst);
            let outcome = match result {
                Ok(_) => Ok("confirmed: it holds the 3 gizmos".to_string()),
                Err(error) => match stock_refusal(&error) {
                    Some(reason) => reject(&work, &ctx, &id, &lines, &reason)
                        .await
                        .map(|()| format!("rejected: {reason}")),
                    None => Err(error),
                },
            };
            (id, attempts, outcome)
        }));
    }
    for racer in racers {
        let (id, attempts, outcome) = racer.await?;
        let tries = if attempts == 1 {
            "1 attempt".to_string()
        } else {
            format!("{attempts} attempts (a conflict on stock-gizmo, then a fresh decision)")
        };
        println!("   order-{id}: {tries}: {}", outcome?);
    }
    let gizmo = stock.load("gizmo").await?.state;
    let holders: Vec<_> = gizmo
        .reserved
        .keys()
        .filter(|holder| holder.starts_with(&run))
        .collect();
    println!(
        "   stock-gizmo: {} available; reserved by this run's orders: {holders:?}",
        gizmo.available
    );

    println!("\n5. Cancelling order-{first}: its stock goes back, in the same append");
    let done = cancel(&work, &ctx, &first, "the customer changed their mind").await?;
    print_events(&done.events);

    println!("\n6. Why orders were rejected, over every run (a filter on one event type)");
    let mut read = ReadAll::after(Position::START)
        .category(Order::CATEGORY)
        .event_type(OrderEvent::REJECTED);
    loop {
        let page = store.read_all(read.clone()).await?;
        for recorded in &page.events {
            if let OrderEvent::Rejected { reason } = recorded.decode()? {
                println!("   {}: {reason}", recorded.stream_id.as_str());
            }
        }
        if page.is_empty() {
            break;
        }
        read = read.after_position(page.read_through);
    }

    println!("\n7. The shop floor, once it has read everything written so far");
    projections.wait_idle().await?;
    let status = projections
        .status_of(ShopFloor::NAME)
        .ok_or("no shop floor")?;
    // Copied out, so that the lock is not held while the aggregates load.
    let (seen, available, orders) = {
        let floor = floor.read();
        (
            floor.events_seen,
            floor.available.clone(),
            floor.orders_per_status(),
        )
    };
    println!(
        "   read through position {} ({}): {seen} events of orders and stock",
        status.checkpoint, status.state
    );
    println!("   stock available per SKU:");
    for (sku, available) in &available {
        let aggregate = stock.load(sku).await?.state.available;
        println!("     {sku:<8} {available:>4}   (the aggregate says {aggregate})");
    }
    println!("   orders per status:");
    for (status, count) in orders {
        println!("     {status:<10} {count:>3}");
    }

    println!(
        "\nThe log now holds {} events. Run the example again: everything above is still there.",
        store.head().await?
    );
    Ok(())
}
