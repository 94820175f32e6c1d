//! The log the shim writes: one [`Record`] per call that changed, synced or
//! opened a file in the recorded folder, in the order the calls took effect.
//!
//! Layout (little-endian), mirrored from `shim/recorder.c`: a 24-byte header
//! `magic "PLRC" | op u8 | call u8 | name_len u16 | data_len u32 | pad u32 |
//! arg u64`, then the file's name relative to the folder, then the data.
//!
//! The shim records a change before making it, and follows it with a
//! "failed" record when the call did less (a short write) or nothing; the
//! parser applies those, so a parsed log holds only what took effect, except
//! perhaps its last change, which the kill may have cut off before it was
//! made (see [`Log::without_last_change`]).

use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"PLRC";
const HEADER: usize = 24;

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// What the call did to the file.
    pub op: Op,
    /// Which libc function was called.
    pub call: Call,
    /// The file's name inside the folder; empty for the folder itself.
    pub name: String,
}

/// What a recorded call did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// The file was opened with these flags.
    Open {
        /// The `open(2)` flags.
        flags: u32,
    },
    /// The open created the file.
    Create,
    /// These bytes were written at this offset (what the call wrote, which
    /// may be less than it was asked to).
    Write {
        /// Where in the file.
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// The file was cut or extended to this length (`ftruncate`, or
    /// `O_TRUNC` at open).
    Truncate {
        /// The new length in bytes.
        len: u64,
    },
    /// `fsync` or `fdatasync` of the file returned: it is durable as it is.
    Sync,
    /// `fsync` or `fdatasync` of the folder itself returned.
    DirSync,
    /// The file descriptor was closed.
    Close,
    /// The file was removed.
    Unlink,
    /// The file was mapped shared and writable: it may change without a
    /// write call.
    Map {
        /// The `mmap(2)` protection bits.
        prot: u32,
        /// The `mmap(2)` flags.
        flags: u32,
    },
    /// A call that changed the file in a way the replay does not model
    /// (vectored writes, `fallocate`, `rename`...).
    Unmodelled,
}

macro_rules! calls {
    ($($variant:ident = $code:literal, $name:literal;)*) => {
        /// The libc function behind a record: which calls the process really
        /// makes, e.g. `pwrite64` rather than `pwrite`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[non_exhaustive]
        pub enum Call {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )*
            /// A code this version does not know (a newer shim).
            Unknown(u8),
        }

        impl Call {
            fn from_code(code: u8) -> Call {
                match code {
                    $($code => Call::$variant,)*
                    other => Call::Unknown(other),
                }
            }

            /// The libc function's name.
            pub fn name(self) -> &'static str {
                match self {
                    $(Call::$variant => $name,)*
                    Call::Unknown(_) => "unknown",
                }
            }
        }
    };
}

// Codes: keep in step with the CALL_ enum in shim/recorder.c.
calls! {
    Open = 1, "open";
    Open64 = 2, "open64";
    Openat = 3, "openat";
    Openat64 = 4, "openat64";
    Open2 = 5, "__open_2";
    Open64_2 = 6, "__open64_2";
    Openat2 = 7, "__openat_2";
    Openat64_2 = 8, "__openat64_2";
    Creat = 9, "creat";
    Creat64 = 10, "creat64";
    Pwrite = 11, "pwrite";
    Pwrite64 = 12, "pwrite64";
    Write = 13, "write";
    Pwritev = 14, "pwritev";
    Pwritev64 = 15, "pwritev64";
    Pwritev2 = 16, "pwritev2";
    Writev = 17, "writev";
    Ftruncate = 18, "ftruncate";
    Ftruncate64 = 19, "ftruncate64";
    Truncate = 20, "truncate";
    Truncate64 = 21, "truncate64";
    Fsync = 22, "fsync";
    Fdatasync = 23, "fdatasync";
    SyncFileRange = 24, "sync_file_range";
    Close = 25, "close";
    Unlink = 26, "unlink";
    Unlinkat = 27, "unlinkat";
    Rename = 28, "rename";
    Renameat = 29, "renameat";
    Renameat2 = 30, "renameat2";
    Mmap = 31, "mmap";
    Mmap64 = 32, "mmap64";
    Fallocate = 33, "fallocate";
    Fallocate64 = 34, "fallocate64";
    PosixFallocate = 35, "posix_fallocate";
    PosixFallocate64 = 36, "posix_fallocate64";
    CopyFileRange = 37, "copy_file_range";
    Sendfile = 38, "sendfile";
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Call::Unknown(code) => write!(f, "unknown call {code}"),
            known => f.write_str(known.name()),
        }
    }
}

/// A parsed log.
#[derive(Debug, Clone, Default)]
pub struct Log {
    /// The complete records, in order.
    pub records: Vec<Record>,
    /// Bytes of a last record cut short because the process was killed
    /// while writing it; they are dropped.
    pub torn_tail: usize,
}

/// Why a log could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The file could not be read.
    #[error("reading the log {path}")]
    Io {
        /// The log file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A record does not start where one should: the file is not a log of
    /// this shim, or was damaged in the middle (a kill only shortens the
    /// end).
    #[error("no record at byte {offset} of the log")]
    NotARecord {
        /// Where the record should start.
        offset: usize,
    },
    /// A "failed" record follows no change of the same file: the shim
    /// writes one only right after the change it settles.
    #[error("a failed call at byte {offset} of the log follows no change")]
    StrayFailure {
        /// Where the record starts.
        offset: usize,
    },
    /// A record names an operation this version does not know.
    #[error("unknown operation {op} at byte {offset} of the log")]
    UnknownOp {
        /// Where the record starts.
        offset: usize,
        /// The operation code.
        op: u8,
    },
    /// A file name is not UTF-8; the store only makes UTF-8 names.
    #[error("a file name that is not UTF-8 at byte {offset} of the log")]
    NameNotUtf8 {
        /// Where the record starts.
        offset: usize,
    },
}

impl Log {
    /// Reads and parses the log file at `path`.
    pub fn read(path: &Path) -> Result<Log, LogError> {
        let bytes = std::fs::read(path).map_err(|source| LogError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Log::parse(&bytes)
    }

    /// Parses a log; a short last record is counted in
    /// [`torn_tail`](Log::torn_tail) and dropped.
    pub fn parse(bytes: &[u8]) -> Result<Log, LogError> {
        let mut records = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let rest = &bytes[at..];
            let Some(header) = rest.get(..HEADER) else {
                break;
            };
            if &header[..4] != MAGIC {
                return Err(LogError::NotARecord { offset: at });
            }
            let name_len = usize::from(u16::from_le_bytes([header[6], header[7]]));
            let data_len = usize::try_from(u32_at(header, 8)).unwrap_or(usize::MAX);
            let arg = u64_at(header, 16);
            let total = HEADER.saturating_add(name_len).saturating_add(data_len);
            let Some(body) = rest.get(HEADER..total) else {
                break;
            };
            let name = std::str::from_utf8(&body[..name_len])
                .map_err(|_| LogError::NameNotUtf8 { offset: at })?
                .to_owned();
            let data = &body[name_len..];
            // The arguments are stored as u64; the shim puts a 32-bit value
            // in each half where a record has two.
            let low = u32::try_from(arg & 0xffff_ffff).unwrap_or(u32::MAX);
            let high = u32::try_from(arg >> 32).unwrap_or(u32::MAX);
            let op = match header[4] {
                1 => Op::Open { flags: low },
                2 => Op::Create,
                3 => Op::Write {
                    offset: arg,
                    data: data.to_vec(),
                },
                4 => Op::Truncate { len: arg },
                5 => Op::Sync,
                6 => Op::DirSync,
                7 => Op::Close,
                8 => Op::Unlink,
                9 => Op::Map {
                    prot: low,
                    flags: high,
                },
                10 => Op::Unmodelled,
                11 => {
                    settle(&mut records, &name, arg)
                        .ok_or(LogError::StrayFailure { offset: at })?;
                    at += total;
                    continue;
                }
                op => return Err(LogError::UnknownOp { offset: at, op }),
            };
            records.push(Record {
                op,
                call: Call::from_code(header[5]),
                name,
            });
            at += total;
        }
        Ok(Log {
            records,
            torn_tail: bytes.len() - at,
        })
    }

    /// The log without its last change: the files as they are if the kill
    /// came after the shim recorded that change but before it was made.
    pub fn without_last_change(&self) -> Log {
        let mut log = self.clone();
        if let Some(last) = log.records.iter().rposition(|r| r.op.is_change()) {
            log.records.remove(last);
        }
        log
    }
}

impl Op {
    /// Whether the operation changes what a file holds or whether it exists.
    pub fn is_change(&self) -> bool {
        matches!(
            self,
            Op::Create | Op::Write { .. } | Op::Truncate { .. } | Op::Unlink
        )
    }
}

/// Applies a "failed" record to the change just before it, of the same
/// file: a write keeps the `done` bytes it wrote, anything else is undone.
/// `None` when there is no such change.
fn settle(records: &mut Vec<Record>, name: &str, done: u64) -> Option<()> {
    let last = records
        .last_mut()
        .filter(|r| r.name == name && r.op.is_change())?;
    match &mut last.op {
        Op::Write { data, .. } if done > 0 => {
            data.truncate(usize::try_from(done).unwrap_or(usize::MAX));
        }
        _ => {
            records.pop();
        }
    }
    Some(())
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::{Call, Log, LogError, Op};

    /// One record in the shim's layout, for tests.
    pub(crate) fn record(op: u8, call: u8, name: &str, arg: u64, data: &[u8]) -> Vec<u8> {
        let mut out = b"PLRC".to_vec();
        out.push(op);
        out.push(call);
        out.extend(u16::try_from(name.len()).expect("short name").to_le_bytes());
        out.extend(u32::try_from(data.len()).expect("short data").to_le_bytes());
        out.extend([0; 4]);
        out.extend(arg.to_le_bytes());
        out.extend(name.as_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn records_parse_in_order_with_their_data() -> Result<(), LogError> {
        let mut bytes = record(2, 1, "a.db", 0, b"");
        bytes.extend(record(3, 12, "a.db", 4096, b"page"));
        bytes.extend(record(5, 22, "a.db", 0, b""));
        let log = Log::parse(&bytes)?;
        assert_eq!(log.torn_tail, 0);
        let ops: Vec<(&Op, Call)> = log.records.iter().map(|r| (&r.op, r.call)).collect();
        assert_eq!(
            ops,
            [
                (&Op::Create, Call::Open),
                (
                    &Op::Write {
                        offset: 4096,
                        data: b"page".to_vec()
                    },
                    Call::Pwrite64
                ),
                (&Op::Sync, Call::Fsync),
            ]
        );
        Ok(())
    }

    #[test]
    fn a_record_cut_short_by_a_kill_is_dropped() -> Result<(), LogError> {
        let mut bytes = record(2, 1, "a.db", 0, b"");
        let whole = bytes.len();
        bytes.extend(record(3, 12, "a.db", 0, b"never finished"));
        for cut in whole..bytes.len() {
            let log = Log::parse(&bytes[..cut])?;
            assert_eq!(log.records.len(), 1, "cut at {cut}");
            assert_eq!(log.torn_tail, cut - whole);
        }
        Ok(())
    }

    #[test]
    fn garbage_in_the_middle_fails_with_not_a_record() {
        let mut bytes = record(2, 1, "a.db", 0, b"");
        let at = bytes.len();
        bytes.extend(b"XXXX and more than a header's worth of bytes");
        assert!(matches!(
            Log::parse(&bytes),
            Err(LogError::NotARecord { offset }) if offset == at
        ));
    }

    #[test]
    fn a_failed_call_undoes_its_change_and_a_short_write_keeps_what_it_wrote(
    ) -> Result<(), LogError> {
        let bytes = [
            record(2, 1, "a.db", 0, b""),
            record(3, 12, "a.db", 0, b"written in part"),
            record(11, 12, "a.db", 7, b""),
            record(4, 18, "a.db", 0, b""),
            record(11, 18, "a.db", 0, b""),
        ]
        .concat();
        let log = Log::parse(&bytes)?;
        let ops: Vec<&Op> = log.records.iter().map(|r| &r.op).collect();
        assert_eq!(
            ops,
            [
                &Op::Create,
                &Op::Write {
                    offset: 0,
                    data: b"written".to_vec()
                }
            ]
        );
        Ok(())
    }

    #[test]
    fn a_failed_call_after_no_change_fails_with_stray_failure() {
        let bytes = [
            record(5, 22, "a.db", 0, b""),
            record(11, 22, "a.db", 0, b""),
        ]
        .concat();
        let at = record(5, 22, "a.db", 0, b"").len();
        assert!(matches!(
            Log::parse(&bytes),
            Err(LogError::StrayFailure { offset }) if offset == at
        ));
    }

    #[test]
    fn without_last_change_drops_the_last_change_only() -> Result<(), LogError> {
        let bytes = [
            record(2, 1, "a.db", 0, b""),
            record(3, 12, "a.db", 0, b"kept"),
            record(3, 12, "a.db", 4, b"maybe never made"),
            record(7, 25, "a.db", 0, b""),
        ]
        .concat();
        let log = Log::parse(&bytes)?.without_last_change();
        let ops: Vec<&Op> = log.records.iter().map(|r| &r.op).collect();
        assert_eq!(
            ops,
            [
                &Op::Create,
                &Op::Write {
                    offset: 0,
                    data: b"kept".to_vec()
                },
                &Op::Close
            ]
        );
        Ok(())
    }

    #[test]
    fn an_unknown_operation_fails_with_unknown_op() {
        let bytes = record(99, 1, "a.db", 0, b"");
        assert!(matches!(
            Log::parse(&bytes),
            Err(LogError::UnknownOp { offset: 0, op: 99 })
        ));
    }
}
