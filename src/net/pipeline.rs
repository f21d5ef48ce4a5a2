//! Many messages in flight at once: a directory of thousands of small files sent at the
//! speed of the transport, not at one round trip (or one delayed ack) per file.
//!
//! [`send_all`] takes the messages lazily from an iterator and keeps several going at
//! once through one [`Sender`], each still one message on its own stream with its own
//! message id, retries, ack and digest. Results are handed to the caller as messages
//! complete, so their order is the order of completion, except that the first message
//! goes alone: it opens (or finds) the pooled connection, so the others ride it instead
//! of racing to dial, and it is always the first reported.
//!
//! What could go wrong, and how it is prevented:
//! - *Memory growing with the number of files*: the iterator is read only as room frees
//!   up; at most [`Window::messages`] messages are in flight, and what they may hold in
//!   memory at once (a small file's bytes, a large file's read-ahead: see [`cost`]) is
//!   bounded by [`Window::bytes`]. A message costlier than the whole budget still goes,
//!   alone.
//! - *More streams than the peer allows*: opening a stream waits for the peer's stream
//!   credit (`listen --max-streams`), so messages past the peer's limit wait without
//!   holding a file open or a byte read.
//! - *Going on after the listener said no, or the connection is gone*: the caller's
//!   `done` returns [`ControlFlow::Break`]; nothing more is taken from the iterator and
//!   the messages still in flight are dropped, which resets their streams (the receiver
//!   stores nothing of a reset stream), and handed back as not sent.
//! - *Stdin sent twice or interleaved*: a stream of unknown length is read once, by
//!   [`Sender::send`]'s rules; it is sent like any other message, one stream of its own.

use std::ops::ControlFlow;

use futures_util::stream::{FuturesUnordered, StreamExt};

use super::sender::{Delivered, Observer, Outgoing, Sender};
use super::transfer::SendError;

/// How much goes at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Messages in flight at most.
    pub messages: usize,
    /// What the messages in flight may hold in memory at once, in bytes ([`cost`]).
    pub bytes: u64,
}

impl Default for Window {
    /// 1024 messages, 8 MiB. A message in flight past its payload (waiting for its ack,
    /// or on a unidirectional stream for the transport's acknowledgement, which the peer
    /// may delay by its ack delay, 25 ms by default) holds no file and costs nothing but
    /// its place, so there is room for many of them.
    fn default() -> Self {
        Self {
            messages: 1024,
            bytes: 8 * 1024 * 1024,
        }
    }
}

/// What a message may hold in memory while it is sent: a small file's bytes (read and
/// written at once), a large file's or a stream's read-ahead (2 MiB), a text's bytes.
pub fn cost(message: &Outgoing) -> u64 {
    let read_ahead = super::transfer::READ_AHEAD;
    match message {
        Outgoing::File { len, .. } => (*len).min(read_ahead),
        Outgoing::Stream { .. } => read_ahead,
        Outgoing::Text(text) => text.len() as u64,
    }
}

/// Sends every message of `messages` with `sender`, up to `window` at once, the first
/// alone; `done` is called once per message, in the order they complete, with the key
/// it came with, its name and its result. When `done` breaks, no further message is
/// started and those in flight are cancelled; how many, with the one taken from
/// `messages` but not started, is returned (what is left in `messages` was never
/// taken).
///
/// Dropping the future cancels every message in flight (their streams are reset).
pub async fn send_all<K, I, F>(
    sender: &Sender,
    messages: I,
    window: Window,
    observer: &dyn Observer,
    mut done: F,
) -> usize
where
    I: Iterator<Item = (K, Outgoing)>,
    F: FnMut(K, String, Result<Delivered, SendError>) -> ControlFlow<()>,
{
    let mut messages = messages.peekable();
    let mut in_flight = FuturesUnordered::new();
    // Costs of the messages in flight.
    let mut held: u64 = 0;
    // The first message goes alone, to open the connection.
    let mut first = true;
    loop {
        while (!first || in_flight.is_empty()) && in_flight.len() < window.messages.max(1) {
            let Some((_, next)) = messages.peek() else {
                break;
            };
            let price = cost(next);
            if !in_flight.is_empty() && held + price > window.bytes {
                break;
            }
            let Some((key, message)) = messages.next() else {
                break;
            };
            held += price;
            let name = message.name().to_string();
            in_flight.push(async move {
                let result = sender.send(message, observer).await;
                (key, name, price, result)
            });
        }
        let Some((key, name, price, result)) = in_flight.next().await else {
            return 0;
        };
        first = false;
        held -= price;
        if done(key, name, result).is_break() {
            // Dropping the futures resets their streams. A message looked at but not
            // started is not sent either.
            return in_flight.len() + usize::from(messages.peek().is_some());
        }
    }
}
