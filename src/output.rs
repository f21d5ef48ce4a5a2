//! What the user sees: JSON events on stdout, or text and progress bars on stderr.
//!
//! With `--json` every report is one JSON object on one line of stdout (errors too), so
//! a script never meets a line it cannot parse. Without it, reports are short lines on
//! stderr, and stdout carries nothing but payload (`listen --stdout`). Progress bars
//! appear only when stderr is a terminal and `--quiet` is off.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressState, ProgressStyle};
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

    /// Whether progress bars are drawn (stderr is a terminal and `-q` is off).
    pub fn bars(&self) -> bool {
        self.bars
    }

    /// Whether `-q` is on (errors only).
    pub fn quiet(&self) -> bool {
        self.quiet
    }

    /// A note for the person at the terminal (a new identity, waiting for stdin): one
    /// line on stderr unless quiet, also with `--json` (stdout stays JSON only).
    pub fn note(&self, message: &str) {
        if !self.quiet {
            line_to_stderr(message);
        }
    }

    /// Reports an event: the JSON object with `--json`, else the human line on stderr
    /// (unless quiet).
    pub fn event(&self, event: Value, human: impl FnOnce() -> String) {
        if self.json {
            // One line, one write: serialised whole first (not piece by piece through
            // the formatter and stdout's line buffer).
            let mut line = serde_json::to_vec(&event).unwrap_or_default();
            line.push(b'\n');
            let mut out = std::io::stdout().lock();
            let written = out.write_all(&line).and_then(|()| out.flush());
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
        // Errors may quote a peer (a close reason, a certificate's issuer).
        line_to_stderr(&format!("error: {}", shown(message)));
    }

    /// A progress bar for `len` bytes (a spinner when unknown), hidden when bars are off.
    /// The label is shown escaped ([`shown`]) and cut to [`LABEL_WIDTH`] with an ellipsis
    /// ([`ellipsize`]); rate and ETA are smoothed (`Smoothed`), and the ETA is `-`
    /// until there is a rate.
    pub fn progress(&self, len: Option<u64>, label: &str) -> ProgressBar {
        if !self.bars {
            return ProgressBar::hidden();
        }
        let bar = match len {
            Some(len) => ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
                .with_style(
                    ProgressStyle::with_template(
                        "{msg:24} [{bar:30}] {bytes}/{total_bytes} {rate} ETA {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .with_key("rate", Smoothed::new(Show::Rate))
                    .with_key("eta", Smoothed::new(Show::Eta))
                    .progress_chars("=> "),
                ),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
                ProgressStyle::with_template("{spinner} {msg:24} {bytes} {rate}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner())
                    .with_key("rate", Smoothed::new(Show::Rate)),
            ),
        };
        // Dropped unfinished (Ctrl-C), it clears itself instead of freezing on screen.
        let bar = bar.with_finish(ProgressFinish::AndClear);
        bar.set_message(ellipsize(&shown(label).to_string(), LABEL_WIDTH));
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

/// How many characters of a name a progress bar shows.
pub const LABEL_WIDTH: usize = 24;

/// What a [`Smoothed`] key writes.
#[derive(Debug, Clone, Copy)]
enum Show {
    Rate,
    Eta,
}

/// A rate smoothed over a few seconds (an exponentially weighted moving average of
/// samples at least [`Smoothed::SAMPLE`] apart, time constant [`Smoothed::TAU`]), and
/// the ETA from it. indicatif's own estimator lags and overshoots; before the first
/// sample there is no rate, and the ETA shows `-` rather than a false `0s`.
#[derive(Debug, Clone)]
struct Smoothed {
    show: Show,
    last: Option<(Instant, u64)>,
    rate: Option<f64>,
}

impl Smoothed {
    /// The shortest interval between two samples.
    const SAMPLE: Duration = Duration::from_millis(250);
    /// The time constant of the average, in seconds.
    const TAU: f64 = 3.0;

    fn new(show: Show) -> Self {
        Self {
            show,
            last: None,
            rate: None,
        }
    }

    /// Takes a sample of `pos` bytes at `now`.
    fn sample(&mut self, pos: u64, now: Instant) {
        let Some((at, was)) = self.last else {
            self.last = Some((now, pos));
            return;
        };
        let dt = now.saturating_duration_since(at);
        if dt < Self::SAMPLE {
            return;
        }
        let dt = dt.as_secs_f64();
        let now_rate = pos.saturating_sub(was) as f64 / dt;
        let weight = 1.0 - (-dt / Self::TAU).exp();
        self.rate = Some(match self.rate {
            Some(rate) => rate + weight * (now_rate - rate),
            None => now_rate,
        });
        self.last = Some((now, pos));
    }

    /// The ETA for `left` bytes, if there is a rate to tell it by.
    fn eta(&self, left: u64) -> Option<Duration> {
        match self.rate {
            _ if left == 0 => Some(Duration::ZERO),
            Some(rate) if rate >= 1.0 => Duration::try_from_secs_f64(left as f64 / rate).ok(),
            _ => None,
        }
    }
}

impl indicatif::style::ProgressTracker for Smoothed {
    fn clone_box(&self) -> Box<dyn indicatif::style::ProgressTracker> {
        Box::new(self.clone())
    }

    fn tick(&mut self, state: &ProgressState, now: Instant) {
        self.sample(state.pos(), now);
    }

    fn reset(&mut self, _: &ProgressState, _: Instant) {
        self.last = None;
        self.rate = None;
    }

    fn write(&self, state: &ProgressState, w: &mut dyn fmt::Write) {
        let _ = match self.show {
            Show::Rate => match self.rate {
                Some(rate) => write!(w, "{}/s", human_bytes(rate as u64)),
                None => write!(w, "-"),
            },
            Show::Eta => {
                let left = state.len().unwrap_or(0).saturating_sub(state.pos());
                match self.eta(left) {
                    Some(eta) => write!(w, "{}", human_duration(eta)),
                    None => write!(w, "-"),
                }
            }
        };
    }
}

/// A string from the wire (a name, a reason, a certificate's subject) made safe to show
/// on a terminal or in a log: control characters (C0, DEL, C1), and the invisible
/// bidirectional controls that reorder what follows, are shown escaped, so a peer can
/// neither send escape sequences to the terminal nor make text read otherwise than it
/// is. Tab, CR and LF show as `\t`, `\r`, `\n`, ESC as `\e`, other C0 and DEL as
/// `\x7f` style, C1 and the bidi controls (U+061C, U+200E/F, U+202A–U+202E,
/// U+2066–U+2069) as `\u{202e}` style. JSON events carry the raw string instead (JSON
/// escapes it).
pub fn shown(s: &str) -> Shown<'_> {
    Shown(s)
}

/// A string shown escaped; see [`shown`].
#[derive(Debug, Clone, Copy)]
pub struct Shown<'a>(&'a str);

/// Whether `c` must be escaped to be shown: a control or bidi control character.
fn must_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(must_escape) {
            f.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            match c {
                '\t' => f.write_str("\\t")?,
                '\r' => f.write_str("\\r")?,
                '\n' => f.write_str("\\n")?,
                '\u{1b}' => f.write_str("\\e")?,
                c if (c as u32) < 0x80 => write!(f, "\\x{:02x}", c as u32)?,
                c => write!(f, "\\u{{{:x}}}", c as u32)?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// `name` cut to at most `max` characters with an ellipsis in the middle, keeping the
/// start and the extension (`a_very_long_name_of_a_f….tar.gz`).
pub fn ellipsize(name: &str, max: usize) -> String {
    let len = name.chars().count();
    if len <= max || max < 2 {
        return name.to_string();
    }
    // The extension: from the first dot after the start, at most a third of the room.
    let ext: String = match name.char_indices().skip(1).find(|&(_, c)| c == '.') {
        Some((at, _)) if name[at..].chars().count() <= max / 3 => name[at..].to_string(),
        _ => match name.rfind('.') {
            Some(at) if at > 0 && name[at..].chars().count() <= max / 3 => name[at..].to_string(),
            _ => String::new(),
        },
    };
    let keep = max - 1 - ext.chars().count();
    let start: String = name.chars().take(keep).collect();
    format!("{start}\u{2026}{ext}")
}

/// A fingerprint in short form for human lines: its first 8 characters and an
/// ellipsis (the JSON events carry it whole).
pub fn short_fingerprint(fp: &impl fmt::Display) -> String {
    let whole = fp.to_string();
    match whole.char_indices().nth(8) {
        Some((at, _)) => format!("{}\u{2026}", &whole[..at]),
        None => whole,
    }
}

/// A duration as people read it, rounded (`21ms`, `2449ms`, `30s`, `2m 5s`): every
/// duration in a human line goes through here; JSON keeps exact numbers.
pub use qp2p::net::retry::rounded as human_duration;

/// An error and its causes in one line, as `{:#}` shows them, but a cause whose text
/// its context already ends with is not repeated (`could not bind …: Address already
/// in use (os error 98)` once, not twice).
pub fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.ends_with(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    if let Some(advice) = crate::error::advice(e) {
        text.push_str(&format!(" ({advice})"));
    }
    text
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A sender's name cannot write escape sequences to the listener's terminal.
    #[test]
    fn wire_strings_are_shown_escaped() {
        let evil = "evil\u{1b}[2J\u{1b}[31mRED\u{1b}[0m\rfake\t.txt\u{7f}\u{9b}\u{202e}fdp.exe";
        let text = shown(evil).to_string();
        assert_eq!(
            text,
            "evil\\e[2J\\e[31mRED\\e[0m\\rfake\\t.txt\\x7f\\u{9b}\\u{202e}fdp.exe"
        );
        assert!(!text.chars().any(must_escape), "{text}");
        assert_eq!(shown("plain näme.txt").to_string(), "plain näme.txt");
        assert_eq!(
            shown("\u{2066}\u{061c}\u{200f}").to_string(),
            "\\u{2066}\\u{61c}\\u{200f}"
        );
    }

    #[test]
    fn long_names_keep_their_start_and_extension() {
        assert_eq!(ellipsize("short.txt", 24), "short.txt");
        let cut = ellipsize("a_very_long_name_of_a_file_indeed.tar.gz", 24);
        assert_eq!(cut.chars().count(), 24, "{cut}");
        assert!(
            cut.starts_with("a_very_long_name") && cut.ends_with("\u{2026}.tar.gz"),
            "{cut}"
        );
        let cut = ellipsize("no-extension-but-a-very-long-name-here", 24);
        assert_eq!(cut.chars().count(), 24, "{cut}");
        assert!(cut.ends_with('\u{2026}'), "{cut}");
    }

    /// No ETA before there is a rate; then one from the smoothed rate.
    #[test]
    fn eta_waits_for_a_rate_and_is_smoothed() {
        let mut s = Smoothed::new(Show::Eta);
        let t0 = Instant::now();
        assert_eq!(s.eta(1000), None, "no ETA 0s before a rate");
        s.sample(0, t0);
        assert_eq!(s.eta(1000), None);
        s.sample(100, t0 + Duration::from_secs(1));
        assert_eq!(s.eta(1000), Some(Duration::from_secs(10)));
        // A burst moves the estimate part of the way, not all of it.
        s.sample(1100, t0 + Duration::from_secs(2));
        let rate = s.rate.unwrap();
        assert!(rate > 100.0 && rate < 1000.0, "{rate}");
        assert_eq!(s.eta(0), Some(Duration::ZERO));
    }

    #[test]
    fn fingerprints_have_a_short_form() {
        let fp = "h3kto7a7sb5pxerg3jfyw66q72rc2mphwhewvh2s5gcloib3k3hq";
        assert_eq!(short_fingerprint(&fp), "h3kto7a7\u{2026}");
    }

    /// An io::Error that is both in the context's text and its source shows once.
    #[test]
    fn os_errors_are_not_doubled() {
        #[derive(Debug, thiserror::Error)]
        #[error("could not bind 127.0.0.1:1: {source}")]
        struct Bind {
            source: std::io::Error,
        }
        let e = anyhow::Error::new(Bind {
            source: std::io::Error::from_raw_os_error(libc::EADDRINUSE),
        });
        let text = error_text(&e);
        assert_eq!(text.matches("os error 98").count(), 1, "{text}");
        let e = anyhow::Error::new(std::io::Error::other("inner")).context("outer");
        assert_eq!(error_text(&e), "outer: inner");
    }
}
