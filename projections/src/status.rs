//! What each projection is doing, as one call reports it.

use std::fmt;
use std::time::Duration;

use annals_core::Position;

use crate::error::ProjectionFailure;

/// One projection's state and progress.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProjectionStatus {
    /// Its name.
    pub name: &'static str,
    /// The version of its code.
    pub version: u32,
    /// Every event up to here has been handled (or did not concern it).
    pub checkpoint: Position,
    /// The head of the log, as last seen.
    pub head: Position,
    /// How many positions of the log it is behind the head.
    pub lag: u64,
    /// What it is doing.
    pub state: ProjectionState,
    /// How fast the last batch went, in events per second.
    pub events_per_second: f64,
}

/// What a projection is doing.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ProjectionState {
    /// Opening its checkpoint.
    Starting,
    /// Reading the log in batches, behind the head.
    CatchingUp,
    /// At the head, woken by each commit.
    Live,
    /// Rebuilding from the start of the log, as this far.
    Rebuilding(RebuildProgress),
    /// Waiting before it tries a failed event again.
    Retrying {
        /// The failure it will try again.
        failure: ProjectionFailure,
        /// Attempts made so far.
        attempts: u32,
    },
    /// Stopped on request, its checkpoint kept.
    Stopped,
    /// Stopped by a failure; its checkpoint is just before the event.
    Failed(ProjectionFailure),
}

impl ProjectionState {
    /// Whether the projection has stopped, on request or by a failure.
    pub fn is_stopped(&self) -> bool {
        matches!(self, ProjectionState::Stopped | ProjectionState::Failed(_))
    }
}

impl fmt::Display for ProjectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProjectionState::Starting => f.write_str("starting"),
            ProjectionState::CatchingUp => f.write_str("catching up"),
            ProjectionState::Live => f.write_str("live"),
            ProjectionState::Rebuilding(progress) => write!(f, "rebuilding: {progress}"),
            ProjectionState::Retrying { failure, attempts } => {
                write!(f, "retrying after {attempts} attempts: {failure}")
            }
            ProjectionState::Stopped => f.write_str("stopped"),
            ProjectionState::Failed(failure) => write!(f, "failed: {failure}"),
        }
    }
}

/// How far a rebuild has got.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RebuildProgress {
    /// The projection.
    pub projection: &'static str,
    /// Positions of the log read so far.
    pub done: u64,
    /// Positions to read: the head when the rebuild started (it follows
    /// the head if the log grows meanwhile).
    pub total: u64,
    /// The rate so far, in positions per second.
    pub per_second: f64,
    /// The time left at that rate, when there is a rate.
    pub eta: Option<Duration>,
}

impl fmt::Display for RebuildProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let percent = if self.total == 0 {
            100.0
        } else {
            // Display only: the precision lost above 2^53 does not matter.
            #[allow(clippy::cast_precision_loss)]
            let ratio = self.done as f64 / self.total as f64;
            ratio * 100.0
        };
        write!(
            f,
            "{}/{} ({percent:.0}%), {:.0}/s",
            self.done, self.total, self.per_second
        )?;
        if let Some(eta) = self.eta {
            write!(f, ", {:.1}s left", eta.as_secs_f64())?;
        }
        Ok(())
    }
}
