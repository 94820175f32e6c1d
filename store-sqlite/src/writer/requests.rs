//! Writes to durable handlers' requests, as the writer runs them: each in
//! a savepoint of its group's transaction.

use annals_core::{
    BackendError, Claim, Finish, HandlerRequest, NewRequest, RequestFilter, RequestId, Timestamp,
};
use rusqlite::Connection;

use crate::requests::{claim_requests, discard, enqueue, finish_request, renew, requeue};
use crate::writer::CheckpointSave;

/// A write to the requests, run by the writer.
pub(crate) enum RequestWork {
    Enqueue {
        checkpoints: Vec<CheckpointSave>,
        requests: Vec<NewRequest>,
        now: Timestamp,
    },
    Claim(Claim),
    Renew {
        owner: String,
        ids: Vec<RequestId>,
        until: Timestamp,
    },
    Finish {
        id: RequestId,
        owner: String,
        finish: Finish,
        now: Timestamp,
    },
    Requeue {
        filter: RequestFilter,
        now: Timestamp,
    },
    Discard {
        id: RequestId,
        reason: String,
        now: Timestamp,
    },
}

/// What a write to the requests answers.
pub(crate) enum RequestAnswer {
    Done,
    Claimed(Vec<HandlerRequest>),
    Changed(bool),
    Count(u64),
}

impl RequestWork {
    pub(crate) fn bytes(&self) -> usize {
        match self {
            RequestWork::Enqueue {
                checkpoints,
                requests,
                ..
            } => {
                checkpoints.iter().map(CheckpointSave::bytes).sum::<usize>() + requests.len() * 160
            }
            RequestWork::Finish {
                finish: Finish::Failed { error, .. },
                ..
            } => error.len(),
            RequestWork::Discard { reason, .. } => reason.len(),
            _ => 0,
        }
    }

    /// Runs the write on the writer's connection, inside a savepoint the
    /// caller holds.
    pub(crate) fn run(
        &self,
        conn: &Connection,
        save: impl Fn(&CheckpointSave) -> Result<(), BackendError>,
    ) -> Result<RequestAnswer, BackendError> {
        match self {
            RequestWork::Enqueue {
                checkpoints,
                requests,
                now,
            } => {
                for checkpoint in checkpoints {
                    save(checkpoint)?;
                }
                enqueue(conn, requests, *now).map(|()| RequestAnswer::Done)
            }
            RequestWork::Claim(claim) => claim_requests(conn, claim).map(RequestAnswer::Claimed),
            RequestWork::Renew { owner, ids, until } => {
                renew(conn, owner, ids, *until).map(|()| RequestAnswer::Done)
            }
            RequestWork::Finish {
                id,
                owner,
                finish,
                now,
            } => finish_request(conn, *id, owner, finish, *now).map(RequestAnswer::Changed),
            RequestWork::Requeue { filter, now } => {
                requeue(conn, filter, *now).map(RequestAnswer::Count)
            }
            RequestWork::Discard { id, reason, now } => {
                discard(conn, *id, reason, *now).map(RequestAnswer::Changed)
            }
        }
    }
}
