//! [`CrashImage`]: the folder as a power cut could have left it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::history::{apply, ChangeKind, History};
use crate::Dice;

/// Which of the states a power cut can leave an image shows. Every kind
/// starts from what was synced (see [`History`] for the model); they differ
/// in what they keep of the changes made after each file's last sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CrashKind {
    /// Every change, synced or not: what a process crash leaves, since the
    /// page cache survives it. Not a power cut: the check that the recording
    /// rebuilds the real files byte for byte.
    ProcessCrash,
    /// Only what was synced: the drive wrote nothing more.
    Synced,
    /// Synced, plus the oldest unsynced changes up to a random cut, whole and
    /// in the order they were made: a drive that writes in order.
    Prefix,
    /// Synced, plus a random subset of the unsynced writes' sectors, in any
    /// order: a drive that reorders writes and tears them at sector
    /// boundaries. Each aligned `sector` of a write is either all new or all
    /// old (SQLite's "powersafe overwrite": a write never damages bytes it
    /// does not cover); unsynced length changes are each kept or not.
    Torn {
        /// The sector size in bytes, usually 512 or 4096.
        sector: usize,
    },
    /// Files that grew keep their new length, but everything past what was
    /// synced reads as zeros: the size reached the disk, the data did not
    /// (a file system that journals metadata but not data).
    ZeroTail,
}

impl CrashKind {
    /// The power cuts the tests build for each kill, one image each.
    pub const POWER_CUTS: [CrashKind; 5] = [
        CrashKind::Synced,
        CrashKind::Prefix,
        CrashKind::Torn { sector: 512 },
        CrashKind::Torn { sector: 4096 },
        CrashKind::ZeroTail,
    ];
}

impl fmt::Display for CrashKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CrashKind::ProcessCrash => f.write_str("process crash"),
            CrashKind::Synced => f.write_str("synced only"),
            CrashKind::Prefix => f.write_str("synced + ordered prefix"),
            CrashKind::Torn { sector } => write!(f, "synced + torn {sector} B sectors"),
            CrashKind::ZeroTail => f.write_str("grown files with zero tails"),
        }
    }
}

/// The files of the folder as a power cut left them.
#[derive(Debug, Clone)]
pub struct CrashImage {
    kind: CrashKind,
    files: BTreeMap<String, Vec<u8>>,
    note: String,
}

impl CrashImage {
    /// What kind of cut this is.
    pub fn kind(&self) -> CrashKind {
        self.kind
    }

    /// Each file's name and bytes.
    pub fn files(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.files
    }

    /// What the random choices kept, for failure messages.
    pub fn note(&self) -> &str {
        &self.note
    }

    /// Writes the files into `dir`, which is created if needed.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        for (name, bytes) in &self.files {
            std::fs::write(dir.join(name), bytes)?;
        }
        Ok(())
    }
}

impl fmt::Display for CrashImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.kind, self.note)
    }
}

impl History {
    /// Builds the folder as a power cut at the end of the recording could
    /// have left it; `dice` make the kind's random choices.
    pub fn image(&self, kind: CrashKind, dice: &mut Dice) -> CrashImage {
        let mut files = self.synced.clone();
        let total = self.unsynced.len();
        let note = match kind {
            CrashKind::ProcessCrash => {
                self.keep(&mut files, |_| true);
                format!("all {total} unsynced changes")
            }
            CrashKind::Synced => format!("none of {total} unsynced changes"),
            CrashKind::Prefix => {
                let cut = usize::try_from(dice.roll(u64::try_from(total).unwrap_or(0) + 1))
                    .unwrap_or(total);
                let mut index = 0;
                self.keep(&mut files, |_| {
                    index += 1;
                    index <= cut
                });
                format!("the first {cut} of {total} unsynced changes")
            }
            CrashKind::Torn { sector } => {
                // How likely each piece is to have reached the disk varies
                // from image to image: some keep most, some almost nothing.
                let eighths = 1 + dice.roll(7);
                let (mut kept, mut pieces) = (0, 0);
                for change in &self.unsynced {
                    let file = files
                        .get_mut(&change.name)
                        .expect("every unsynced change belongs to a file the replay kept");
                    for piece in sectors(&change.kind, sector.max(1)) {
                        pieces += 1;
                        if dice.chance(eighths, 8) {
                            kept += 1;
                            apply(file, &piece);
                        }
                    }
                }
                format!(
                    "{kept} of {pieces} sector pieces of {total} unsynced changes, each kept with p={eighths}/8"
                )
            }
            CrashKind::ZeroTail => {
                let mut lengths: BTreeMap<&str, usize> = self
                    .synced
                    .iter()
                    .map(|(name, bytes)| (name.as_str(), bytes.len()))
                    .collect();
                for change in &self.unsynced {
                    let len = lengths
                        .get_mut(change.name.as_str())
                        .expect("every unsynced change belongs to a file the replay kept");
                    *len = match &change.kind {
                        ChangeKind::Write { offset, data } => (*len).max(offset + data.len()),
                        ChangeKind::SetLen(new) => *new,
                    };
                }
                let mut grown = Vec::new();
                for (name, bytes) in &mut files {
                    let len = lengths[name.as_str()];
                    if len > bytes.len() {
                        grown.push(format!("{name} +{}", len - bytes.len()));
                    }
                    bytes.resize(len, 0);
                }
                if grown.is_empty() {
                    "no file grew after its last sync".to_owned()
                } else {
                    format!("zero tails: {}", grown.join(", "))
                }
            }
        };
        CrashImage { kind, files, note }
    }

    /// Applies, in order, the unsynced changes that `keep` chooses.
    fn keep(
        &self,
        files: &mut BTreeMap<String, Vec<u8>>,
        mut keep: impl FnMut(&ChangeKind) -> bool,
    ) {
        for change in &self.unsynced {
            if keep(&change.kind) {
                let file = files
                    .get_mut(&change.name)
                    .expect("every unsynced change belongs to a file the replay kept");
                apply(file, &change.kind);
            }
        }
    }
}

/// A change cut at the `sector` boundaries of the file: each piece reaches
/// the disk or not on its own. A length change is one piece.
fn sectors(change: &ChangeKind, sector: usize) -> Vec<ChangeKind> {
    match change {
        ChangeKind::SetLen(_) => vec![change.clone()],
        ChangeKind::Write { offset, data } => {
            let mut pieces = Vec::new();
            let mut at = *offset;
            let end = offset + data.len();
            while at < end {
                let next = ((at / sector) + 1) * sector;
                let stop = next.min(end);
                pieces.push(ChangeKind::Write {
                    offset: at,
                    data: data[at - offset..stop - offset].to_vec(),
                });
                at = stop;
            }
            pieces
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::{sectors, CrashKind};
    use crate::history::{ChangeKind, History};
    use crate::log::tests::record;
    use crate::log::Log;
    use crate::Dice;

    /// "f" synced as 4 bytes, then two unsynced writes growing it.
    fn grown() -> Result<History, Box<dyn Error>> {
        let log = [
            record(2, 1, "f", 0, b""),
            record(3, 12, "f", 0, b"sync"),
            record(5, 22, "f", 0, b""),
            record(3, 12, "f", 4, b"-one"),
            record(3, 12, "f", 8, b"-two"),
        ]
        .concat();
        Ok(History::replay(&Log::parse(&log)?)?)
    }

    #[test]
    fn synced_image_keeps_only_what_was_synced() -> Result<(), Box<dyn Error>> {
        let image = grown()?.image(CrashKind::Synced, &mut Dice::new(1));
        assert_eq!(image.files()["f"], b"sync");
        Ok(())
    }

    #[test]
    fn process_crash_image_keeps_every_write() -> Result<(), Box<dyn Error>> {
        let image = grown()?.image(CrashKind::ProcessCrash, &mut Dice::new(1));
        assert_eq!(image.files()["f"], b"sync-one-two");
        Ok(())
    }

    #[test]
    fn prefix_images_keep_changes_in_the_order_made() -> Result<(), Box<dyn Error>> {
        let history = grown()?;
        let mut dice = Dice::new(3);
        for _ in 0..50 {
            let image = history.image(CrashKind::Prefix, &mut dice);
            let f = image.files()["f"].as_slice();
            assert!(
                [&b"sync"[..], b"sync-one", b"sync-one-two"].contains(&f),
                "{f:?} is not a prefix"
            );
        }
        Ok(())
    }

    #[test]
    fn zero_tail_image_has_the_new_length_and_no_new_data() -> Result<(), Box<dyn Error>> {
        let image = grown()?.image(CrashKind::ZeroTail, &mut Dice::new(1));
        assert_eq!(image.files()["f"], b"sync\0\0\0\0\0\0\0\0");
        Ok(())
    }

    #[test]
    fn torn_images_keep_whole_sectors_and_never_change_synced_bytes() -> Result<(), Box<dyn Error>>
    {
        let history = grown()?;
        let mut dice = Dice::new(5);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let image = history.image(CrashKind::Torn { sector: 4 }, &mut dice);
            let f = image.files()["f"].clone();
            assert_eq!(&f[..4], b"sync");
            // Each 4-byte piece is old (absent or zeros) or new, never mixed.
            for (piece, new) in f[4..].chunks(4).zip([&b"-one"[..], b"-two"]) {
                assert!(piece == new || piece == [0; 4], "{f:?}");
            }
            seen.insert(f);
        }
        assert!(seen.len() >= 3, "the dice never varied the image: {seen:?}");
        Ok(())
    }

    #[test]
    fn writes_are_cut_at_absolute_sector_boundaries() {
        let write = ChangeKind::Write {
            offset: 510,
            data: vec![7; 600],
        };
        let pieces: Vec<(usize, usize)> = sectors(&write, 512)
            .iter()
            .map(|p| match p {
                ChangeKind::Write { offset, data } => (*offset, data.len()),
                ChangeKind::SetLen(_) => (0, 0),
            })
            .collect();
        assert_eq!(pieces, [(510, 2), (512, 512), (1024, 86)]);
    }
}
