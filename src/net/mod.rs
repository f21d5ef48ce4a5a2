//! The transport: everything qp2p knows about QUIC, TLS and the wire.
//!
//! The command-line layer (`cli`) never touches quinn or rustls directly; it asks this
//! module for an endpoint, a pooled connection, a retried operation, or a message sent
//! or received. Each file is one concern:
//!
//! | file | what it does |
//! | --- | --- |
//! | [`endpoint`] | the one quinn endpoint per process (client and server), its socket and transport settings, connect with a timeout, error classification |
//! | `socket` (internal) | the UDP socket under quinn: batches (GSO) sized to what the kernel takes, so packets can grow to 64 KiB where the path allows |
//! | [`tls`] | identities (persistent, ephemeral or CA-issued), fingerprints, signing requests, the one peer verifier whose rules (pins, allow-lists, CA trust) must all hold |
//! | [`race`] | dialing several addresses at once, the first handshake wins, the rest cancelled |
//! | [`pool`] | connections keyed by peer address and the trust rules they were verified under, dials coalesced, dead ones evicted |
//! | [`retry`] | exponential back-off with jitter for the errors worth retrying |
//! | [`digest`] | the digest algorithms (BLAKE3 by default, SHA-256 on request), their names on the wire and in reports, hashing a file |
//! | [`framing`] | the bytes of the protocol: stream header, ack, error codes (PROTOCOL.md) |
//! | [`receiver`] | the receive rules: duplicate ids, ack then stop, the free-space refusal, `--skip-same`, the `--once`/`--count` quota |
//! | [`transfer`] | one message on one stream, both halves, streamed and hashed |
//! | [`sender`] | the message sender: a message to one listener with retry, pool eviction, stdin read once, skip-same digests, the close after an interrupt |
//! | [`pipeline`] | many messages in flight at once through one sender, within a window of messages and of memory; results in the order they complete |
//! | [`bench`](mod@bench) | the benchmark stream kinds (discard, round trip) and the raw baseline |
//! | [`addr`] | addresses and tickets as users type them |
//! | [`upnp`] | UPnP IGD: gateway discovery, UDP port mappings with a lease, kept alive and removed |
//! | [`server`] | the server side: admission (connection limits, Retry past half), the handshake deadline, one accept loop routing each stream by kind |
//! | [`introducer`] | through NAT on both ends: registration with an introducer from the listening socket, introductions, the punch order, and every way of a ticket raced |
//! | [`probe`] | the reachability probe: observed address, connect-back from a fresh socket with a nonce; its client half (`probe::client`) gives typed verdicts |
//!
//! Errors inside this module are typed (`thiserror`) so callers can branch on the kind:
//! retry needs timeout vs refusal, exit codes need identity rejection vs lost
//! connection.

pub mod addr;
pub mod bench;
pub mod digest;
pub mod endpoint;
pub mod framing;
pub mod introducer;
pub mod pipeline;
pub mod pool;
pub mod probe;
pub mod race;
pub mod receiver;
pub mod retry;
pub mod sender;
pub mod server;
pub(crate) mod socket;
#[cfg(test)]
mod testing;
pub mod tls;
pub mod transfer;
pub mod upnp;
