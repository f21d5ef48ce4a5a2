//! qp2p: encrypted peer-to-peer transfer over QUIC.
//!
//! # Example
//!
//! A receiver that stores what it is sent in a directory, and a sender that sends it a
//! file: both ends authenticate each other (the sender pins the receiver's
//! fingerprint), the sender retries as the `qp2p` command does, and the receiver's
//! acknowledgement carries the bytes, digest and name it stored. `examples/` has each
//! half as a program.
//!
//! ```
//! use std::sync::Arc;
//! use qp2p::{Endpoint, Handler, Identity, Limits, NoProgress, Outgoing, Pool, Quota};
//! use qp2p::{Receiver, Router, Sender, Server, ServerConfig, Sink, Stream};
//! use qp2p::{TransportOptions, TrustRules};
//!
//! struct Inbox(Receiver);
//! impl Handler for Inbox {
//!     async fn message(&self, mut stream: Stream) {
//!         self.0.serve(&mut stream, &NoProgress).await;
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let inbox = tempfile::tempdir()?;
//! # let file = inbox.path().join("outbox.txt");
//! # std::fs::write(&file, b"hello")?;
//! // The receiver, on any free port of 127.0.0.1.
//! let identity = Arc::new(Identity::ephemeral()?);
//! let at = "127.0.0.1:0".parse()?;
//! let endpoint = Endpoint::bind(at, identity, TransportOptions::default(), Some(TrustRules::any()))?;
//! let (addr, fingerprint) = (endpoint.local_addr()?, endpoint.fingerprint());
//! let store = qp2p::Store::new(&inbox.path().join("in"), false)?;
//! let receiver = Receiver::new(Sink::Dir(store), Limits::default(), Quota::default());
//! let server = Server::new(endpoint, ServerConfig::default());
//! let router = Router::new(Inbox(receiver));
//! tokio::spawn(async move { server.run(router, std::future::pending()).await });
//!
//! // The sender: only the peer with that fingerprint will do.
//! let client = Endpoint::client(Arc::new(Identity::ephemeral()?), TransportOptions::default())?;
//! let sender = Sender::new(Pool::new(client), addr, TrustRules::pinned_to(fingerprint));
//! let message = Outgoing::File { path: file, name: "hello.txt".into(), len: 5 };
//! let delivered = sender.send(message, &()).await?;
//! assert_eq!(delivered.sent.stored_as.as_deref(), Some("hello.txt"));
//! assert_eq!(std::fs::read(inbox.path().join("in/hello.txt"))?, b"hello");
//! sender.close(false).await;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! The types most programs need are re-exported here, flat; the modules hold the rest.
//!
//! - [`net`]: the transport. The QUIC endpoint, TLS identities and peer verification,
//!   the server side (admission, the handshake deadline, routing by stream kind), the
//!   connection pool, jittered retries, racing, the wire framing, one message on one
//!   stream, the message sender and receiver, the reachability probe and UPnP. Typed
//!   errors; no printing.
//! - [`store`]: how received files land in a directory: safe names, invisible partial
//!   files, no silent overwrite.
//!
//! The command line (`src/main.rs` and its `cli`, `output` and `error` modules) is the
//! binary's, not part of this library: it turns flags into the configurations above and
//! events into lines, bars and JSON. Built with `default-features = false`, the crate
//! compiles none of the command line's dependencies.

#![warn(missing_docs)]

pub mod net;
pub mod store;

// The properties the fuzz targets in `fuzz/` check, shared with the regression test
// that replays the committed corpus: public for them, not part of the API.
#[doc(hidden)]
pub mod fuzzing;

// Endpoint, identity and trust.
pub use net::endpoint::{
    Congestion, ConnectError, Endpoint, EndpointError, Rejection, TransportOptions,
};
pub use net::tls::{CaTrust, Fingerprint, Identity, Refusal, TrustRules};
// Dialing: addresses and tickets, racing, the pool, retries.
pub use net::addr::{Target, Ticket};
pub use net::pool::Pool;
pub use net::race::race;
pub use net::retry::Backoff;
// The server side.
pub use net::server::{
    Connected, Handler, HandshakeError, Incoming, Router, Server, ServerConfig, Stream,
};
// Messages: the sender, the receiver, what one message carries.
pub use net::digest::{Algorithm, Digest};
pub use net::pipeline::{send_all, Window};
pub use net::receiver::{NoProgress, Outcome, Quota, Receiver, Sink};
pub use net::sender::{Delivered, Observer, Outgoing, Sender};
pub use net::transfer::{Limits, SendError};
// Reachability, and through NAT: introductions, the punch, the relay.
pub use net::introducer::{
    keep_registered, reach, IntroducerService, PeerPath, Reached, Relay, RelayLimits,
};
pub use net::probe::client::Verdict;
pub use store::Store;
