//! What the listener shows of one message: its progress bar and its report.
//!
//! The rules (a message id seen recently is acknowledged again and not stored twice, a
//! declared length that does not fit DIR's free space is refused before a byte is
//! written, `--skip-same`, ack then stop) are the library's, in
//! [`qp2p::net::receiver`]; this file applies them to the store or stdout, with a
//! progress bar, and reports the outcome.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::json;

use super::State;
use crate::output::{human_bytes, human_duration, human_rate, short_fingerprint, shown, Output};
use qp2p::net::framing::{AckStatus, Header};
use qp2p::net::receiver::{Bar, NoProgress, Progress, Stored};
use qp2p::Fingerprint;

/// The CLI's progress bars for payloads (none without a terminal, or with `-q`).
impl Progress for Output {
    fn start(&self, len: Option<u64>, name: &str) -> Box<dyn Bar> {
        if !self.bars() {
            return Box::new(NoProgress);
        }
        Box::new(PayloadBar {
            out: self.clone(),
            len,
            name: name.to_owned(),
            started: Instant::now(),
            arrived: AtomicU64::new(0),
            bar: OnceLock::new(),
        })
    }
}

/// How long a payload goes before its bar is drawn: a tree of small files lands
/// without a bar per file flashing by (and without building 5,000 bars).
const BAR_AFTER: Duration = Duration::from_millis(300);

/// One payload's bar, drawn once the payload has taken [`BAR_AFTER`].
struct PayloadBar {
    out: Output,
    len: Option<u64>,
    name: String,
    started: Instant,
    /// Bytes that arrived before the bar was drawn.
    arrived: AtomicU64,
    bar: OnceLock<indicatif::ProgressBar>,
}

impl Bar for PayloadBar {
    fn inc(&self, n: u64) {
        if let Some(bar) = self.bar.get() {
            return bar.inc(n);
        }
        let arrived = self.arrived.fetch_add(n, Ordering::Relaxed) + n;
        if self.started.elapsed() >= BAR_AFTER {
            // One payload's bytes arrive on one task: nothing else draws this bar.
            self.bar.get_or_init(|| {
                let bar = self.out.progress(self.len, &self.name);
                bar.set_position(arrived);
                bar
            });
        }
    }

    /// Stored: the bar goes (one that broke off stays, showing where).
    fn finish(&self) {
        if let Some(bar) = self.bar.get() {
            bar.finish_and_clear()
        }
    }
}

/// A `--text` message: shown escaped, line by line, at the listener.
pub(super) fn report_text(
    state: &State,
    header: &Header,
    text: &str,
    (peer, peer_fp): (SocketAddr, Option<Fingerprint>),
) {
    state.ctx.out.event(
        json!({
            "event": "text",
            "text": text,
            "bytes": text.len(),
            "peer": peer.to_string(),
            "peer_fingerprint": peer_fp.map(|f| f.to_string()),
            "message_id": header.id.to_string(),
        }),
        || {
            let lines: Vec<String> = text.lines().map(|l| format!("  {}", shown(l))).collect();
            format!("text from {}:\n{}", who(peer, peer_fp), lines.join("\n"))
        },
    );
}

pub(super) fn report_received(
    state: &State,
    header: &Header,
    stored: &Stored,
    status: AckStatus,
    (peer, peer_fp): (SocketAddr, Option<Fingerprint>),
    stream: &str,
    seconds: f64,
) {
    let digest = stored.digest;
    let path = stored.path.as_deref().map(Path::display);
    // How the sender reached us (`path` already names where the file landed).
    let reached = state.paths.path_of(peer);
    state.ctx.out.event(
        json!({
            "event": "received",
            "name": header.name,
            "path": stored.path.as_ref().map(|p| p.display().to_string()),
            "bytes": stored.bytes,
            "digest": digest.algorithm.name(),
            (digest.algorithm.name()): digest.hex(),
            "peer": peer.to_string(),
            "peer_fingerprint": peer_fp.map(|f| f.to_string()),
            "duplicate": status != AckStatus::Stored,
            "already_present": status == AckStatus::Present,
            "seconds": seconds,
            "message_id": header.id.to_string(),
            "stream": stream,
            "peer_path": reached.name(),
            "introducer": reached.introducer().map(|f| f.to_string()),
        }),
        || {
            let via = match reached {
                qp2p::net::introducer::PeerPath::Direct => String::new(),
                other => format!(", {other}"),
            };
            let dest = match &path {
                Some(p) => format!(" -> {p}"),
                None => String::new(),
            };
            format!(
                "received {}{dest} ({} in {}, {}) from {}{via}{} {digest}",
                shown(&header.name),
                human_bytes(stored.bytes),
                human_duration(Duration::from_secs_f64(seconds)),
                human_rate(stored.bytes, seconds),
                who(peer, peer_fp),
                match status {
                    AckStatus::Stored => "",
                    AckStatus::Duplicate => ", duplicate: not stored again",
                    AckStatus::Present => ", same content already there: not taken again",
                },
            )
        },
    );
}

/// A sender in a human line: its address, and its fingerprint in short form (a sender
/// is known by its key, an address may change or be shared).
pub(super) fn who(peer: SocketAddr, fp: Option<Fingerprint>) -> String {
    match fp {
        Some(fp) => format!("{peer} ({})", short_fingerprint(&fp)),
        None => peer.to_string(),
    }
}
