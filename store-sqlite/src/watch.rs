//! The head of the log as watchers see it.
//!
//! This process's writer publishes the new head after each commit, so a
//! waiter here wakes at once. Commits made by other processes on the same
//! file are found by a poller: while anyone watches, a thread checks
//! `PRAGMA data_version` (which changes when another connection commits)
//! every `head_poll_interval` and publishes the head it finds. A watcher
//! therefore wakes within `head_poll_interval` (plus one short query) of
//! another process's commit; a store nobody watches polls nothing.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use annals_core::{HeadWatch, Position};
use rusqlite::Connection;
use tokio::sync::watch;

use crate::options::SqliteOptions;
use crate::schema;

/// The published head, and the poller that follows other processes.
pub(crate) struct Head {
    /// `None` once the store is closed: watchers then get `StoreClosed`.
    sender: Mutex<Option<watch::Sender<Position>>>,
    /// The head when the store closed, for watches made afterwards.
    closed_at: AtomicU64,
    poller: Mutex<Poller>,
    /// Wakes the poller early to stop.
    stop: Condvar,
    options: SqliteOptions,
    path: PathBuf,
}

#[derive(Default)]
struct Poller {
    thread: Option<JoinHandle<()>>,
    running: bool,
    stopping: bool,
}

impl Head {
    pub(crate) fn new(head: Position, options: SqliteOptions, path: PathBuf) -> Arc<Head> {
        let (sender, _) = watch::channel(head);
        Arc::new(Head {
            sender: Mutex::new(Some(sender)),
            closed_at: AtomicU64::new(head.0),
            poller: Mutex::new(Poller::default()),
            stop: Condvar::new(),
            options,
            path,
        })
    }

    /// Publishes `head` if it is past the one published: the head never
    /// moves back.
    pub(crate) fn publish(&self, head: Position) {
        let sender = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = sender.as_ref() {
            sender.send_if_modified(|current| {
                let moved = *current < head;
                if moved {
                    *current = head;
                }
                moved
            });
        }
    }

    /// A watch on the head; starts the poller if it is not running.
    pub(crate) fn watch(self: &Arc<Self>) -> HeadWatch {
        let receiver = {
            let sender = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
            match sender.as_ref() {
                Some(sender) => sender.subscribe(),
                // Closed: a watch of the last head, whose waits for a
                // later one fail at once.
                None => watch::channel(Position(self.closed_at.load(Ordering::Relaxed))).1,
            }
        };
        self.ensure_polling();
        HeadWatch::new(receiver)
    }

    fn watchers(&self) -> usize {
        let sender = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
        sender.as_ref().map_or(0, watch::Sender::receiver_count)
    }

    fn ensure_polling(self: &Arc<Self>) {
        let mut poller = self.poller.lock().unwrap_or_else(PoisonError::into_inner);
        if poller.running || poller.stopping {
            return;
        }
        if let Some(finished) = poller.thread.take() {
            // It stopped for want of watchers; it has returned or is about to.
            let _ = finished.join();
        }
        let head = self.clone();
        match std::thread::Builder::new()
            .name("annals-sqlite-head".into())
            .spawn(move || head.poll())
        {
            Ok(thread) => {
                poller.thread = Some(thread);
                poller.running = true;
            }
            Err(e) => tracing::warn!(
                error = %e,
                "cannot start the head poller; other processes' commits wake no one here"
            ),
        }
    }

    /// The poller: runs while anyone watches and the store is open. However
    /// it ends, a panic included, it says it no longer runs, so that the
    /// next watch starts another.
    fn poll(&self) {
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.poll_loop()));
        if polled.is_err() {
            tracing::error!("the head poller panicked");
            let mut poller = self.poller.lock().unwrap_or_else(PoisonError::into_inner);
            poller.running = false;
        }
    }

    fn poll_loop(&self) {
        let mut conn: Option<Connection> = None;
        let mut seen: Option<i64> = None;
        let mut poller = self.poller.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            // A stop asked for while this poller was checking is seen here
            // at once, not after another interval.
            poller = self
                .stop
                .wait_timeout_while(poller, self.options.head_poll_interval, |p| !p.stopping)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            // Checked under the lock that `watch` starts pollers under, so
            // that a new watcher either keeps this poller or starts one.
            if poller.stopping || self.watchers() == 0 {
                poller.running = false;
                return;
            }
            drop(poller);
            if let Err(e) = self.check(&mut conn, &mut seen) {
                tracing::debug!(error = %e, "polling the head failed; trying again");
                // `data_version` values of two connections say nothing of
                // each other: a new connection starts afresh.
                conn = None;
                seen = None;
            }
            poller = self.poller.lock().unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Publishes the head if another connection committed since last time.
    fn check(&self, conn: &mut Option<Connection>, seen: &mut Option<i64>) -> Result<(), String> {
        if conn.is_none() {
            let opened =
                schema::open_reader(&self.options, &self.path).map_err(|e| e.to_string())?;
            *conn = Some(opened);
        }
        let Some(conn) = conn.as_ref() else {
            return Ok(());
        };
        let version: i64 = conn
            .pragma_query_value(None, "data_version", |r| r.get(0))
            .map_err(|e| e.to_string())?;
        if *seen != Some(version) {
            let head = crate::read::head(conn).map_err(|e| e.to_string())?;
            self.publish(head);
            // Only once the head is out: a failed read is tried again.
            *seen = Some(version);
        }
        Ok(())
    }

    /// Stops the poller and closes the watch: waiters get `StoreClosed`.
    pub(crate) fn close(&self) {
        let thread = {
            let mut poller = self.poller.lock().unwrap_or_else(PoisonError::into_inner);
            poller.stopping = true;
            self.stop.notify_all();
            poller.thread.take()
        };
        if let Some(thread) = thread {
            let _ = thread.join();
        }
        let sender = self
            .sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(sender) = sender {
            self.closed_at.store(sender.borrow().0, Ordering::Relaxed);
        }
    }
}
