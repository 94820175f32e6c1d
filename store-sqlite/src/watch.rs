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
                // Closed: a watch whose waits fail at once.
                None => watch::channel(Position::START).1,
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

    /// The poller: runs while anyone watches and the store is open.
    fn poll(&self) {
        let mut conn: Option<Connection> = None;
        let mut seen: Option<i64> = None;
        let mut poller = self.poller.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            poller = self
                .stop
                .wait_timeout(poller, self.options.head_poll_interval)
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
                conn = None;
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
            *seen = Some(version);
            let head = crate::read::head(conn).map_err(|e| e.to_string())?;
            self.publish(head);
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
        self.sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}
