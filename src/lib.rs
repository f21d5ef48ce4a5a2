//! qp2p: encrypted peer-to-peer transfer over QUIC.
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

#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "cli")]
pub mod error;
pub mod fuzzing;
pub mod net;
#[cfg(feature = "cli")]
pub mod output;
pub mod store;
