//! Simulated power loss. A child process appends while the recording shim
//! logs every write and sync it makes; the parent kills it at a random
//! moment, rebuilds the folder as a power cut could have left it (only what
//! was synced, an ordered prefix of the rest, torn sectors, zero tails) and
//! opens each image through annals:
//!
//! - with `Durability::Full`, every acknowledged append is there, whole, at
//!   its acknowledged positions;
//! - with `Durability::Relaxed`, the last appends may be lost, but what
//!   survives is a prefix of the commit order and nothing is torn or
//!   corrupt, and only appends acknowledged within [`RELAXED_BOUND`] of the
//!   cut may be lost: the store syncs its WAL every `sync_interval`;
//! - and first, the harness must catch SQLite with `synchronous = OFF`
//!   losing acknowledged commits, or a pass of the others proves nothing.
//!
//! The child is this test binary run again (`--exact <test> --nocapture`)
//! with `ANNALS_POWERLOSS_ROLE` set; it prints
//! `ACK batch first last micros-since-start` after each acknowledged append,
//! and the parent reads only those lines.
//!
//! Each test makes `ANNALS_POWERLOSS_CYCLES` kills (3 by default), with
//! five images each. `ANNALS_TEST_SEED` repeats a run's random choices (the
//! kill moment still depends on timing); a failing image is kept on disk
//! and its folder printed.

mod child;
mod store_api;

use std::collections::{BTreeMap, HashMap};
use std::error::Error;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use annals_core::testkit::crash::seed;
use annals_powerloss::{
    CrashImage, CrashKind, Dice, History, Log, Op, Recording, VOLATILE_SUFFIXES,
};
use annals_sqlite::Durability;
use child::{payload_of, run_as_child, Role, DB, FOLDER, RAW_DB, ROLE};
use store_api::Stored;

/// How long before the cut an acknowledged relaxed append may still be
/// lost: the store's `sync_interval`, plus a margin for one sync and for a
/// busy machine (the writer thread may wake late).
const RELAXED_BOUND: Option<Duration> =
    Some(store_api::SYNC_INTERVAL.saturating_add(Duration::from_millis(200)));

const SEED: &str = "ANNALS_TEST_SEED";
const CYCLES: &str = "ANNALS_POWERLOSS_CYCLES";
const DEFAULT_CYCLES: u64 = 3;

type TestResult = Result<(), Box<dyn Error>>;

#[test]
fn harness_catches_sqlite_without_syncs_losing_acknowledged_commits() -> TestResult {
    const NAME: &str = "harness_catches_sqlite_without_syncs_losing_acknowledged_commits";
    if run_as_child() {
        return Ok(());
    }
    let Some(mut run) = Run::start(NAME) else {
        return Ok(());
    };
    // Per image kind: (images that lost an acknowledged commit, images).
    let mut caught: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for cycle in 0..run.cycles {
        let killed = run.kill(Role::RawSyncOff, cycle)?;
        let everything = killed.history.image(CrashKind::ProcessCrash, &mut run.dice);
        let dir = killed.root.path().join("process-crash");
        everything.write_to(&dir)?;
        // The recording itself loses nothing: whatever the images lose, the
        // power cut lost.
        match raw_losses(&dir.join(RAW_DB), &killed.acks) {
            Ok(0) => {}
            Ok(lost) => killed.fail(format!(
                "the process-crash image lost {lost} acknowledged commits: the recording is incomplete"
            )),
            Err(e) => killed.fail(format!("the process-crash image is unreadable: {e}")),
        }
        let images = killed.images(&mut run.dice)?;
        for (image, dir) in &images {
            let verdict = raw_losses(&dir.join(RAW_DB), &killed.acks);
            let entry = caught.entry(image.kind().to_string()).or_default();
            entry.1 += 1;
            let what = match verdict {
                Ok(0) => "no loss".to_owned(),
                Ok(lost) => {
                    entry.0 += 1;
                    format!("{lost} of {} acknowledged commits lost", killed.acks.len())
                }
                Err(e) => {
                    entry.0 += 1;
                    format!("unreadable: {e}")
                }
            };
            println!("  {image}: {what}");
        }
    }
    let total: u32 = caught.values().map(|(c, _)| c).sum();
    for (kind, (c, n)) in &caught {
        println!("caught loss in {c} of {n} images of kind {kind}");
    }
    assert!(
        total > 0,
        "no image lost an acknowledged commit of SQLite with synchronous=OFF: \
         the simulator cannot see a missing sync (seed {})",
        run.seed
    );
    Ok(())
}

#[test]
fn full_durability_keeps_every_acknowledged_append_through_power_loss() -> TestResult {
    const NAME: &str = "full_durability_keeps_every_acknowledged_append_through_power_loss";
    if run_as_child() {
        return Ok(());
    }
    let Some(mut run) = Run::start(NAME) else {
        return Ok(());
    };
    for cycle in 0..run.cycles {
        let killed = run.kill(Role::Full, cycle)?;
        let images = killed.images(&mut run.dice)?;
        for (image, dir) in &images {
            let db = dir.join(DB);
            let checked = open_and_check(&db, Durability::Full).and_then(|events| {
                every_ack_present(&events, &killed.acks)?;
                Ok(unacknowledged(&events, &killed.acks))
            });
            match checked {
                Ok(unacked) => println!(
                    "  {image}: all {} acknowledged appends survive, {unacked} more committed without an ACK",
                    killed.acks.len()
                ),
                Err(e) => killed.fail(format!("image {image}: {e}")),
            }
        }
    }
    Ok(())
}

#[test]
fn relaxed_durability_loses_at_most_a_suffix_of_commits_in_power_loss() -> TestResult {
    const NAME: &str = "relaxed_durability_loses_at_most_a_suffix_of_commits_in_power_loss";
    if run_as_child() {
        return Ok(());
    }
    let Some(mut run) = Run::start(NAME) else {
        return Ok(());
    };
    let mut oldest_loss = Duration::ZERO;
    for cycle in 0..run.cycles {
        // Flat out, the WAL fills and checkpoints (the only syncs of a
        // relaxed store without a sync timer) come often: what survives is
        // a long prefix. Paused, checkpoints are rare and the time bound
        // has something to catch.
        let role = if cycle % 2 == 0 {
            Role::RelaxedPaused
        } else {
            Role::Relaxed
        };
        let killed = run.kill(role, cycle)?;
        let images = killed.images(&mut run.dice)?;
        for (image, dir) in &images {
            let db = dir.join(DB);
            let checked = open_and_check(&db, Durability::Relaxed).and_then(|events| {
                let head = acks_form_a_prefix(&events, &killed.acks)?;
                if let Some(bound) = RELAXED_BOUND {
                    loss_is_bounded(&killed.acks, head, killed.cut, bound)?;
                }
                Ok(head)
            });
            match checked {
                Ok(head) => {
                    let lost: Vec<&Ack> = killed.acks.iter().filter(|a| a.first > head).collect();
                    let oldest = lost
                        .iter()
                        .map(|a| killed.cut.saturating_duration_since(a.at))
                        .max();
                    oldest_loss = oldest_loss.max(oldest.unwrap_or_default());
                    println!(
                        "  {image}: {} of {} acknowledged appends survive{}",
                        killed.acks.len() - lost.len(),
                        killed.acks.len(),
                        oldest.map_or(String::new(), |age| format!(
                            "; the oldest lost was acknowledged {} ms before the cut",
                            age.as_millis()
                        ))
                    );
                }
                Err(e) => killed.fail(format!("image {image}: {e}")),
            }
        }
    }
    println!(
        "the oldest append lost in any image was acknowledged {} ms before the cut (bound: {})",
        oldest_loss.as_millis(),
        RELAXED_BOUND.map_or("not checked yet".to_owned(), |b| format!(
            "{} ms",
            b.as_millis()
        ))
    );
    Ok(())
}

/// One acknowledged append, as the child reported it.
#[derive(Debug, Clone)]
struct Ack {
    batch: String,
    first: u64,
    last: u64,
    /// When the child acknowledged it, in the parent's clock: at the latest
    /// this (see [`Run::kill`]).
    at: Instant,
}

/// An ACK line and when the parent read it.
struct AckLine {
    batch: String,
    first: u64,
    last: u64,
    micros: u64,
    read_at: Instant,
}

impl AckLine {
    fn parse(line: &str, read_at: Instant) -> Option<AckLine> {
        // The test harness may print on the same line before the first ACK.
        let at = line.find("ACK ")?;
        let mut parts = line[at + 4..].split(' ');
        Some(AckLine {
            batch: parts.next()?.to_owned(),
            first: parts.next()?.parse().ok()?,
            last: parts.next()?.parse().ok()?,
            micros: parts.next()?.parse().ok()?,
            read_at,
        })
    }
}

/// One test's kills, with its seed and dice.
struct Run {
    test: &'static str,
    seed: u64,
    dice: Dice,
    cycles: u64,
}

impl Run {
    /// The run of a test, or `None` (after saying why) where power loss
    /// cannot be simulated.
    fn start(test: &'static str) -> Option<Run> {
        if !annals_powerloss::supported() {
            println!(
                "{test}: skipped: simulated power loss needs Linux (LD_PRELOAD) and the recording shim"
            );
            return None;
        }
        let seed = seed();
        let cycles = std::env::var(CYCLES)
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(DEFAULT_CYCLES);
        println!(
            "{test}: seed {seed}, {cycles} kills (set {SEED} to repeat the choices, {CYCLES} for more kills)"
        );
        Some(Run {
            test,
            seed,
            dice: Dice::new(seed),
            cycles,
        })
    }

    /// Runs a child in a fresh recorded folder, kills it a few hundred
    /// milliseconds after its first acknowledgement, and replays its log.
    fn kill(&mut self, role: Role, cycle: u64) -> Result<Killed, Box<dyn Error>> {
        let root = tempfile::Builder::new()
            .prefix("annals-powerloss-")
            .tempdir()?;
        let recording = Recording::new(root.path().join("folder"), root.path().join("ops.log"))?;
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args(["--exact", self.test, "--nocapture"])
            .env(ROLE, role.name())
            .env(FOLDER, recording.folder())
            .env(SEED, (self.seed ^ (cycle + 1)).to_string())
            .stdout(Stdio::piped());
        recording.attach(&mut command);
        let spawned = Instant::now();
        let mut child = command.spawn()?;
        let stdout = child.stdout.take().ok_or("no child stdout")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(ack) = AckLine::parse(&line, Instant::now()) {
                        lines.lock().expect("ack list lock").push(ack);
                    }
                }
            })
        };
        while lines.lock().expect("ack list lock").is_empty() {
            if let Some(status) = child.try_wait()? {
                return Err(format!(
                    "the {} child exited ({status}) before its first ACK",
                    role.name()
                )
                .into());
            }
            if spawned.elapsed() > Duration::from_secs(30) {
                child.kill()?;
                return Err("the child acknowledged nothing in 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(100 + self.dice.roll(300)));
        // The power cut: nothing the child does after this reaches the log.
        let cut = Instant::now();
        child.kill()?;
        child.wait()?;
        reader.join().map_err(|_| "ack reader panicked")?;
        let lines = std::mem::take(&mut *lines.lock().expect("ack list lock"));
        // The child's clock started after `spawned`, by some delay d; each
        // ACK was printed at spawned + d + micros, and read after that, so d
        // is at most the least (read_at - spawned - micros). Placing each
        // ACK at spawned + that bound + micros can only make it look later
        // (younger at the cut) than it was: a time bound checked with it
        // never fails a store that keeps it.
        let micros = |l: &AckLine| Duration::from_micros(l.micros);
        let delay = lines
            .iter()
            .map(|l| (l.read_at - spawned).saturating_sub(micros(l)))
            .min()
            .unwrap_or_default();
        let acks: Vec<Ack> = lines
            .iter()
            .map(|l| Ack {
                batch: l.batch.clone(),
                first: l.first,
                last: l.last,
                at: spawned + delay + micros(l),
            })
            .collect();
        let history = recording.history()?;
        println!(
            "kill {cycle} ({}): {} acknowledged in {} ms; {}",
            role.name(),
            acks.len(),
            (cut - spawned).as_millis(),
            history.summary()
        );
        let killed = Killed {
            root,
            recording,
            history,
            acks,
            cut,
            seed: self.seed,
        };
        if let Err(e) = killed.recording_matches_disk() {
            killed.fail(e);
        }
        Ok(killed)
    }
}

/// A killed child's recorded folder, its replayed log and its ACKs.
struct Killed {
    root: tempfile::TempDir,
    recording: Recording,
    history: History,
    acks: Vec<Ack>,
    cut: Instant,
    seed: u64,
}

impl Killed {
    /// Builds one image of each power cut, each in a folder of its own.
    fn images(&self, dice: &mut Dice) -> Result<Vec<(CrashImage, PathBuf)>, Box<dyn Error>> {
        let mut images = Vec::new();
        for (i, kind) in CrashKind::POWER_CUTS.into_iter().enumerate() {
            let image = self.history.image(kind, dice);
            let dir = self.root.path().join(format!("image-{i}"));
            image.write_to(&dir)?;
            images.push((image, dir));
        }
        Ok(images)
    }

    /// The replay with every write kept must be the folder the kill left,
    /// byte for byte: otherwise the shim missed a write and no image can be
    /// trusted. The shim records a change before making it, so the kill may
    /// have come after the record and before the change, or in the middle
    /// of a write (the kernel stops a write to a file between pages when a
    /// fatal signal is pending): the folder may also be the replay without
    /// its last change, or with only the start of its last write.
    fn recording_matches_disk(&self) -> Result<(), String> {
        let mut on_disk = BTreeMap::new();
        let entries = std::fs::read_dir(self.recording.folder()).map_err(|e| e.to_string())?;
        for entry in entries {
            let entry = entry.map_err(|e| e.to_string())?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if VOLATILE_SUFFIXES.iter().any(|s| name.ends_with(s)) {
                continue;
            }
            let bytes = std::fs::read(entry.path()).map_err(|e| e.to_string())?;
            on_disk.insert(name, bytes);
        }
        let Err(whole) = same_files(&self.history, &on_disk) else {
            return Ok(());
        };
        let log = Log::read(self.recording.log()).map_err(|e| e.to_string())?;
        let mut candidates = vec![log.without_last_change()];
        if let Some(cut) = last_write_cut_to_disk(&log, &on_disk) {
            candidates.push(cut);
        }
        let mut tried = vec![whole];
        for (candidate, how) in candidates.iter().zip(["never made", "made in part"]) {
            let history = History::replay(candidate).map_err(|e| e.to_string())?;
            match same_files(&history, &on_disk) {
                Ok(()) => {
                    println!("  the kill came inside the last recorded change: {how}");
                    return Ok(());
                }
                Err(e) => tried.push(e),
            }
        }
        Err(format!(
            "the recording does not rebuild the files (whole; without its last change; with part of it): {}",
            tried.join("; ")
        ))
    }

    /// Keeps the recording and its images on disk and fails the test.
    fn fail(self, what: String) -> ! {
        let seed = self.seed;
        let kept = self.root.keep();
        panic!(
            "{what}\n(seed {seed}; the recording, its log and the images are kept in {})",
            kept.display()
        )
    }
}

/// The log with its last change, if a write, cut to the bytes of it that the
/// file on disk holds: a write the kill stopped part way.
fn last_write_cut_to_disk(log: &Log, on_disk: &BTreeMap<String, Vec<u8>>) -> Option<Log> {
    let mut log = log.clone();
    let last = log.records.iter().rposition(|r| r.op.is_change())?;
    let record = &mut log.records[last];
    let file = on_disk.get(&record.name)?;
    let Op::Write { offset, data } = &mut record.op else {
        return None;
    };
    let offset = usize::try_from(*offset).ok()?;
    let made = data
        .iter()
        .zip(file.get(offset..)?)
        .take_while(|(a, b)| a == b)
        .count();
    data.truncate(made);
    Some(log)
}

/// Whether a replay with every change kept holds exactly these files.
fn same_files(history: &History, on_disk: &BTreeMap<String, Vec<u8>>) -> Result<(), String> {
    let image = history.image(CrashKind::ProcessCrash, &mut Dice::new(1));
    let replayed: Vec<&String> = image.files().keys().collect();
    if replayed != on_disk.keys().collect::<Vec<_>>() {
        return Err(format!(
            "the replay has files {replayed:?}, the folder {:?}",
            on_disk.keys()
        ));
    }
    for (name, bytes) in on_disk {
        let replayed = &image.files()[name];
        if replayed != bytes {
            let at = replayed
                .iter()
                .zip(bytes)
                .position(|(a, b)| a != b)
                .unwrap_or(replayed.len().min(bytes.len()));
            return Err(format!(
                "{name}: the replay ({} bytes) and the file ({} bytes) differ from byte {at}",
                replayed.len(),
                bytes.len()
            ));
        }
    }
    Ok(())
}

/// Opens an image through annals and checks what any durability must give:
/// the store opens, positions run 1..=n, each stream's versions 1..=n,
/// every stored batch is whole with its own payloads, `PRAGMA
/// integrity_check` says ok, and the store takes a new append.
fn open_and_check(db: &Path, durability: Durability) -> Result<Vec<Stored>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let store = store_api::open(db, durability)
            .await
            .map_err(|e| format!("annals cannot open the image: {}", chain(&*e)))?;
        let events = store_api::read_everything(&store)
            .await
            .map_err(|e| format!("annals cannot read the image: {}", chain(&*e)))?;
        stored_batches_are_whole(&events)?;
        integrity_is_ok(db)?;
        let head = events.last().map_or(0, |e| e.position);
        let probe = store_api::append_probe(&store)
            .await
            .map_err(|e| format!("the store refuses a new append: {}", chain(&*e)))?;
        if probe != head + 1 {
            return Err(format!(
                "a new append went to position {probe}, after a log ending at {head}"
            ));
        }
        store_api::close(store).await;
        Ok(events)
    })
}

/// Positions run 1..=n, each stream's versions 1..=n, and every stored
/// batch is whole, contiguous, in order and with its own payloads.
fn stored_batches_are_whole(events: &[Stored]) -> Result<(), String> {
    let mut versions: HashMap<&str, u64> = HashMap::new();
    for (e, expected) in events.iter().zip(1u64..) {
        if e.position != expected {
            return Err(format!(
                "position {expected} is missing (found {})",
                e.position
            ));
        }
        let v = versions.entry(e.stream.as_str()).or_default();
        *v += 1;
        if e.version != *v {
            return Err(format!(
                "stream {}: version {} follows version {}",
                e.stream,
                e.version,
                *v - 1
            ));
        }
    }
    let mut batches: BTreeMap<&str, Vec<&Stored>> = BTreeMap::new();
    for e in events {
        batches.entry(e.batch.as_str()).or_default().push(e);
    }
    for (batch, stored) in &batches {
        let count = stored[0].count;
        if u64::try_from(stored.len()) != Ok(count) {
            return Err(format!(
                "batch {batch} is torn: {} of {count} events",
                stored.len()
            ));
        }
        for (e, index) in stored.iter().zip(0u64..) {
            if e.index != index || e.payload != payload_of(batch, index) {
                return Err(format!(
                    "batch {batch}: event {index} is not what was appended (index {}, payload {})",
                    e.index, e.payload
                ));
            }
            if e.position != stored[0].position + index {
                return Err(format!("batch {batch} is not contiguous in the log"));
            }
        }
    }
    Ok(())
}

/// Every acknowledged append is stored at its acknowledged positions.
fn every_ack_present(events: &[Stored], acks: &[Ack]) -> Result<(), String> {
    let head = events.last().map_or(0, |e| e.position);
    for ack in acks {
        ack_stored_in_place(events, ack, head)?;
    }
    Ok(())
}

/// How many stored batches were never acknowledged: committed while the
/// child was killed, before its ACK was printed.
fn unacknowledged(events: &[Stored], acks: &[Ack]) -> usize {
    let acked: std::collections::HashSet<&str> = acks.iter().map(|a| a.batch.as_str()).collect();
    let stored: std::collections::BTreeSet<&str> =
        events.iter().map(|e| e.batch.as_str()).collect();
    stored.iter().filter(|b| !acked.contains(*b)).count()
}

/// What survives is a prefix of the commit order (position order): every
/// acknowledged append at or below the last stored position is there,
/// whole, at its positions. Returns the last position.
fn acks_form_a_prefix(events: &[Stored], acks: &[Ack]) -> Result<u64, String> {
    let head = events.last().map_or(0, |e| e.position);
    for ack in acks.iter().filter(|a| a.first <= head) {
        ack_stored_in_place(events, ack, head)
            .map_err(|e| format!("not a prefix of the commit order: {e}"))?;
    }
    Ok(head)
}

fn ack_stored_in_place(events: &[Stored], ack: &Ack, head: u64) -> Result<(), String> {
    let slot = |p: u64| {
        usize::try_from(p)
            .ok()
            .and_then(|p| p.checked_sub(1))
            .and_then(|i| events.get(i))
    };
    let in_place = (ack.first..=ack.last).all(|p| slot(p).is_some_and(|e| e.batch == ack.batch));
    if in_place {
        Ok(())
    } else {
        Err(format!(
            "acknowledged batch {} (positions {}..={}) is not stored there; the log ends at {head}",
            ack.batch, ack.first, ack.last
        ))
    }
}

/// Every append acknowledged more than `bound` before the cut survived
/// (the log reaches past its last position).
fn loss_is_bounded(acks: &[Ack], head: u64, cut: Instant, bound: Duration) -> Result<(), String> {
    for ack in acks.iter().filter(|a| a.last > head) {
        let age = cut.saturating_duration_since(ack.at);
        if age > bound {
            return Err(format!(
                "batch {} was acknowledged at least {} ms before the cut and is lost; \
                 the bound is {} ms",
                ack.batch,
                age.as_millis(),
                bound.as_millis()
            ));
        }
    }
    Ok(())
}

fn integrity_is_ok(db: &Path) -> Result<(), String> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| format!("SQLite cannot open the image: {e}"))?;
    let mut statement = conn
        .prepare("PRAGMA integrity_check")
        .map_err(|e| format!("integrity_check: {e}"))?;
    let rows: Vec<String> = statement
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| format!("integrity_check: {e}"))?;
    if rows == ["ok"] {
        Ok(())
    } else {
        Err(format!(
            "integrity_check: {}",
            first_lines(&rows.join("\n"))
        ))
    }
}

/// The first lines of an integrity report (SQLite may list thousands of
/// pages), and how many more there are.
fn first_lines(report: &str) -> String {
    const SHOWN: usize = 3;
    let lines: Vec<&str> = report.lines().collect();
    let mut text = lines[..lines.len().min(SHOWN)].join(" / ");
    if lines.len() > SHOWN {
        text.push_str(&format!(" / ... {} more lines", lines.len() - SHOWN));
    }
    text
}

/// How many acknowledged raw commits an image lost, or why it is
/// unreadable.
fn raw_losses(db: &Path, acks: &[Ack]) -> Result<usize, String> {
    let conn = rusqlite::Connection::open(db).map_err(|e| e.to_string())?;
    let table: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'log'",
            [],
            |r| r.get(0),
        )
        .map_err(|e| e.to_string())?;
    if table == 0 {
        return Ok(acks.len());
    }
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if check != "ok" {
        return Err(format!("integrity_check: {}", first_lines(&check)));
    }
    let mut statement = conn
        .prepare("SELECT batch, count(*) FROM log GROUP BY batch")
        .map_err(|e| e.to_string())?;
    let stored: HashMap<String, u64> = statement
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect())
        .map_err(|e| e.to_string())?;
    Ok(acks
        .iter()
        .filter(|a| stored.get(&a.batch) != Some(&(a.last - a.first + 1)))
        .count())
}

/// An error and its causes on one line.
fn chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
