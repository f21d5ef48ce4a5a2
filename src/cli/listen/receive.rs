//! One message into the store: duplicates answered from memory, the payload received,
//! stored and acknowledged, and the report.
//!
//! A message id seen recently ([`RECENT_IDS`]) is acknowledged again with what was
//! stored under it and not stored twice; its slot is locked while the first attempt is
//! received, so a retry that arrives meanwhile waits for that outcome. A declared length
//! that does not fit DIR's free space is refused before a byte is written.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tracing::{debug, info};

use super::{Sink, State};
use crate::net::framing::{Ack, AckStatus, ErrorCode, Header, Kind, MessageId, MAX_TEXT_LEN};
use crate::net::transfer::{self, hex, receive_payload, RecvError};
use crate::net::Fingerprint;
use crate::output::{human_bytes, human_duration, human_rate, short_fingerprint, shown};
use crate::store::sanitize;

/// Stdout, counting what was written: a message that fails after a byte reached it
/// ends the listener.
struct Counted<W> {
    inner: W,
    written: Arc<AtomicU64>,
}

impl<W: std::io::Write> std::io::Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written.fetch_add(n as u64, Ordering::SeqCst);
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        let n = self.inner.write_vectored(bufs)?;
        self.written.fetch_add(n as u64, Ordering::SeqCst);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// How many message ids are remembered for duplicate detection.
const RECENT_IDS: usize = 4096;

/// What was stored under a message id.
#[derive(Debug, Clone)]
pub(super) struct Stored {
    bytes: u64,
    sha256: [u8; 32],
    path: Option<PathBuf>,
    /// Where it landed, relative to DIR, `/`-separated: told to the sender in the ack.
    name: Option<String>,
}

/// Recent message ids, bounded; each slot is locked while its message is received, so
/// a retry that arrives during the first attempt waits for its outcome.
#[derive(Debug, Default)]
pub(super) struct Seen {
    slots: HashMap<MessageId, Arc<tokio::sync::Mutex<Option<Stored>>>>,
    order: VecDeque<MessageId>,
}

impl Seen {
    pub(super) fn slot(&mut self, id: MessageId) -> Arc<tokio::sync::Mutex<Option<Stored>>> {
        if let Some(slot) = self.slots.get(&id) {
            return slot.clone();
        }
        if self.order.len() >= RECENT_IDS {
            if let Some(old) = self.order.pop_front() {
                self.slots.remove(&old);
            }
        }
        self.order.push_back(id);
        self.slots.entry(id).or_default().clone()
    }
}

/// Receives one message; returns what is stored under its id, whether it was stored
/// now ([`AckStatus::Stored`]), before under this id (`Duplicate`), or was already there
/// with the same content (`Present`, `send --skip-same`), and for a `--text` message
/// the text to show.
pub(super) async fn receive(
    header: &Header,
    first: Bytes,
    send: &mut Option<quinn::SendStream>,
    recv: &mut quinn::RecvStream,
    state: &State,
) -> Result<(Stored, AckStatus, Option<String>), RecvError> {
    let rel = match (&state.sink, header.kind) {
        (Sink::Dir(_), Kind::Message) => Some(sanitize(&header.name).ok_or_else(|| {
            RecvError::Refuse(ErrorCode::BadName, format!("{:?}", shown(&header.name)))
        })?),
        _ => None,
    };
    state.limits.check_declared(header)?;
    let slot = state
        .seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .slot(header.id);
    let mut slot = slot.lock().await;
    if let Some(stored) = slot.clone() {
        info!(id = %header.id, "duplicate message: acknowledged, not stored again");
        answer_without_payload(send, recv, &stored, AckStatus::Duplicate).await;
        return Ok((stored, AckStatus::Duplicate, None));
    }
    if let (Sink::Dir(store), Some(rel), Some(len), Some(digest)) =
        (&state.sink, &rel, header.length, header.skip_same)
    {
        let (root, rel) = (store.root().to_path_buf(), rel.clone());
        let held = tokio::task::spawn_blocking(move || holds_same(&root, &rel, len, &digest))
            .await
            .unwrap_or(None);
        if let Some((path, name)) = held {
            info!(name = %shown(&name), "same content already there: not taken again");
            let stored = Stored {
                bytes: len,
                sha256: digest,
                path: Some(path),
                name: Some(name),
            };
            answer_without_payload(send, recv, &stored, AckStatus::Present).await;
            return Ok((stored, AckStatus::Present, None));
        }
    }

    if let (Sink::Dir(store), Some(len)) = (&state.sink, header.length) {
        // Refused before the payload rather than failed half-way; a disk that fills up
        // anyway (unknown length, several at once) fails on ENOSPC with the same code.
        match store.free_space() {
            Ok(free) if free < len => {
                return Err(RecvError::Refuse(
                    ErrorCode::NoSpace,
                    format!(
                        "{len} bytes declared, {free} free in {}",
                        store.root().display()
                    ),
                ))
            }
            Ok(_) => {}
            Err(e) => debug!(cause = %e, "cannot read the free space; receiving anyway"),
        }
    }
    if header.kind == Kind::Text {
        let text = receive_text(header, first, recv).await?;
        let stored = Stored {
            bytes: text.len() as u64,
            sha256: <sha2::Sha256 as sha2::Digest>::digest(text.as_bytes()).into(),
            path: None,
            name: None,
        };
        *slot = Some(stored.clone());
        drop(slot);
        ack(send, &stored).await;
        return Ok((stored, AckStatus::Stored, Some(text)));
    }
    let bar = state.ctx.out.progress(header.length, &header.name);
    let progress = {
        let bar = bar.clone();
        move |n: u64| bar.inc(n)
    };
    let stored = match (&state.sink, rel) {
        (Sink::Dir(store), Some(rel)) => {
            let pending = store
                .begin(&rel, header.length)
                .map_err(RecvError::Storage)?;
            let got =
                receive_payload(recv, header, first, pending, state.limits, &progress).await?;
            let path = tokio::task::spawn_blocking(move || got.sink.commit())
                .await
                .map_err(|e| RecvError::Storage(std::io::Error::other(e)))?
                .map_err(RecvError::Storage)?;
            Stored {
                bytes: got.bytes,
                sha256: got.sha256,
                name: relative_name(store.root(), &path),
                path: Some(path),
            }
        }
        (Sink::Stdout(lock), _) => {
            // One message at a time on stdout, never interleaved.
            let _turn = lock.lock().await;
            if state.done.is_cancelled() {
                // A message before this one broke off on stdout, or the run is over.
                return Err(RecvError::Refuse(ErrorCode::NotAccepting, String::new()));
            }
            let written = Arc::new(AtomicU64::new(0));
            let stdout = Counted {
                inner: std::io::stdout(),
                written: written.clone(),
            };
            let got = receive_payload(recv, header, first, stdout, state.limits, &progress).await;
            let got = match got {
                Ok(got) => got,
                Err(e) => {
                    let n = written.load(Ordering::SeqCst);
                    let reader_gone = matches!(&e, RecvError::Storage(io) if io.kind() == std::io::ErrorKind::BrokenPipe);
                    if n > 0 && !reader_gone {
                        // Stdout cannot take bytes back: whoever reads it (`| tar x`)
                        // must not see a next message appended, nor an exit 0.
                        state.fail(format!(
                            "{:?} broke off after {n} bytes of it went to stdout ({e}); \
                             what stdout received is incomplete",
                            header.name
                        ));
                    }
                    return Err(e);
                }
            };
            Stored {
                bytes: got.bytes,
                sha256: got.sha256,
                path: None,
                name: None,
            }
        }
        (Sink::Dir(_), None) => unreachable!("a directory sink always has a name"),
    };
    bar.finish_and_clear();
    *slot = Some(stored.clone());
    drop(slot);
    ack(send, &stored).await;
    Ok((stored, AckStatus::Stored, None))
}

/// Acks what was stored, then waits (bounded) until the ack is delivered, so `--once`
/// never exits under it.
async fn ack(send: &mut Option<quinn::SendStream>, stored: &Stored) {
    let Some(send) = send.as_mut() else { return };
    let ack = Ack {
        status: AckStatus::Stored,
        bytes: stored.bytes,
        sha256: stored.sha256,
    };
    if let Err(e) = transfer::send_ack(send, &ack, stored.name.as_deref()).await {
        debug!(cause = %e, "could not deliver the ack; the sender will retry");
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), send.stopped()).await;
}

/// A `--text` message: at most [`MAX_TEXT_LEN`] bytes of UTF-8, held in memory.
async fn receive_text(
    header: &Header,
    first: Bytes,
    recv: &mut quinn::RecvStream,
) -> Result<String, RecvError> {
    let limits = transfer::Limits {
        max_size: Some(MAX_TEXT_LEN),
    };
    let got = receive_payload(recv, header, first, Vec::new(), limits, &|_| {}).await?;
    String::from_utf8(got.sink)
        .map_err(|_| RecvError::Refuse(ErrorCode::BadHeader, "the text is not UTF-8".into()))
}

/// Acks a message whose payload is not needed (a duplicate, or content already
/// there), then stops its stream: ack first, so the sender reads it after its write
/// is stopped.
async fn answer_without_payload(
    send: &mut Option<quinn::SendStream>,
    recv: &mut quinn::RecvStream,
    stored: &Stored,
    status: AckStatus,
) {
    if let Some(send) = send.as_mut() {
        let ack = Ack {
            status,
            bytes: stored.bytes,
            sha256: stored.sha256,
        };
        let _ = transfer::send_ack(send, &ack, stored.name.as_deref()).await;
    }
    let _ = recv.stop(ErrorCode::Duplicate.varint());
    if let Some(send) = send.as_mut() {
        let _ = tokio::time::timeout(Duration::from_secs(5), send.stopped()).await;
    }
}

/// `path` relative to DIR, `/`-separated, as the ack tells it.
fn relative_name(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    Some(parts.join("/"))
}

/// `send --skip-same`: whether DIR holds `len` bytes of content `digest` under `rel`
/// already: a regular file (not a symlink, and inside DIR once every link on the way is
/// resolved) of that length and SHA-256. Reads it whole; only asked when the sender
/// asked and the length matches. Any error means no.
fn holds_same(root: &Path, rel: &Path, len: u64, digest: &[u8; 32]) -> Option<(PathBuf, String)> {
    use sha2::Digest as _;
    use std::io::Read as _;
    let path = root.join(rel);
    let meta = std::fs::symlink_metadata(&path).ok()?;
    if !meta.is_file() || meta.len() != len {
        return None;
    }
    if !path
        .canonicalize()
        .ok()?
        .starts_with(root.canonicalize().ok()?)
    {
        return None;
    }
    let mut file = std::fs::File::open(&path).ok()?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    let same: [u8; 32] = hasher.finalize().into();
    let name = relative_name(root, &path)?;
    (same == *digest).then_some((path, name))
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
    let sha = hex(&stored.sha256);
    let path = stored.path.as_deref().map(Path::display);
    state.ctx.out.event(
        json!({
            "event": "received",
            "name": header.name,
            "path": stored.path.as_ref().map(|p| p.display().to_string()),
            "bytes": stored.bytes,
            "sha256": sha,
            "peer": peer.to_string(),
            "peer_fingerprint": peer_fp.map(|f| f.to_string()),
            "duplicate": status != AckStatus::Stored,
            "already_present": status == AckStatus::Present,
            "seconds": seconds,
            "message_id": header.id.to_string(),
            "stream": stream,
        }),
        || {
            let dest = match &path {
                Some(p) => format!(" -> {p}"),
                None => String::new(),
            };
            format!(
                "received {}{dest} ({} in {}, {}) from {}{} sha256 {sha}",
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
