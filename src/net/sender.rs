//! The message sender: one peer, its pooled connection, the back-off, and the rules for
//! sending a message again.
//!
//! A [`Sender`] sends each [`Outgoing`] message as one message on its own stream of the
//! pooled connection to one listener; what happens meanwhile (dialing, waiting to retry,
//! bytes going out) is told to an [`Observer`], which is how the command line shows its
//! spinners and bars. Nothing here prints.
//!
//! What could go wrong, and how it is prevented:
//! - *Retrying on the connection that just failed*: a message that failed on its
//!   connection evicts that connection from the pool and closes it before the next
//!   attempt, which asks the pool anew and so dials a fresh one.
//! - *A file stored twice after a retry*: every attempt of one message carries the same
//!   message id; the receiver's duplicate check acks a second copy without storing it.
//! - *Stdin sent twice, or half of it*: a stream of unknown length (stdin, a pipe) is read
//!   once. Only connecting is retried for it; once its bytes started going, a lost
//!   connection fails it as a [`SendError::Source`] error ("cannot be replayed").
//! - *A retry that sends a large file whole again*: a regular file's header carries a
//!   resume offer (`transfer::resume`), so the next attempt (or a later run of the
//!   same file by the same identity) sends only what the listener does not hold.
//! - *A retry that outlives the budget*: each connect is bounded by the budget's end
//!   ([`Attempt::within`]); a connection failure still worth retrying when the budget
//!   ran out becomes [`ConnectError::GaveUp`], naming the whole wait, not the last slice.
//! - *A retry against a listener that said no*: a refusal is never retried, and
//!   [`SendError::is_final`] tells the caller when the listener takes nothing more, so
//!   the remaining messages are not tried either.
//! - *A close that never reaches the peer after an interrupt*: see [`close`].

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::digest::{Algorithm, Digest};
use super::endpoint::{canonical, ConnectError, Endpoint};
use super::framing::{self, Header, Kind, MessageId};
use super::pool::{Pool, Pooled};
use super::retry::{Attempt, Backoff, Retry, Retryable};
use super::tls::{Fingerprint, TrustRules};
use super::transfer::{resume, send_message, Mode, SendError, Sent, Source};

/// Opens a stream of unknown length: called once, on a blocking thread, when the
/// connection is up (a FIFO's open waits for its writer).
pub type Open = Box<dyn FnOnce() -> std::io::Result<Box<dyn Read + Send>> + Send>;

/// One message to send.
pub enum Outgoing {
    /// A regular file of known length, re-read from the start on every attempt.
    File {
        /// Where it is read from.
        path: PathBuf,
        /// The name the receiver stores it under.
        name: String,
        /// Its length, announced in the header.
        len: u64,
    },
    /// A stream of unknown length (stdin, a pipe), read once: never sent again.
    Stream {
        /// The name the receiver stores it under.
        name: String,
        /// Opens the stream once the connection is up.
        open: Open,
    },
    /// A short text (at most [`framing::MAX_TEXT_LEN`]) shown at the listener, not stored.
    Text(String),
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outgoing::File { path, name, len } => f
                .debug_struct("File")
                .field("path", path)
                .field("name", name)
                .field("len", len)
                .finish(),
            Outgoing::Stream { name, .. } => f.debug_struct("Stream").field("name", name).finish(),
            Outgoing::Text(text) => f.debug_tuple("Text").field(&text.len()).finish(),
        }
    }
}

impl Outgoing {
    /// The name the message goes under (`text` for a text).
    pub fn name(&self) -> &str {
        match self {
            Outgoing::File { name, .. } | Outgoing::Stream { name, .. } => name,
            Outgoing::Text(_) => "text",
        }
    }
}

/// Something an observer shows for a while (a spinner): dropped when that while ends.
pub type Shown = Option<Box<dyn std::any::Any + Send + Sync>>;

/// Told what a [`Sender`] is doing, to show it; every method has a silent default.
pub trait Observer: Sync {
    /// A dial to `addr` started and did not complete at once; `attempt` is 0 for the
    /// first. What is returned is dropped when the dial ends.
    fn connecting(&self, addr: SocketAddr, attempt: u32) -> Shown {
        let _ = (addr, attempt);
        None
    }

    /// An attempt of message `name` failed and the next follows after `retry.delay`.
    /// What is returned is dropped when the next attempt starts.
    fn retrying(&self, name: &str, retry: Retry<'_, SendError>) -> Shown {
        let _ = (name, retry);
        None
    }

    /// The payload of `name` (of `length` bytes, if known) starts going; the returned
    /// function is called with the size of each chunk handed to the stream and dropped
    /// when the attempt ends. Not called for texts.
    fn sending(&self, name: &str, length: Option<u64>) -> Box<dyn Fn(u64) + Send + Sync> {
        let _ = (name, length);
        Box::new(|_| {})
    }
}

/// The silent observer.
impl Observer for () {}

/// What a message that arrived produced.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// The message id every attempt carried.
    pub id: MessageId,
    /// What the receiver acknowledged (or, unidirectional, what the transport delivered).
    pub sent: Sent,
    /// Whether the connection that carried it existed before this message.
    pub reused: bool,
    /// The fingerprint the peer showed.
    pub peer: Option<Fingerprint>,
    /// How many attempts failed before the one that worked.
    pub retries: u32,
}

/// Sends messages to one listener: its address, the rules it must pass, the pool and
/// back-off that reach it, the stream mode, the digest algorithm, whether to skip
/// content it holds, and whether files are offered for resume.
#[derive(Debug, Clone)]
pub struct Sender {
    pool: Pool,
    backoff: Backoff,
    addr: SocketAddr,
    rules: TrustRules,
    mode: Mode,
    digest: Algorithm,
    skip_same: bool,
    resume: bool,
}

impl Sender {
    /// A sender to `addr`, whose peer must pass `rules`, over connections from `pool`;
    /// the default back-off, bidirectional streams, BLAKE3, no skipping, resume.
    pub fn new(pool: Pool, addr: SocketAddr, rules: TrustRules) -> Self {
        Self {
            pool,
            backoff: Backoff::default(),
            addr,
            rules,
            mode: Mode::Bidi,
            digest: Algorithm::default(),
            skip_same: false,
            resume: true,
        }
    }

    /// Retries by `backoff`.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sends on streams of `mode`.
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Messages are hashed with `digest` at both ends. SHA-256 goes in version 1
    /// headers, which listeners of every version take; any other algorithm in version
    /// 2, which older listeners refuse ([`SendError::OlderPeer`]).
    pub fn with_digest(mut self, digest: Algorithm) -> Self {
        self.digest = digest;
        self
    }

    /// Files go with their digest, computed before sending, and are not sent again
    /// where the listener holds that content under the name (`--skip-same`).
    pub fn with_skip_same(mut self, skip_same: bool) -> Self {
        self.skip_same = skip_same;
        self
    }

    /// Whether files of at least 1 MiB are offered for resume (`transfer::resume`; the
    /// default): without, no offer is made, the listener keeps no partial of them, and
    /// every try sends the whole file (`--no-resume`).
    pub fn with_resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }

    /// The listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The rules the listener must pass.
    pub fn rules(&self) -> &TrustRules {
        &self.rules
    }

    /// The stream mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Sends one message, retrying as the module doc says; `observer` hears about the
    /// dialing, the waits and the bytes.
    ///
    /// Cancel-safe in effect: a dropped future resets the stream it had open, so the
    /// receiver stores nothing of it.
    pub async fn send(
        &self,
        message: Outgoing,
        observer: &dyn Observer,
    ) -> Result<Delivered, SendError> {
        let id = MessageId::random();
        let started = Instant::now();
        let skip_same = match &message {
            Outgoing::File { path, .. } if self.skip_same => {
                Some(content_digest(self.digest, path).await?.bytes)
            }
            _ => None,
        };
        // A regular file of some size can be resumed where a broken-off try ended
        // (`transfer::resume`); stdin cannot, and a unidirectional stream has no way
        // back for the receiver's answer.
        let resume = match &message {
            // Below the threshold there is nothing to read: no thread hand-off per file.
            Outgoing::File { path, len, .. }
                if self.resume && self.mode == Mode::Bidi && *len >= resume::RESUME_FROM =>
            {
                let (path, len, digest) = (path.clone(), *len, self.digest);
                tokio::task::spawn_blocking(move || resume::offer_for(&path, len, digest))
                    .await
                    .map_err(|e| SendError::Source(std::io::Error::other(e)))?
                    .map_err(SendError::Source)?
            }
            _ => None,
        };
        let header = Header {
            kind: match message {
                Outgoing::Text(_) => Kind::Text,
                _ => Kind::Message,
            },
            id,
            length: match &message {
                Outgoing::File { len, .. } => Some(*len),
                Outgoing::Text(text) => Some(text.len() as u64),
                Outgoing::Stream { .. } => None,
            },
            name: match &message {
                Outgoing::Text(_) => String::new(),
                message => message.name().to_string(),
            },
            digest: match self.digest {
                Algorithm::Sha256 => None,
                algorithm => Some(algorithm),
            },
            skip_same,
            resume,
        };
        let name = message.name().to_string();
        // Between attempts: what the observer shows of the wait.
        let waiting = Mutex::new(None::<Box<dyn std::any::Any + Send + Sync>>);
        let on_retry = |retry: Retry<'_, SendError>| {
            *waiting.lock().unwrap_or_else(|p| p.into_inner()) = observer.retrying(&name, retry);
        };
        let stop_waiting = || waiting.lock().unwrap_or_else(|p| p.into_inner()).take();

        let (result, retries) = match message {
            Outgoing::Text(text) => {
                self.backoff
                    .run_observed(
                        |attempt| {
                            let header = &header;
                            let text = text.clone();
                            async move {
                                stop_waiting();
                                let pooled = self.connect(attempt, observer).await?;
                                let text = Source::pipe(std::io::Cursor::new(text.into_bytes()));
                                self.finish(&pooled, header, text, &|_| {}).await
                            }
                        },
                        on_retry,
                    )
                    .await
            }
            Outgoing::File { path, .. } => {
                self.backoff
                    .run_observed(
                        |attempt| {
                            let header = &header;
                            let path = &path;
                            async move {
                                stop_waiting();
                                let pooled = self.connect(attempt, observer).await?;
                                let file = std::fs::File::open(path).map_err(|e| {
                                    SendError::Source(std::io::Error::new(
                                        e.kind(),
                                        format!("cannot open {}: {e}", path.display()),
                                    ))
                                })?;
                                tracing::debug!(
                                    attempt = attempt.number,
                                    reused = pooled.reused,
                                    "sending"
                                );
                                let progress = observer.sending(&header.name, header.length);
                                self.finish(&pooled, header, Source::File(file), &*progress)
                                    .await
                            }
                        },
                        on_retry,
                    )
                    .await
            }
            Outgoing::Stream { open, .. } => {
                let (pooled, retries) = self
                    .backoff
                    .run_observed(
                        |attempt| {
                            stop_waiting();
                            self.connect(attempt, observer)
                        },
                        |retry| {
                            on_retry(Retry {
                                failed: retry.failed,
                                delay: retry.delay,
                                cause: &SendError::Connection(retry.cause.clone()),
                            })
                        },
                    )
                    .await;
                stop_waiting();
                let pooled = pooled
                    .map_err(|e| gave_up(self.addr, started, retries, SendError::Connection(e)))?;
                let reader = tokio::task::spawn_blocking(open)
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|r| r)
                    .map_err(SendError::Source)?;
                let progress = observer.sending(&header.name, header.length);
                let result = self
                    .finish(&pooled, &header, Source::pipe(reader), &*progress)
                    .await
                    .map_err(|e| match e {
                        // Some of the stream may be gone: it cannot be sent again.
                        SendError::Connection(c) if c.is_retryable() => {
                            SendError::Source(std::io::Error::other(format!(
                                "{c}; stdin cannot be replayed, the transfer is lost"
                            )))
                        }
                        e => e,
                    });
                (result, retries)
            }
        };
        stop_waiting();
        let (sent, reused, peer) = result.map_err(|e| gave_up(self.addr, started, retries, e))?;
        Ok(Delivered {
            id,
            sent,
            reused,
            peer,
            retries,
        })
    }

    /// The pooled connection to the listener, bounded by the budget; the observer hears
    /// of a dial that does not complete at once.
    async fn connect(
        &self,
        attempt: Attempt,
        observer: &dyn Observer,
    ) -> Result<Pooled, ConnectError> {
        let addr = self.addr;
        let get = attempt.within(self.pool.get(addr, &self.rules), |timeout| {
            ConnectError::Timeout { addr, timeout }
        });
        tokio::pin!(get);
        if let Some(ready) = futures_util::FutureExt::now_or_never(&mut get) {
            return ready;
        }
        let _shown = observer.connecting(addr, attempt.number);
        get.await
    }

    /// Sends on a pooled connection; on a connection failure, evicts that connection so
    /// the next attempt dials a fresh one.
    async fn finish(
        &self,
        pooled: &Pooled,
        header: &Header,
        source: Source,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(Sent, bool, Option<Fingerprint>), SendError> {
        let peer = Fingerprint::of_peer(&pooled.conn);
        match send_message(&pooled.conn, header, source, self.mode, progress).await {
            Ok(sent) => Ok((sent, pooled.reused, peer)),
            Err(e) => {
                if matches!(e, SendError::Connection(_)) {
                    self.pool.evict(&pooled.conn);
                    pooled.conn.close(framing::close::CANCELLED, b"retrying");
                }
                Err(e)
            }
        }
    }

    /// Closes every connection of the sender's pool, see [`close`].
    pub async fn close(&self, interrupted: bool) {
        close(self.pool.endpoint(), Some(&self.pool), interrupted).await;
    }
}

impl SendError {
    /// Whether the listener said it takes nothing more: it refused with
    /// [`ErrorCode::NotAccepting`](framing::ErrorCode::NotAccepting) or closed the
    /// connection on purpose (done, or stopped). Sending more is pointless.
    pub fn is_final(&self) -> bool {
        match self {
            SendError::Refused(code) => *code == framing::ErrorCode::NotAccepting.varint(),
            SendError::Connection(ConnectError::Closed { .. }) => true,
            _ => false,
        }
    }
}

/// Closes every connection of `endpoint`: the acks proved delivery, so tell the peer and
/// go without waiting out a drain period it does not need (3 PTOs, 80 ms on loopback). A
/// few milliseconds let the close frame leave; if it is lost the peer's idle timeout
/// cleans up, and nothing is lost either way.
///
/// `interrupted` (Ctrl-C), the streams were reset just now and what they had sent may
/// still fill the congestion window; quinn-proto 0.11.19 sends no CONNECTION_CLOSE past a
/// full window (quinn-rs/quinn#2785), and the listener would wait out its idle timeout
/// before it knew. The peer's acks drain the window within a round trip plus its ack
/// delay, so the close waits that long first (at most a second) for the connections of
/// `pool`.
pub async fn close(endpoint: &Endpoint, pool: Option<&Pool>, interrupted: bool) {
    let (code, reason): (_, &[u8]) = if interrupted {
        (framing::close::SHUTDOWN, b"interrupted")
    } else {
        (framing::close::DONE, b"done")
    };
    if interrupted {
        let drain = pool
            .map(|pool| pool.live())
            .unwrap_or_default()
            .iter()
            .map(|conn| conn.rtt() * 2 + Duration::from_millis(25))
            .max();
        if let Some(drain) = drain {
            tokio::time::sleep(drain.min(Duration::from_secs(1))).await;
        }
    }
    endpoint
        .shutdown(code, reason, Duration::from_millis(5))
        .await;
}

/// `--skip-same`: the digest of a file, read on a blocking thread before it is sent.
async fn content_digest(algorithm: Algorithm, path: &Path) -> Result<Digest, SendError> {
    let path = path.to_path_buf();
    let shown_path = path.display().to_string();
    tokio::task::spawn_blocking(move || algorithm.file_digest(&path))
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(|e| {
            SendError::Source(std::io::Error::new(
                e.kind(),
                format!("cannot read {shown_path}: {e}"),
            ))
        })
}

/// A connection failure that was still worth retrying when the budget ran out becomes
/// "no answer from ADDR after 30s, 12 attempts": the whole wait, not the last slice.
fn gave_up(addr: SocketAddr, started: Instant, retries: u32, e: SendError) -> SendError {
    match e {
        SendError::Connection(last) if last.is_retryable() => {
            SendError::Connection(ConnectError::GaveUp {
                addr: canonical(addr),
                after: started.elapsed(),
                attempts: retries + 1,
                last: Box::new(last),
            })
        }
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::time::Duration;

    use super::*;
    use crate::net::testing::{client_endpoint, receiving_listener};

    /// A file and a stream sent through the sender to an in-process receiver come back
    /// acked with the receiver's byte count, hash and name, on one pooled connection.
    #[tokio::test]
    async fn sends_a_file_and_a_stream_and_reads_the_ack() {
        let (_listener, addr, mut received) = receiving_listener();
        let pool = Pool::new(client_endpoint(Duration::from_secs(5)));
        let sender = Sender::new(pool.clone(), addr, TrustRules::any());

        let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&payload).unwrap();
        let message = Outgoing::File {
            path: file.path().to_path_buf(),
            name: "data.bin".into(),
            len: payload.len() as u64,
        };
        let done = sender.send(message, &()).await.unwrap();
        assert_eq!(done.sent.bytes, payload.len() as u64);
        assert_eq!(done.sent.digest, Algorithm::Blake3.digest(&payload));
        assert_eq!(done.sent.stored_as.as_deref(), Some("data.bin"));
        assert!(!done.sent.duplicate && !done.reused);
        assert_eq!(done.retries, 0);
        assert!(done.peer.is_some());
        let (header, bytes) = received.recv().await.unwrap();
        assert_eq!((header.name.as_str(), header.id), ("data.bin", done.id));
        assert_eq!(bytes, payload);

        let message = Outgoing::Stream {
            name: "stdin".into(),
            open: Box::new(|| Ok(Box::new(std::io::Cursor::new(b"piped".to_vec())) as _)),
        };
        let done = sender.send(message, &()).await.unwrap();
        assert_eq!(done.sent.bytes, 5);
        assert!(
            done.reused,
            "the second message rides the pooled connection"
        );
        let (header, bytes) = received.recv().await.unwrap();
        assert_eq!((header.name.as_str(), header.length), ("stdin", None));
        assert_eq!(bytes, b"piped");
        sender.close(false).await;
    }

    /// The listener's "no more" (NotAccepting, or a deliberate close) ends a batch; a
    /// lost connection or another refusal does not.
    #[test]
    fn final_refusals() {
        let refused = |code: framing::ErrorCode| SendError::Refused(code.varint());
        assert!(refused(framing::ErrorCode::NotAccepting).is_final());
        assert!(!refused(framing::ErrorCode::TooLarge).is_final());
        assert!(!SendError::Source(std::io::Error::other("x")).is_final());
    }
}
