//! The receive rules of the protocol, apart from where the bytes go: the duplicate-id
//! table, ack then stop, the free-space refusal, the `send --skip-same` check and the
//! `--once`/`--count` quota.
//!
//! What could go wrong, and how it is prevented:
//! - A retried message stored twice: ids of recent messages ([`RECENT_IDS`]) are kept
//!   in [`Seen`] with what was stored under them; a message seen before is acked again
//!   ([`AckStatus::Duplicate`]) and not stored. A retry that arrives while the first
//!   attempt is still being received waits on that id's lock for its outcome.
//! - The table growing without end under a flood of ids: it is bounded, the oldest id
//!   forgotten first.
//! - A disk that fills half-way: a declared length larger than the free space is
//!   refused before a byte is written ([`check_free_space`], `NO_SPACE`).
//! - `--skip-same` made to vouch for a file outside DIR: [`holds_same`] takes only a
//!   regular file, not a symlink, inside DIR once every link on the way is resolved.
//! - `--count N` storing N+1 under concurrency, or fewer after a failure: the
//!   [`Quota`] slot is taken when the header arrives and given back when the message
//!   is not stored.
//! - The listener exiting under an ack it has not delivered: [`ack`] waits (bounded)
//!   until the sender has read it.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tracing::debug;

use super::framing::{Ack, AckStatus, ErrorCode, MessageId};
use super::transfer::{self, RecvError};
use crate::store::Store;

/// How many message ids are remembered for duplicate detection.
pub const RECENT_IDS: usize = 4096;

/// What was stored under a message id.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Bytes stored.
    pub bytes: u64,
    /// Their SHA-256.
    pub sha256: [u8; 32],
    /// Where they landed (`None` for stdout and texts).
    pub path: Option<PathBuf>,
    /// Where it landed, relative to DIR, `/`-separated: told to the sender in the ack.
    pub name: Option<String>,
}

/// Recent message ids, bounded; each slot is locked while its message is received, so
/// a retry that arrives during the first attempt waits for its outcome.
#[derive(Debug, Default)]
pub struct Seen {
    slots: HashMap<MessageId, Arc<tokio::sync::Mutex<Option<Stored>>>>,
    order: VecDeque<MessageId>,
}

impl Seen {
    /// The slot of message `id`: what was stored under it, locked while a message
    /// with this id is received. The oldest id is forgotten past [`RECENT_IDS`].
    pub fn slot(&mut self, id: MessageId) -> Arc<tokio::sync::Mutex<Option<Stored>>> {
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

/// Which messages the listener still takes: `--once` and `--count`.
///
/// A slot is taken when a message's header arrives and given back if the message is
/// not stored (failed, or a duplicate), so `--count N` stores exactly N messages and
/// refuses the one after with [`ErrorCode::NotAccepting`], which a sender does not
/// retry.
#[derive(Debug, Default)]
pub struct Quota {
    /// `--once` into DIR: the connection (quinn's stable id) whose messages make the
    /// one `send` run; claimed by the first message.
    pub once: bool,
    /// The connection that claimed the `--once` run.
    pub session: Option<usize>,
    /// `--count N` (and `--once --stdout`: one): messages stored or being received.
    pub limit: Option<u64>,
    /// Messages taken (stored or being received).
    pub taken: u64,
    /// Messages stored.
    pub stored: u64,
}

impl Quota {
    /// Takes a slot for a message on connection `conn`, or says why not (the code to
    /// refuse it with).
    pub fn take(&mut self, conn: usize) -> Result<(), ErrorCode> {
        if self.once {
            match self.session {
                None => self.session = Some(conn),
                Some(id) if id == conn => {}
                Some(_) => return Err(ErrorCode::NotAccepting),
            }
        }
        if let Some(limit) = self.limit {
            if self.taken >= limit {
                return Err(ErrorCode::NotAccepting);
            }
            self.taken += 1;
        }
        Ok(())
    }

    /// The message was not stored: its slot is free again.
    pub fn give_back(&mut self) {
        self.taken = self.taken.saturating_sub(1);
    }

    /// The message was stored; true when that was the last one wanted.
    pub fn stored(&mut self) -> bool {
        self.stored += 1;
        self.limit.is_some_and(|limit| self.stored >= limit)
    }
}

/// Refuses (`NO_SPACE`) a message of `len` declared bytes that `store`'s free space
/// cannot hold, before a byte is written; a disk that fills up anyway (unknown length,
/// several at once) fails on ENOSPC with the same code.
pub fn check_free_space(store: &Store, len: u64) -> Result<(), RecvError> {
    match store.free_space() {
        Ok(free) if free < len => Err(RecvError::Refuse(
            ErrorCode::NoSpace,
            format!(
                "{len} bytes declared, {free} free in {}",
                store.root().display()
            ),
        )),
        Ok(_) => Ok(()),
        Err(e) => {
            debug!(cause = %e, "cannot read the free space; receiving anyway");
            Ok(())
        }
    }
}

/// Acks what was stored, then waits (bounded) until the ack is delivered, so `--once`
/// never exits under it.
pub async fn ack(send: &mut Option<quinn::SendStream>, stored: &Stored) {
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

/// Acks a message whose payload is not needed (a duplicate, or content already
/// there), then stops its stream: ack first, so the sender reads it after its write
/// is stopped.
pub async fn answer_without_payload(
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
pub fn relative_name(root: &Path, path: &Path) -> Option<String> {
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
pub fn holds_same(
    root: &Path,
    rel: &Path,
    len: u64,
    digest: &[u8; 32],
) -> Option<(PathBuf, String)> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `--count 2`: a failed message gives its slot back, the second stored one is the
    /// last, a third is refused.
    #[test]
    fn quota_counts_stored_messages_only() {
        let mut q = Quota {
            limit: Some(2),
            ..Quota::default()
        };
        q.take(1).unwrap();
        q.give_back();
        q.take(1).unwrap();
        assert!(!q.stored());
        q.take(2).unwrap();
        assert!(q.stored());
        assert_eq!(q.take(3), Err(ErrorCode::NotAccepting));
    }

    /// `--once`: the first connection's messages only.
    #[test]
    fn once_takes_one_connection() {
        let mut q = Quota {
            once: true,
            ..Quota::default()
        };
        q.take(7).unwrap();
        q.take(7).unwrap();
        assert_eq!(q.take(8), Err(ErrorCode::NotAccepting));
    }
}
