//! What the multi-process tests share: a seeded generator, and the test
//! binary run again as a child process.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use annals_core::Position;
use annals_projections::Running;

/// The variable that repeats a run's random choices.
pub const SEED: &str = "ANNALS_TEST_SEED";

/// The seed from `ANNALS_TEST_SEED`, or a fresh one.
pub fn seed() -> u64 {
    std::env::var(SEED)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| u64::from(d.subsec_nanos()) | 1)
        })
}

/// A small deterministic generator (xorshift), so a failing run repeats.
pub struct Dice(u64);

impl Dice {
    pub fn new(seed: u64) -> Self {
        // Xorshift never leaves zero.
        Dice(seed | 1)
    }

    /// A number in `0..sides`.
    pub fn roll(&mut self, sides: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % sides
    }
}

/// What a child writes for its parent starts with this, so that the test
/// harness's own output (which may share the line) is told apart.
pub const SAYS: &str = "CHILD ";

/// Writes `line` for the parent, at once.
pub fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    // A parent that stopped listening has failed already; nothing to add.
    let _ = writeln!(out, "{SAYS}{line}").and_then(|()| out.flush());
}

/// The part of a child's output line meant for the parent, if any.
pub fn said(line: &str) -> Option<&str> {
    line.find(SAYS).map(|at| &line[at + SAYS.len()..])
}

/// This test binary run again as a child, running only the test `test`
/// with `envs` set (one of them tells the test it is the child), and the
/// lines it says, as they come.
pub fn spawn_child(
    test: &str,
    envs: &[(&str, String)],
) -> Result<(Child, mpsc::Receiver<String>), Box<dyn std::error::Error>> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(["--exact", test, "--nocapture", "--test-threads", "1"])
        .stdout(Stdio::piped());
    for (key, value) in envs {
        command.env(key, value);
    }
    let mut child = command.spawn()?;
    let stdout = child.stdout.take().ok_or("the child has no stdout")?;
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(said) = said(&line) {
                if lines.send(said.to_owned()).is_err() {
                    return;
                }
            }
        }
    });
    Ok((child, received))
}

/// Waits up to `timeout` for a line from the child that starts with
/// `word`; returns the rest of it. A line starting `FAILED` ends the wait
/// with an error.
pub fn expect_line(
    lines: &mpsc::Receiver<String>,
    word: &str,
    timeout: Duration,
) -> Result<String, Box<dyn std::error::Error>> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = lines
            .recv_timeout(left)
            .map_err(|e| format!("no {word} line from the child within {timeout:?}: {e}"))?;
        if let Some(failure) = line.strip_prefix("FAILED") {
            return Err(format!("the child failed:{failure}").into());
        }
        if let Some(rest) = line.strip_prefix(word) {
            return Ok(rest.trim().to_owned());
        }
    }
}

/// The lines the child says until its output ends (it exited or was
/// killed), waiting at most `timeout` for the end.
#[allow(dead_code)] // Not every test file needs it.
pub fn remaining_lines(
    lines: &mpsc::Receiver<String>,
    timeout: Duration,
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let deadline = std::time::Instant::now() + timeout;
    let mut rest = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => rest.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(rest),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(format!("the child's output did not end within {timeout:?}").into())
            }
        }
    }
}

/// Kills the child at a random moment: one time in five while it starts
/// (before it says `READY`), else up to `pause_ms` after; then fails if it
/// said it failed. `context` (the cycle, the seed) goes into the errors.
#[allow(dead_code)] // Not every test file needs it.
pub fn kill_at_random_moment(
    child: &mut Child,
    lines: &mpsc::Receiver<String>,
    dice: &mut Dice,
    pause_ms: u64,
    context: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    if dice.roll(5) > 0 {
        expect_line(lines, "READY", Duration::from_secs(30))
            .map_err(|e| format!("{context}: {e}"))?;
    }
    std::thread::sleep(Duration::from_millis(dice.roll(pause_ms)));
    child.kill()?;
    child.wait()?;
    for line in remaining_lines(lines, Duration::from_secs(10))? {
        if line.starts_with("FAILED") {
            return Err(format!("{context}: the child {line}").into());
        }
    }
    Ok(())
}

/// In a child: lets `running` run, doing `meanwhile` alongside, until the
/// process is killed (or a minute has passed, so that it never outlives a
/// parent that died); a failure of one of the projections `names` is said
/// at once.
#[allow(dead_code)] // Not every test file needs it.
pub async fn run_until_killed(
    running: &Running,
    names: &[&str],
    meanwhile: impl Future<Output = ()>,
) {
    let failed = futures_util::future::select_all(
        names
            .iter()
            .map(|name| Box::pin(running.wait_for(name, Position(u64::MAX)))),
    );
    let meanwhile = async {
        meanwhile.await;
        std::future::pending::<()>().await;
    };
    tokio::select! {
        (failed, _, _) = failed => {
            if let Err(e) = failed {
                say(&format!("FAILED {e}"));
            }
        }
        () = meanwhile => {}
        () = tokio::time::sleep(Duration::from_secs(60)) => {}
    }
}
