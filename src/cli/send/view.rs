//! What the user sees of a send: one bar for a set of files (or a bar per message),
//! waits shown on it, and each delivered message's report.

use std::net::SocketAddr;
use std::time::Instant;

use serde_json::json;

use crate::cli::Context;
use crate::output::{human_bytes, human_duration, human_rate, shown};
use qp2p::net::endpoint::canonical;
use qp2p::net::introducer::PeerPath;
use qp2p::net::retry::{rounded, Retry};
use qp2p::net::sender::Shown;
use qp2p::net::transfer::{Mode, SendError};
use qp2p::{Delivered, Observer, Sender};

/// What the sender's work looks like on the terminal: a spinner while dialing or
/// waiting to retry; a bar per file for one file, one bar for the whole set (files
/// done of all, bytes, rate, ETA) for several.
pub(super) struct View<'a> {
    ctx: &'a Context,
    /// The set's bar, with the number of files and bytes it counts up to.
    set: Option<(indicatif::ProgressBar, u64)>,
    files_done: std::sync::atomic::AtomicU64,
}

impl<'a> View<'a> {
    pub(super) fn new(ctx: &'a Context, set: Option<(u64, u64)>) -> Self {
        let set = set.map(|(files, bytes)| (ctx.out.progress(Some(bytes), ""), files));
        let view = Self {
            ctx,
            set,
            files_done: Default::default(),
        };
        view.label();
        view
    }

    /// Whether the set's bar is on screen: per-file lines are left out then.
    pub(super) fn bar_shown(&self) -> bool {
        self.set.as_ref().is_some_and(|(bar, _)| !bar.is_hidden())
    }

    pub(super) fn label(&self) {
        if let Some((bar, files)) = &self.set {
            let done = self.files_done.load(std::sync::atomic::Ordering::Relaxed);
            bar.set_message(format!("{done}/{files} files"));
        }
    }

    /// For a set, says on its bar what it waits for (until the next file is done) and
    /// returns true: no spinner beside the bar. Every retry is logged at info anyway.
    fn waiting(&self, what: &str) -> bool {
        let Some((bar, files)) = &self.set else {
            return false;
        };
        let done = self.files_done.load(std::sync::atomic::Ordering::Relaxed);
        bar.set_message(format!("{done}/{files} files; {what}"));
        true
    }

    /// A message of the set was delivered.
    pub(super) fn done(&self) {
        self.files_done
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.label();
    }

    /// A message of the set failed: its bytes will not come.
    pub(super) fn failed(&self) {
        self.files_done
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.label();
    }

    /// A line above the bar.
    pub(super) fn line(&self, show: impl FnOnce()) {
        match &self.set {
            Some((bar, _)) => bar.suspend(show),
            None => show(),
        }
    }

    pub(super) fn clear(&self) {
        if let Some((bar, _)) = &self.set {
            bar.finish_and_clear();
        }
    }
}

impl Observer for View<'_> {
    fn connecting(&self, addr: SocketAddr, attempt: u32) -> Shown {
        let what = match attempt {
            0 => format!("connecting to {}", canonical(addr)),
            n => format!("connecting to {}, attempt {}", canonical(addr), n + 1),
        };
        if self.waiting(&what) {
            return None;
        }
        Some(Box::new(self.ctx.out.spinner(what)))
    }

    fn retrying(&self, name: &str, retry: Retry<'_, SendError>) -> Shown {
        let what = format!(
            "{name}: attempt {} failed ({}); next try in {}",
            retry.failed,
            retry.cause,
            rounded(retry.delay)
        );
        if self.waiting(&what) {
            return None;
        }
        Some(Box::new(self.ctx.out.spinner(what)))
    }

    fn sending(&self, name: &str, length: Option<u64>) -> Box<dyn Fn(u64) + Send + Sync> {
        let bar = match &self.set {
            Some((bar, _)) => bar.clone(),
            None => self.ctx.out.progress(length, name),
        };
        Box::new(move |n| bar.inc(n))
    }
}

/// Reports a delivered message: a `sent` event (a line on stderr unless the set's bar
/// stands for it), and once, for a peer that was not authenticated, the fingerprint it
/// showed.
pub(super) fn report_sent(
    sender: &Sender,
    name: &str,
    started: Instant,
    done: &Delivered,
    view: &View<'_>,
    warned: &std::cell::Cell<bool>,
    path: PeerPath,
) {
    let ctx = view.ctx;
    let seconds = started.elapsed().as_secs_f64();
    let addr = sender.addr();
    let retries = done.retries;
    if !warned.get() && !sender.rules().authenticates() {
        warned.set(true);
        if let Some(fp) = done.peer {
            view.line(|| {
                ctx.out.warn(&format!(
                    "{} is not authenticated: it showed fingerprint {fp}; to be sure it is \
                     the peer you mean, compare it with the listener's, then use the ticket \
                     {fp}@{}",
                    canonical(addr),
                    canonical(addr)
                ))
            });
        }
    }
    let digest = done.sent.digest;
    let event = json!({
        "event": "sent",
        "name": name,
        "bytes": done.sent.bytes,
        "digest": digest.algorithm.name(),
        (digest.algorithm.name()): digest.hex(),
        "peer": canonical(addr).to_string(),
        "peer_fingerprint": done.peer.map(|f| f.to_string()),
        "seconds": seconds,
        "retries": retries,
        "reused_connection": done.reused,
        "duplicate": done.sent.duplicate || done.sent.present,
        "already_present": done.sent.present,
        "stored_as": done.sent.stored_as,
        "resumed_from": done.sent.resumed_from,
        "message_id": done.id.to_string(),
        "stream": if sender.mode() == Mode::Uni { "uni" } else { "bi" },
        "path": path.name(),
        "introducer": path.introducer().map(|f| f.to_string()),
    });
    if view.bar_shown() && !ctx.out.json() {
        // The set's bar and its summary stand for the lines of its files.
        return;
    }
    ctx.out.event(event, || {
        let stored_as = match &done.sent.stored_as {
            Some(stored) if stored != name => format!(", stored as {}", shown(stored)),
            _ => String::new(),
        };
        let via = match path {
            PeerPath::Direct => String::new(),
            PeerPath::Punched(_) | PeerPath::Relayed(_) => format!(", {path}"),
        };
        let resumed = match done.sent.resumed_from {
            0 => String::new(),
            n => format!(
                ", resumed: the first {} were held by the listener",
                human_bytes(n)
            ),
        };
        format!(
            "sent {} ({} in {}, {}{via}){}{}{stored_as}{resumed} {}",
            name,
            human_bytes(done.sent.bytes),
            human_duration(started.elapsed()),
            human_rate(done.sent.bytes, seconds),
            if retries > 0 {
                format!(", {retries} retries")
            } else {
                String::new()
            },
            if done.sent.present {
                ", same content already there: not sent again"
            } else if done.sent.duplicate {
                ", already there"
            } else {
                ""
            },
            digest
        )
    });
}
