//! One message into the store: duplicates answered from memory, the payload received,
//! stored and acknowledged, and the report.
//!
//! The rules (a message id seen recently is acknowledged again and not stored twice, a
//! declared length that does not fit DIR's free space is refused before a byte is
//! written, `--skip-same`, ack then stop) are the library's, in
//! [`crate::net::receiver`]; this file applies them to the store or stdout, with a
//! progress bar, and reports the outcome.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tracing::info;

use super::{Sink, State};
use crate::net::framing::{AckStatus, ErrorCode, Header, Kind, MAX_TEXT_LEN};
use crate::net::receiver::{
    ack, answer_without_payload, check_free_space, holds_same, relative_name, Stored,
};
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
        check_free_space(store, len)?;
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
