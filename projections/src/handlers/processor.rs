//! The processor: follows the log from the handlers' checkpoints and, for
//! every event and every handler it is for, stores one request, in the step
//! that moves the handlers' checkpoints past the event.

use std::sync::Arc;

use annals_core::{Checkpoint, EventId, EventStore, HandlerStore, NewRequest, Position, ReadAll};

use crate::handlers::error::HandlerRunError;
use crate::handlers::handler::StartAt;
use crate::handlers::registry::Registered;
use crate::runner::source::event_at;
use crate::saga::Clock;

/// The name under which handler `name` keeps its checkpoint in the store:
/// `handler.<name>`. Resetting it makes requests again for every event
/// (pairs that already have one are left as they are).
pub fn checkpoint_name(name: &str) -> String {
    format!("handler.{name}")
}

/// What one step of the processor did.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Processed {
    /// Stored events read.
    pub(crate) events: usize,
    /// Requests made.
    pub(crate) requests: usize,
    /// Whether more may follow at once.
    pub(crate) full: bool,
}

pub(crate) struct Processor<S> {
    store: S,
    handlers: Vec<Registered>,
    /// Each handler's checkpoint, in the order of `handlers`; `None` until
    /// opened.
    checkpoints: Option<Vec<Checkpoint>>,
    batch: usize,
    clock: Arc<dyn Clock>,
}

impl<S: EventStore + HandlerStore> Processor<S> {
    pub(crate) fn new(
        store: S,
        handlers: Vec<Registered>,
        batch: usize,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Processor {
            store,
            handlers,
            checkpoints: None,
            batch,
            clock,
        }
    }

    /// Every handler has read through here.
    pub(crate) fn position(&self) -> Position {
        self.checkpoints
            .as_ref()
            .and_then(|c| c.iter().map(|c| c.position).min())
            .unwrap_or(Position::START)
    }

    /// Loads the checkpoints (a new handler that starts at the head saves
    /// its own first) and checks that the log still holds them.
    async fn open(&mut self) -> Result<Vec<Checkpoint>, HandlerRunError> {
        let head = self.store.head().await.map_err(HandlerRunError::Read)?;
        let mut checkpoints = Vec::with_capacity(self.handlers.len());
        for handler in &self.handlers {
            let name = checkpoint_name(handler.name);
            let loaded = self
                .store
                .load_checkpoint(&name)
                .await
                .map_err(|e| HandlerRunError::backend("loading a handler's checkpoint", e))?;
            let checkpoint = match loaded {
                Some(checkpoint) => {
                    self.verify(handler.name, &checkpoint, head).await?;
                    checkpoint
                }
                None if handler.options.start == StartAt::Head => {
                    let at_head = Checkpoint {
                        position: head,
                        event_id: self.event_at(head).await?,
                        version: 0,
                    };
                    self.store
                        .enqueue_requests(&[(name, at_head)], &[], self.clock.now())
                        .await
                        .map_err(|e| {
                            HandlerRunError::backend("saving a handler's checkpoint", e)
                        })?;
                    at_head
                }
                None => Checkpoint::start(0),
            };
            checkpoints.push(checkpoint);
        }
        Ok(checkpoints)
    }

    async fn event_at(&self, position: Position) -> Result<Option<EventId>, HandlerRunError> {
        event_at(&self.store, position)
            .await
            .map_err(HandlerRunError::Read)
    }

    /// A checkpoint beyond the head, or at a position that now holds
    /// another event, means commits it read were lost: going on would skip
    /// the events now at those positions.
    async fn verify(
        &self,
        handler: &'static str,
        checkpoint: &Checkpoint,
        head: Position,
    ) -> Result<(), HandlerRunError> {
        if checkpoint.position == Position::START {
            return Ok(());
        }
        let there = if checkpoint.position > head {
            None
        } else {
            self.event_at(checkpoint.position).await?
        };
        if checkpoint.event_id.is_some() && there != checkpoint.event_id {
            return Err(HandlerRunError::LostCommits {
                handler,
                position: checkpoint.position,
                head,
            });
        }
        Ok(())
    }

    /// Reads one batch after the lowest checkpoint and stores its requests
    /// with the handlers' new checkpoints.
    pub(crate) async fn step(&mut self) -> Result<Processed, HandlerRunError> {
        let checkpoints = match self.checkpoints.take() {
            Some(checkpoints) => checkpoints,
            None => self.open().await?,
        };
        let from = checkpoints
            .iter()
            .map(|c| c.position)
            .min()
            .unwrap_or(Position::START);
        let read = self
            .store
            .read_all(ReadAll::after(from).limit(self.batch))
            .await;
        let page = match read {
            Ok(page) => page,
            Err(e) => {
                self.checkpoints = Some(checkpoints);
                return Err(HandlerRunError::Read(e));
            }
        };
        let through = page.read_through;
        let mut requests: Vec<NewRequest> = Vec::new();
        for event in &page.events {
            for (handler, checkpoint) in self.handlers.iter().zip(&checkpoints) {
                if event.position > checkpoint.position {
                    handler.handler.plan(event, &mut requests);
                }
            }
        }
        let through_id = page
            .events
            .last()
            .filter(|e| e.position == through)
            .map(|e| e.event_id);
        let moved: Vec<Checkpoint> = checkpoints
            .iter()
            .map(|c| {
                if c.position < through {
                    Checkpoint {
                        position: through,
                        event_id: through_id,
                        version: 0,
                    }
                } else {
                    *c
                }
            })
            .collect();
        let changed: Vec<(String, Checkpoint)> = self
            .handlers
            .iter()
            .zip(checkpoints.iter().zip(&moved))
            .filter(|(_, (old, new))| old != new)
            .map(|(h, (_, new))| (checkpoint_name(h.name), *new))
            .collect();
        if !changed.is_empty() {
            let saved = self
                .store
                .enqueue_requests(&changed, &requests, self.clock.now())
                .await;
            if let Err(e) = saved {
                self.checkpoints = Some(checkpoints);
                return Err(HandlerRunError::backend("storing handler requests", e));
            }
        }
        self.checkpoints = Some(moved);
        Ok(Processed {
            events: page.events.len(),
            requests: requests.len(),
            full: page.events.len() >= self.batch,
        })
    }
}
