//! The accept loop and routing by stream kind: the one place a stream's header is read
//! and the stream handed to what serves its kind.
//!
//! Every connection gets a task and every stream on it another, so one slow or hostile
//! stream never holds up the rest. A header must arrive within
//! [`ServerConfig::header_timeout`](super::ServerConfig::header_timeout); a bad header,
//! or none in time, resets that stream only (the warnings throttled, see
//! [`Throttle`]). Probes go to the [`ProbeService`] (refused as unsupported without
//! one), the benchmark kinds to [`bench::serve`], messages and texts to the caller's
//! [`Handler`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use quinn::{RecvStream, SendStream};
use tracing::{debug, warn, Instrument};

use super::{admission, throttled, HandshakeError, Incoming, Server, Throttle};
use crate::net::bench;
use crate::net::framing::{self, ErrorCode, Header, Kind, ReadError};
use crate::net::introducer::IntroducerService;
use crate::net::probe::ProbeService;
use crate::net::tls::Fingerprint;
use crate::net::transfer;

/// What a server does with messages (and texts), and how its connections end.
///
/// Every method but [`Handler::message`] has a default that suits a server without
/// a run of its own to end (benchmarks).
pub trait Handler: Send + Sync + 'static {
    /// Serves one message or text stream whose header has arrived. Resetting or
    /// acknowledging it is the handler's.
    fn message(&self, stream: Stream) -> impl Future<Output = ()> + Send;

    /// A connection attempt that gave no connection. Logged at debug level by default
    /// (the error may carry text from the peer: escape it before showing it).
    fn handshake_failed(&self, remote: SocketAddr, error: HandshakeError) {
        debug!(%remote, cause = %error.to_string().escape_debug(), "handshake did not complete");
    }

    /// Resolves when every connection should stop taking streams (the run is over).
    /// Called once per connection; the future is kept and polled between streams until
    /// it resolves. Never, by default.
    fn stopping(&self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }

    /// After [`Handler::stopping`] resolved, before the connection is let go.
    fn on_stop(&self, conn: &quinn::Connection) -> impl Future<Output = ()> + Send {
        let _ = conn;
        async {}
    }

    /// The connection takes no more streams: whether to wait for its streams and then
    /// call [`Handler::finished`] (`listen --once`: the sender's run ends with its
    /// connection). Otherwise its streams are left to end on their own.
    fn owns(&self, conn: &quinn::Connection) -> bool {
        let _ = conn;
        false
    }

    /// The connection [`owns`](Handler::owns) claimed has ended and so have its streams.
    fn finished(&self, conn: &quinn::Connection) {
        let _ = conn;
    }
}

/// A shared handler: the server and its owner (to read its state afterwards) hold the
/// same one.
impl<H: Handler> Handler for std::sync::Arc<H> {
    fn message(&self, stream: Stream) -> impl Future<Output = ()> + Send {
        (**self).message(stream)
    }

    fn handshake_failed(&self, remote: SocketAddr, error: HandshakeError) {
        (**self).handshake_failed(remote, error)
    }

    fn stopping(&self) -> impl Future<Output = ()> + Send {
        (**self).stopping()
    }

    fn on_stop(&self, conn: &quinn::Connection) -> impl Future<Output = ()> + Send {
        (**self).on_stop(conn)
    }

    fn owns(&self, conn: &quinn::Connection) -> bool {
        (**self).owns(conn)
    }

    fn finished(&self, conn: &quinn::Connection) {
        (**self).finished(conn)
    }
}

/// A message or text stream whose header has arrived, and who sent it.
pub struct Stream {
    /// The header.
    pub header: Header,
    /// Payload bytes read with the header.
    pub first: Bytes,
    /// The answering half (`None` on a unidirectional stream: no ack).
    pub send: Option<SendStream>,
    /// The payload.
    pub recv: RecvStream,
    /// Where the connection comes from.
    pub peer: SocketAddr,
    /// The sender's fingerprint.
    pub fingerprint: Option<Fingerprint>,
    /// The connection's quinn stable id: one `send` run is one connection.
    pub conn_id: usize,
}

/// What each kind of stream goes to.
pub struct Router<H> {
    handler: H,
    probe: Option<ProbeService>,
    introducer: Option<IntroducerService>,
    raw_uni: bool,
    header_timeout: Duration,
    /// Streams reset for a bad header, and for none in time (logged at warn level).
    bad_headers: Mutex<Throttle>,
    header_timeouts: Mutex<Throttle>,
}

impl<H: Handler> Router<H> {
    /// Messages and texts to `handler`, benchmark kinds served, probes refused.
    pub fn new(handler: H) -> Self {
        Self {
            handler,
            probe: None,
            introducer: None,
            raw_uni: false,
            header_timeout: super::ServerConfig::default().header_timeout,
            bad_headers: Mutex::default(),
            header_timeouts: Mutex::default(),
        }
    }

    /// Probes to `probe`.
    pub fn probe(mut self, probe: ProbeService) -> Self {
        self.probe = Some(probe);
        self
    }

    /// Introduction streams (registrations, introductions) to `introducer`
    /// (`listen --introduce`); without one they are refused as unsupported.
    pub fn introducer(mut self, introducer: IntroducerService) -> Self {
        self.introducer = Some(introducer);
        self
    }

    /// Unidirectional streams carry no header: the raw benchmark baseline, counted
    /// and thrown away (`bench::raw_receive`). Only for in-process benchmarks.
    pub fn raw_uni(mut self) -> Self {
        self.raw_uni = true;
        self
    }

    async fn serve_connection(self: Arc<Self>, incoming: Incoming) {
        let remote = incoming.remote();
        let connected = match incoming.accept().await {
            Ok(connected) => connected,
            Err(e) => return self.handler.handshake_failed(remote, e),
        };
        let conn = connected.conn.clone();
        let (peer, peer_fp) = (connected.remote, connected.fingerprint);
        debug!(fingerprint = ?peer_fp, "connected");
        // Streams are tracked, not joined: a count to wait on when the handler owns the
        // connection, and nothing to reap (a JoinSet's lock and set per stream cost
        // about a tenth of a small message's time in process).
        let streams = tokio_util::task::TaskTracker::new();
        // Made once, not per stream: each is a waiter registered under a lock, and
        // registering and dropping two per stream cost a round trip about a microsecond.
        let evicted = connected.slot.evicted().clone().cancelled_owned();
        let stopping = self.handler.stopping();
        tokio::pin!(evicted, stopping);
        loop {
            let (send, recv) = tokio::select! {
                bi = conn.accept_bi() => match bi {
                    Ok((s, r)) => (Some(s), r),
                    Err(e) => { debug!(reason = %e.to_string().escape_debug(), "connection closed"); break; }
                },
                uni = conn.accept_uni() => match uni {
                    Ok(r) => (None, r),
                    Err(e) => { debug!(reason = %e.to_string().escape_debug(), "connection closed"); break; }
                },
                _ = &mut evicted => {
                    // Idle while a limit was full: its place went to a newcomer.
                    conn.close(framing::close::REFUSED, admission::EVICTED);
                    break;
                }
                _ = &mut stopping => {
                    self.handler.on_stop(&conn).await;
                    break;
                }
            };
            // While a stream is open the connection is not idle: never evicted.
            let open = connected.slot.stream();
            if self.raw_uni && send.is_none() {
                streams.spawn(async move {
                    let _open = open;
                    bench::raw_receive(recv).await;
                });
                continue;
            }
            let router = self.clone();
            let conn = conn.clone();
            streams.spawn(
                async move {
                    let _open = open;
                    router
                        .serve_stream(send, recv, (peer, peer_fp, &conn))
                        .await
                }
                .in_current_span(),
            );
        }
        if self.handler.owns(&conn) {
            streams.close();
            streams.wait().await;
            self.handler.finished(&conn);
        }
        // Otherwise the streams end on their own when the connection does.
        // The admission slot goes back now.
        drop(connected);
    }

    async fn serve_stream(
        &self,
        mut send: Option<SendStream>,
        mut recv: RecvStream,
        (peer, fingerprint, conn): (SocketAddr, Option<Fingerprint>, &quinn::Connection),
    ) {
        let conn_id = conn.stable_id();
        let deadline = self.header_timeout;
        let (header, first) =
            match tokio::time::timeout(deadline, framing::read_header(&mut recv)).await {
                Ok(Ok(read)) => read,
                Ok(Err(ReadError::Frame(e))) => {
                    if let Some(more) = throttled(&self.bad_headers) {
                        warn!(%peer, cause = %e, more, "bad stream header; resetting the stream");
                    }
                    transfer::refuse(&mut recv, send.as_mut(), e.code());
                    return;
                }
                Ok(Err(ReadError::Stream(e))) => {
                    debug!(cause = %e, "stream ended before its header");
                    return;
                }
                Err(_) => {
                    if let Some(more) = throttled(&self.header_timeouts) {
                        warn!(
                            %peer,
                            more,
                            "no header within {}; resetting the stream",
                            crate::net::retry::rounded(deadline)
                        );
                    }
                    transfer::refuse(&mut recv, send.as_mut(), ErrorCode::HeaderTimeout);
                    return;
                }
            };
        match header.kind {
            Kind::Probe => match &self.probe {
                Some(probe) => {
                    probe
                        .serve(&header, first, send, recv, peer, fingerprint)
                        .await
                }
                None => transfer::refuse(&mut recv, send.as_mut(), ErrorCode::Unsupported),
            },
            Kind::Introduce => match &self.introducer {
                Some(introducer) => {
                    introducer
                        .serve(&header, first, (send, recv), conn, fingerprint)
                        .await
                }
                None => transfer::refuse(&mut recv, send.as_mut(), ErrorCode::Unsupported),
            },
            Kind::Discard | Kind::DiscardHashed | Kind::Request => {
                // `qp2p bench`: measured, thrown away, never written.
                if let Err(e) = bench::serve(&header, first, send, recv).await {
                    debug!(cause = %e, "bench stream failed");
                }
            }
            _ => {
                let stream = Stream {
                    header,
                    first,
                    send,
                    recv,
                    peer,
                    fingerprint,
                    conn_id,
                };
                self.handler.message(stream).await
            }
        }
    }
}

impl Server {
    /// Serves until `stop` resolves or the endpoint closes: admits connections
    /// ([`Server::accept`]), each in a task of its own (a span `conn` with
    /// `remote`), its streams routed by `router`. Returns at once when stopped;
    /// connections already served end on their own (or with the endpoint).
    pub async fn run<H: Handler>(
        &self,
        mut router: Router<H>,
        stop: impl Future<Output = ()>,
    ) -> Arc<Router<H>> {
        router.header_timeout = self.config.header_timeout;
        let router = Arc::new(router);
        tokio::pin!(stop);
        loop {
            let incoming = tokio::select! {
                incoming = self.accept() => incoming,
                _ = &mut stop => break,
            };
            let Some(incoming) = incoming else { break };
            let remote = incoming.remote();
            let router = router.clone();
            tokio::spawn(
                router
                    .serve_connection(incoming)
                    .instrument(tracing::info_span!("conn", remote = %remote)),
            );
        }
        router
    }
}

impl<H> Router<H> {
    /// The message handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }
}
