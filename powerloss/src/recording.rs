//! [`Recording`]: a child process set up to log its writes to one folder.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::history::{History, ReplayError};

const SHIM: &str = env!("POWERLOSS_SHIM");

/// The shared object the build script compiled from `shim/recorder.c`.
pub fn shim_path() -> &'static Path {
    Path::new(SHIM)
}

/// Whether recording works here: on Linux (where `LD_PRELOAD` puts the
/// shim's functions in front of libc's) with the shim built.
pub fn supported() -> bool {
    cfg!(target_os = "linux") && shim_path().is_file()
}

/// A folder whose writes a child process logs, and the log they go to.
#[derive(Debug, Clone)]
pub struct Recording {
    folder: PathBuf,
    log: PathBuf,
}

impl Recording {
    /// Records writes to the files directly inside `folder` (created if
    /// missing, and best empty: a replay only knows files it saw created)
    /// into the file `log`, which must be outside the folder.
    ///
    /// The folder is named by its canonical path, since the shim compares
    /// the paths the process opens with it.
    pub fn new(folder: impl AsRef<Path>, log: impl AsRef<Path>) -> std::io::Result<Recording> {
        std::fs::create_dir_all(folder.as_ref())?;
        let folder = folder.as_ref().canonicalize()?;
        let log = log.as_ref().to_path_buf();
        if log.starts_with(&folder) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the log must be outside the recorded folder",
            ));
        }
        Ok(Recording { folder, log })
    }

    /// The recorded folder (canonical).
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// The log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Makes `command` load the shim and record into this recording. Any
    /// `LD_PRELOAD` the command already has is kept, after the shim.
    pub fn attach(&self, command: &mut Command) {
        let mut preload = OsString::from(shim_path());
        if let Some(existing) = std::env::var_os("LD_PRELOAD") {
            preload.push(" ");
            preload.push(existing);
        }
        command
            .env("LD_PRELOAD", preload)
            .env("POWERLOSS_DIR", &self.folder)
            .env("POWERLOSS_LOG", &self.log);
    }

    /// Reads the log and replays it.
    pub fn history(&self) -> Result<History, ReplayError> {
        History::read(&self.log)
    }
}
