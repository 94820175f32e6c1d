//! [`History`]: a recording replayed into what the disk holds for sure and
//! what it may hold.
//!
//! The model, and why:
//!
//! - **A file is durable as of its last sync.** `fsync` and `fdatasync` of a
//!   file make everything written to that file before them durable, and
//!   nothing of any other file. After a power cut a file holds at least its
//!   content at its last sync.
//! - **Changes after a file's last sync may or may not have reached the
//!   disk**, in any order and in pieces; [`CrashKind`](crate::CrashKind)
//!   says which subsets an image keeps.
//! - **Names are durable at once.** A created file exists after the cut (as
//!   it was at its last sync, empty if never synced) and a removed file is
//!   gone, whether or not the folder was synced. SQLite syncs the folder
//!   when it creates a journal or a WAL, but not when it creates the
//!   database file itself, so holding names to folder syncs would lose every
//!   new database; journalling file systems (ext4's default) also commit
//!   names in order with the metadata of the files they name. Folder syncs
//!   are counted, not modelled.
//! - **Volatile files are left out.** Files whose name ends with one of
//!   [`VOLATILE_SUFFIXES`] are not in images: SQLite's `-shm` wal-index is
//!   written through a shared memory map, and SQLite rebuilds it from the
//!   WAL when it is missing, which is how a reboot leaves it.
//! - **What the replay cannot model it refuses.** A vectored write, a
//!   `fallocate`, a `rename` or a writable shared mapping of a kept file makes
//!   [`History::replay`] fail with [`ReplayError::Unmodelled`] rather than
//!   build images that are silently wrong.

use std::collections::BTreeMap;
use std::path::Path;

use crate::log::{Call, Log, LogError, Op};

/// Name endings of files left out of crash images: SQLite's wal-index,
/// which lives in a shared memory map and is rebuilt from the WAL.
pub const VOLATILE_SUFFIXES: &[&str] = &["-shm"];

/// The largest file the replay builds in memory.
const MAX_FILE: u64 = 1 << 30;

/// A recording replayed: per file, its content at its last sync, and every
/// change made after its file's last sync, in the order they were made.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub(crate) synced: BTreeMap<String, Vec<u8>>,
    pub(crate) unsynced: Vec<Change>,
    calls: BTreeMap<Call, u64>,
    syncs: u64,
    dir_syncs: u64,
    torn_tail: usize,
}

/// A change made after its file's last sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) name: String,
    pub(crate) kind: ChangeKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    Write { offset: usize, data: Vec<u8> },
    SetLen(usize),
}

/// Why a recording could not be replayed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The log could not be read.
    #[error(transparent)]
    Log(#[from] LogError),
    /// A call touched a file the recording never saw created: the folder
    /// held files before the recording started. Record into an empty folder.
    #[error("{call} on {name:?}, which the recording never saw created")]
    UnknownFile {
        /// The file.
        name: String,
        /// The call.
        call: Call,
    },
    /// A call changed a kept file in a way the replay does not model.
    #[error("{call} changed {name:?} in a way the replay does not model")]
    Unmodelled {
        /// The file.
        name: String,
        /// The call.
        call: Call,
    },
    /// A file grew past what the replay builds in memory (1 GiB).
    #[error("{name:?} grew to {len} bytes, more than the replay builds in memory")]
    TooLarge {
        /// The file.
        name: String,
        /// The length it reached.
        len: u64,
    },
}

/// A file during the replay.
#[derive(Default)]
struct FileState {
    synced: Vec<u8>,
    /// Changes since the last sync, each with its place in the whole log.
    pending: Vec<(usize, ChangeKind)>,
}

impl History {
    /// Reads the log at `path` and replays it.
    pub fn read(path: &Path) -> Result<History, ReplayError> {
        History::replay(&Log::read(path)?)
    }

    /// Replays a log recorded in a folder that started empty.
    pub fn replay(log: &Log) -> Result<History, ReplayError> {
        let mut files: BTreeMap<String, FileState> = BTreeMap::new();
        let mut history = History {
            torn_tail: log.torn_tail,
            ..History::default()
        };
        for (seq, record) in log.records.iter().enumerate() {
            *history.calls.entry(record.call).or_default() += 1;
            let name = &record.name;
            if is_volatile(name) {
                continue;
            }
            let unknown = || ReplayError::UnknownFile {
                name: name.clone(),
                call: record.call,
            };
            match &record.op {
                Op::Create => {
                    files.entry(name.clone()).or_default();
                }
                // The folder itself is opened to sync it.
                Op::Open { .. } | Op::Close if name.is_empty() => {}
                Op::Open { .. } | Op::Close => {
                    if !files.contains_key(name) {
                        return Err(unknown());
                    }
                }
                Op::Write { offset, data } => {
                    let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
                    let end = offset.saturating_add(len);
                    fits(name, end)?;
                    let offset = usize::try_from(*offset).map_err(|_| too_large(name, end))?;
                    let file = files.get_mut(name).ok_or_else(unknown)?;
                    file.pending.push((
                        seq,
                        ChangeKind::Write {
                            offset,
                            data: data.clone(),
                        },
                    ));
                }
                Op::Truncate { len } => {
                    let len = fits(name, *len)?;
                    let file = files.get_mut(name).ok_or_else(unknown)?;
                    file.pending.push((seq, ChangeKind::SetLen(len)));
                }
                Op::Sync => {
                    history.syncs += 1;
                    let file = files.get_mut(name).ok_or_else(unknown)?;
                    for (_, change) in file.pending.drain(..) {
                        apply(&mut file.synced, &change);
                    }
                }
                Op::DirSync => history.dir_syncs += 1,
                Op::Unlink => {
                    files.remove(name);
                }
                Op::Map { .. } | Op::Unmodelled => {
                    return Err(ReplayError::Unmodelled {
                        name: name.clone(),
                        call: record.call,
                    })
                }
            }
        }
        let mut unsynced: Vec<(usize, Change)> = Vec::new();
        for (name, file) in files {
            unsynced.extend(file.pending.into_iter().map(|(seq, kind)| {
                (
                    seq,
                    Change {
                        name: name.clone(),
                        kind,
                    },
                )
            }));
            history.synced.insert(name, file.synced);
        }
        unsynced.sort_by_key(|(seq, _)| *seq);
        history.unsynced = unsynced.into_iter().map(|(_, change)| change).collect();
        Ok(history)
    }

    /// How many times each libc function was recorded, volatile files
    /// included: which calls the process really makes.
    pub fn calls(&self) -> &BTreeMap<Call, u64> {
        &self.calls
    }

    /// The names of the files an image holds.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.synced.keys().map(String::as_str)
    }

    /// How many changes (writes and length changes) were made after their
    /// file's last sync.
    pub fn unsynced_changes(&self) -> usize {
        self.unsynced.len()
    }

    /// How many file syncs returned.
    pub fn syncs(&self) -> u64 {
        self.syncs
    }

    /// How many syncs of the folder itself returned.
    pub fn dir_syncs(&self) -> u64 {
        self.dir_syncs
    }

    /// Bytes of a last record the kill cut short (dropped).
    pub fn torn_tail(&self) -> usize {
        self.torn_tail
    }

    /// One line: files, syncs, unsynced changes, and the calls seen.
    pub fn summary(&self) -> String {
        let calls: Vec<String> = self
            .calls
            .iter()
            .map(|(call, n)| format!("{call} {n}"))
            .collect();
        format!(
            "{} files, {} syncs, {} folder syncs, {} unsynced changes; calls: {}",
            self.synced.len(),
            self.syncs,
            self.dir_syncs,
            self.unsynced.len(),
            calls.join(", ")
        )
    }
}

/// Whether a file is left out of images.
pub(crate) fn is_volatile(name: &str) -> bool {
    VOLATILE_SUFFIXES.iter().any(|s| name.ends_with(s))
}

fn too_large(name: &str, len: u64) -> ReplayError {
    ReplayError::TooLarge {
        name: name.to_owned(),
        len,
    }
}

/// `len` as a `usize`, if the replay can hold a file that long.
fn fits(name: &str, len: u64) -> Result<usize, ReplayError> {
    if len > MAX_FILE {
        return Err(too_large(name, len));
    }
    usize::try_from(len).map_err(|_| too_large(name, len))
}

/// Applies one change to a file's bytes; a write past the end fills the gap
/// with zeros, as a file system does.
pub(crate) fn apply(bytes: &mut Vec<u8>, change: &ChangeKind) {
    match change {
        ChangeKind::Write { offset, data } => {
            let end = offset + data.len();
            if bytes.len() < end {
                bytes.resize(end, 0);
            }
            bytes[*offset..end].copy_from_slice(data);
        }
        ChangeKind::SetLen(len) => bytes.resize(*len, 0),
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::{ChangeKind, History, ReplayError};
    use crate::log::tests::record;
    use crate::log::{Call, Log};

    const CREATE: u8 = 2;
    const WRITE: u8 = 3;
    const TRUNCATE: u8 = 4;
    const SYNC: u8 = 5;
    const UNLINK: u8 = 8;
    const MAP: u8 = 9;
    const OPEN: u8 = 1;
    const PWRITE64: u8 = 12;
    const FSYNC: u8 = 22;

    fn replay(records: &[Vec<u8>]) -> Result<History, ReplayError> {
        History::replay(&Log::parse(&records.concat())?)
    }

    #[test]
    fn a_file_is_durable_as_of_its_own_last_sync() -> Result<(), Box<dyn Error>> {
        let history = replay(&[
            record(CREATE, OPEN, "a", 0, b""),
            record(CREATE, OPEN, "b", 0, b""),
            record(WRITE, PWRITE64, "a", 0, b"aaaa"),
            record(WRITE, PWRITE64, "b", 0, b"bbbb"),
            record(SYNC, FSYNC, "a", 0, b""),
            record(WRITE, PWRITE64, "a", 2, b"AA"),
        ])?;
        assert_eq!(history.synced["a"], b"aaaa");
        assert_eq!(history.synced["b"], b"");
        let pending: Vec<(&str, &ChangeKind)> = history
            .unsynced
            .iter()
            .map(|c| (c.name.as_str(), &c.kind))
            .collect();
        assert_eq!(
            pending,
            [
                (
                    "b",
                    &ChangeKind::Write {
                        offset: 0,
                        data: b"bbbb".to_vec()
                    }
                ),
                (
                    "a",
                    &ChangeKind::Write {
                        offset: 2,
                        data: b"AA".to_vec()
                    }
                ),
            ],
            "unsynced changes keep the order they were made in"
        );
        assert_eq!(history.calls()[&Call::Pwrite64], 3);
        Ok(())
    }

    #[test]
    fn a_removed_file_is_gone_and_a_volatile_one_never_kept() -> Result<(), Box<dyn Error>> {
        let history = replay(&[
            record(CREATE, OPEN, "db-journal", 0, b""),
            record(WRITE, PWRITE64, "db-journal", 0, b"undo"),
            record(SYNC, FSYNC, "db-journal", 0, b""),
            record(UNLINK, 26, "db-journal", 0, b""),
            record(CREATE, OPEN, "db-shm", 0, b""),
            record(MAP, 32, "db-shm", 3 | (1 << 32), b""),
            record(WRITE, PWRITE64, "db-shm", 0, b"index"),
        ])?;
        assert_eq!(history.files().count(), 0);
        assert_eq!(history.unsynced_changes(), 0);
        Ok(())
    }

    #[test]
    fn a_write_to_a_file_never_created_fails_with_unknown_file() {
        let result = replay(&[record(WRITE, PWRITE64, "old.db", 0, b"x")]);
        assert!(matches!(
            result,
            Err(ReplayError::UnknownFile { ref name, call: Call::Pwrite64 }) if name == "old.db"
        ));
    }

    #[test]
    fn a_writable_mapping_of_a_kept_file_fails_with_unmodelled() {
        let result = replay(&[
            record(CREATE, OPEN, "a.db", 0, b""),
            record(MAP, 32, "a.db", 3 | (1 << 32), b""),
        ]);
        assert!(matches!(
            result,
            Err(ReplayError::Unmodelled { ref name, call: Call::Mmap64 }) if name == "a.db"
        ));
    }

    #[test]
    fn a_length_past_what_fits_in_memory_fails_with_too_large() {
        let result = replay(&[
            record(CREATE, OPEN, "a.db", 0, b""),
            record(TRUNCATE, 18, "a.db", 1 << 40, b""),
        ]);
        assert!(matches!(
            result,
            Err(ReplayError::TooLarge { len, .. }) if len == 1 << 40
        ));
    }
}
