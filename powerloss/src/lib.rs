//! Simulated power loss for the SQLite store.
//!
//! Killing a process with `SIGKILL` leaves the operating system's page cache
//! intact: every write the process made is still read back afterwards,
//! synced or not. So a kill test cannot tell a store that syncs from one that
//! does not. A power cut can: the disk keeps what was synced and, of the rest,
//! whatever the drive happened to write, in any order, maybe half a sector.
//!
//! This crate rebuilds files as a power cut would leave them:
//!
//! 1. **Record.** A small C shim (`shim/recorder.c`), loaded into a child
//!    process with `LD_PRELOAD`, logs every `open`, `write`/`pwrite`,
//!    `ftruncate`, `fsync`/`fdatasync`, `unlink` and directory sync that
//!    touches one folder, with the bytes written. [`Recording`] sets a
//!    child [`Command`](std::process::Command) up for it.
//! 2. **Replay.** [`History::replay`] reads the log and keeps, per file, what
//!    was synced and the changes made since, in the order they were made.
//! 3. **Crash.** [`History::image`] builds the folder as a power cut at the
//!    end of the log could have left it, for each [`CrashKind`]: only what
//!    was synced, synced plus an ordered prefix of the rest, synced plus torn
//!    sectors of the rest, grown files whose new tail reads as zeros. The
//!    choices come from a seeded [`Dice`], so a failure can be repeated.
//!
//! What the model assumes, and why, is in the docs of [`History`] and
//! [`CrashKind`].
//!
//! ```no_run
//! use annals_powerloss::{CrashKind, Dice, Recording};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let recording = Recording::new("/tmp/db-folder", "/tmp/ops.log")?;
//! let mut child = std::process::Command::new("my-writer");
//! recording.attach(&mut child);
//! let mut child = child.spawn()?;
//! // ... let it write, then cut the power:
//! child.kill()?;
//! child.wait()?;
//! let history = recording.history()?;
//! let image = history.image(CrashKind::Synced, &mut Dice::new(7));
//! image.write_to("/tmp/after-the-cut".as_ref())?;
//! # Ok(()) }
//! ```

mod dice;
mod history;
mod image;
mod log;
mod recording;

pub use dice::Dice;
pub use history::{History, ReplayError, VOLATILE_SUFFIXES};
pub use image::{CrashImage, CrashKind};
pub use log::{Call, Log, LogError, Op, Record};
pub use recording::{shim_path, supported, Recording};
