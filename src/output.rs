//! What the user sees: JSON events on stdout, or text and progress bars on stderr.
//!
//! With `--json` every report is one JSON object on one line of stdout (errors too), so
//! a script never meets a line it cannot parse. Without it, reports are short lines on
//! stderr, and stdout carries nothing but payload (`listen --stdout`). Progress bars
//! appear only when stderr is a terminal and `--quiet` is off.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Writes one line to stderr, ignoring failure: `eprintln!` panics when stderr is a
/// pipe whose reader has gone (`qp2p listen 2>&1 | head -1`), and a report that cannot
/// be shown is no reason to stop a transfer.
pub fn line_to_stderr(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// How reports are written.
#[derive(Debug, Clone)]
pub struct Output {
    json: bool,
    quiet: bool,
    bars: bool,
    /// Cancelled when a JSON event met a closed stdout (`qp2p --json listen | head -1`).
    stdout_gone: CancellationToken,
}

impl Output {
    /// Output for the global flags.
    pub fn new(json: bool, quiet: bool) -> Self {
        Self {
            json,
            quiet,
            bars: !quiet && std::io::stderr().is_terminal(),
            stdout_gone: CancellationToken::new(),
        }
    }

    /// Resolves once a JSON event could not be written because stdout's reader has
    /// gone: whoever read the events is not listening any more, so a long-running
    /// command should stop as `yes | head` does.
    pub async fn stdout_gone(&self) {
        self.stdout_gone.cancelled().await
    }

    /// Whether events are JSON.
    pub fn json(&self) -> bool {
        self.json
    }

    /// Reports an event: the JSON object with `--json`, else the human line on stderr
    /// (unless quiet).
    pub fn event(&self, event: Value, human: impl FnOnce() -> String) {
        if self.json {
            let mut out = std::io::stdout().lock();
            let written = writeln!(out, "{event}").and_then(|()| out.flush());
            if let Err(e) = written {
                if e.kind() == std::io::ErrorKind::BrokenPipe && !self.stdout_gone.is_cancelled() {
                    line_to_stderr("warning: stdout was closed by its reader; stopping");
                    self.stdout_gone.cancel();
                }
            }
        } else if !self.quiet {
            line_to_stderr(&human());
        }
    }

    /// A note for a person at a terminal (not an event): on stderr unless quiet or
    /// `--json`.
    pub fn note(&self, message: &str) {
        if !self.quiet && !self.json {
            line_to_stderr(message);
        }
    }

    /// A warning: on stderr unless quiet, and as a `warning` event with `--json`.
    pub fn warn(&self, message: &str) {
        if self.json {
            self.event(
                serde_json::json!({"event": "warning", "message": message}),
                String::new,
            );
        }
        if !self.quiet {
            line_to_stderr(&format!("warning: {message}"));
        }
    }

    /// Reports a fatal error: one line on stderr always, and an `error` event with
    /// `--json`.
    pub fn error(&self, message: &str, exit_code: u8) {
        if self.json {
            self.event(
                serde_json::json!({"event": "error", "message": message, "exit_code": exit_code}),
                String::new,
            );
        }
        line_to_stderr(&format!("error: {message}"));
    }

    /// A progress bar for `len` bytes (a spinner when unknown), hidden when bars are off.
    pub fn progress(&self, len: Option<u64>, label: &str) -> ProgressBar {
        if !self.bars {
            return ProgressBar::hidden();
        }
        let bar = match len {
            Some(len) => ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
                .with_style(
                ProgressStyle::with_template(
                    "{msg:20!} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            ),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
                ProgressStyle::with_template("{spinner} {msg:20!} {bytes} {binary_bytes_per_sec}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        // Dropped unfinished (Ctrl-C), it clears itself instead of freezing on screen.
        let bar = bar.with_finish(ProgressFinish::AndClear);
        bar.set_message(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    /// A spinner saying what we wait for ("connecting to ADDR, attempt 2"), hidden when
    /// bars are off; it clears itself when dropped.
    pub fn spinner(&self, what: String) -> ProgressBar {
        if !self.bars {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
            .with_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            )
            .with_finish(ProgressFinish::AndClear)
            .with_message(what);
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    }
}

/// Bytes in the units people read: `1.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    indicatif::BinaryBytes(n).to_string()
}

/// A rate in bytes per second, for reports.
pub fn human_rate(bytes: u64, seconds: f64) -> String {
    if seconds <= 0.0 {
        return "-".into();
    }
    format!("{}/s", human_bytes((bytes as f64 / seconds) as u64))
}
