//! The head watch across processes: LISTEN/NOTIFY, with a poll fallback.
//!
//! Every commit notifies the store's channel with the new head position
//! (a number, never an event). A store that is watched keeps one
//! connection listening on the channel and publishes each position it
//! hears; it also reads the head every `head_poll_interval`, and at once
//! after (re)connecting, so that commits made while the connection was
//! down, or a notification that went missing, still wake waiters. A lost
//! connection is opened again with a growing pause, until the store is
//! dropped or closed.

use std::sync::Arc;
use std::time::Duration;

use annals_core::Position;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_postgres::AsyncMessage;

/// The longest pause between two attempts to reconnect.
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// What the listener needs.
pub(crate) struct ListenerSetup {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) channel: String,
    pub(crate) head_sql: String,
    pub(crate) head: Arc<watch::Sender<Position>>,
    pub(crate) poll: Duration,
    /// Dropped or set when the store closes.
    pub(crate) stop: watch::Receiver<bool>,
    /// How many times the listener has connected: for tests and status.
    pub(crate) connects: Arc<std::sync::atomic::AtomicU64>,
}

/// Publishes `position` if it is past what is published.
pub(crate) fn publish(head: &watch::Sender<Position>, position: Position) {
    head.send_if_modified(|published| {
        let newer = position > *published;
        if newer {
            *published = position;
        }
        newer
    });
}

/// Listens until the store stops it.
pub(crate) async fn listen(mut setup: ListenerSetup) {
    let mut pause = Duration::from_millis(50);
    loop {
        if *setup.stop.borrow() {
            return;
        }
        match session(&mut setup).await {
            Session::Stopped => return,
            Session::Lost { was_up } => {
                if was_up {
                    pause = Duration::from_millis(50);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = setup.stop.changed() => return,
        }
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

enum Session {
    Stopped,
    Lost { was_up: bool },
}

/// One connection's life: connect, listen, poll, until it is lost or the
/// store stops.
async fn session(setup: &mut ListenerSetup) -> Session {
    let connected = tokio::select! {
        connected = setup.config.connect(tokio_postgres::NoTls) => connected,
        _ = setup.stop.changed() => return Session::Stopped,
    };
    let Ok((client, mut connection)) = connected else {
        return Session::Lost { was_up: false };
    };
    let head = Arc::clone(&setup.head);
    let mut driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(note) = message {
                if let Ok(position) = note.payload().parse::<u64>() {
                    publish(&head, Position(position));
                }
            }
        }
    });
    // The channel name is made from a validated schema name: nothing to
    // escape, and quoted so that it is taken as written.
    let listening = client
        .batch_execute(&format!("LISTEN \"{}\"", setup.channel))
        .await;
    if listening.is_err() {
        driver.abort();
        return Session::Lost { was_up: false };
    }
    setup
        .connects
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let read_head = setup.head_sql.clone();
    loop {
        // Read the head now (after LISTEN, so nothing falls between) and
        // every poll interval.
        match client.query_one(&read_head, &[]).await {
            Ok(row) => {
                if let Some(position) = crate::row::position_in(&row) {
                    publish(&setup.head, position);
                }
            }
            Err(_) => break,
        }
        tokio::select! {
            _ = tokio::time::sleep(setup.poll) => {}
            _ = &mut driver => break,
            _ = setup.stop.changed() => {
                driver.abort();
                return Session::Stopped;
            }
        }
    }
    driver.abort();
    Session::Lost { was_up: true }
}
