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
//! use qp2p::net::receiver::{NoProgress, Quota, Receiver, Target};
//! use qp2p::net::server::{Handler, Router, Stream};
//! use qp2p::net::transfer::Limits;
//! use qp2p::net::{Endpoint, Identity, Outgoing, Pool, Sender, Server, ServerConfig};
//! use qp2p::net::{TransportOptions, TrustRules};
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
//! let store = qp2p::store::Store::new(&inbox.path().join("in"), false)?;
//! let receiver = Receiver::new(Target::Dir(store), Limits::default(), Quota::default());
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
//! - [`net`]: the transport. The QUIC endpoint, TLS identities and peer verification,
//!   the connection pool, jittered retries, the wire framing, and one message on one
//!   stream. Typed errors; no printing.
//! - [`cli`]: one file per subcommand, each an `Args` struct and an `async fn run`.
//!   `anyhow` errors with context.
//! - [`store`]: how received files land in a directory: safe names, invisible partial
//!   files, no silent overwrite.
//! - [`output`]: JSON events on stdout or human lines and progress bars on stderr.
//! - [`error`]: exit codes and how errors map to them.
//! - [`fuzzing`]: the properties the fuzz targets in `fuzz/` check, shared with the
//!   regression test that replays the committed corpus.
//!
//! The binary (`src/main.rs`) only parses the command line, sets up logging, the
//! runtime and signal handling, dispatches, and turns the result into an exit code.

#![warn(missing_docs)]

#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "cli")]
pub mod error;
pub mod fuzzing;
pub mod net;
#[cfg(feature = "cli")]
pub mod output;
pub mod store;
