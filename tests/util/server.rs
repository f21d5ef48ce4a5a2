//! A listener in-process, through the library's public API (as mini-redis
//! `tests/server.rs` starts its server): for the suites that test the protocol and
//! need no binary (wire, probe, the server side of hardening, the library's own).
//!
//! [`InProcess`] runs a `qp2p::Server` on 127.0.0.1, port 0, on a thread of its own
//! with its own runtime, so that a test can drive it from any runtime or none. It
//! stores messages in a directory through `qp2p::Receiver` (the rules `qp2p listen`
//! applies), answers probes unless told not to, and reports what became of each message
//! as an event shaped like the binary's JSON (`received` with `name`, `digest` and its value,
//! `duplicate`, `message_id`, `bytes`; `failed` with `error`). Dropping it stops the
//! server and joins its thread.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use qp2p::net::framing::AckStatus;
use qp2p::net::probe::ProbeService;
use qp2p::{Endpoint, Handler, Identity, Limits, NoProgress, Outcome, Quota, Receiver, Router};
use qp2p::{Server, ServerConfig, Sink, Store, Stream, TransportOptions, TrustRules};
use serde_json::{json, Value};

/// How an [`InProcess`] server is set up.
pub struct Options {
    /// Answer probes (`listen` does unless `--no-probe`).
    pub probe: bool,
    /// Admission, deadlines and limits.
    pub config: ServerConfig,
    /// Message limits (`--max-size`).
    pub limits: Limits,
    /// Keep partial files for resume this long (`listen --partial-ttl`); `None`: none.
    pub partials: Option<Duration>,
    /// Act as a listener from before resume: offers are dropped unread, never answered.
    pub before_resume: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            probe: true,
            config: ServerConfig::default(),
            limits: Limits::default(),
            partials: None,
            before_resume: false,
        }
    }
}

/// A library server storing into a directory; stopped when dropped.
pub struct InProcess {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// `FINGERPRINT@127.0.0.1:PORT`.
    pub ticket: String,
    events: mpsc::Receiver<Value>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Stores each message and reports what became of it.
struct Reporting {
    receiver: Receiver,
    before_resume: bool,
    events: mpsc::Sender<Value>,
}

impl Handler for Reporting {
    async fn message(&self, mut stream: Stream) {
        let id = stream.header.id.to_string();
        if self.before_resume {
            stream.header.resume = None;
        }
        let event = match self.receiver.serve(&mut stream, &NoProgress).await {
            Outcome::Received { stored, status, .. } => json!({
                "event": "received",
                "name": stored.name,
                "bytes": stored.bytes,
                "digest": stored.digest.algorithm.name(),
                (stored.digest.algorithm.name()): stored.digest.hex(),
                "duplicate": status == AckStatus::Duplicate,
                "message_id": id,
            }),
            Outcome::Failed(e) => {
                json!({"event": "failed", "error": e.to_string(), "message_id": id})
            }
            other => json!({"event": "other", "what": format!("{other:?}"), "message_id": id}),
        };
        let _ = self.events.send(event);
    }
}

impl InProcess {
    /// A server with the default options storing into `dir`.
    pub fn start(dir: &Path) -> Self {
        Self::with(dir, Options::default())
    }

    /// A server with `options` storing into `dir`.
    pub fn with(dir: &Path, options: Options) -> Self {
        let (ready, started) = mpsc::channel();
        let (events_tx, events) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let dir: PathBuf = dir.to_path_buf();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let identity = Arc::new(Identity::ephemeral().expect("identity"));
                let transport = TransportOptions::default();
                let at = "127.0.0.1:0".parse().unwrap();
                let endpoint = Endpoint::bind(
                    at,
                    identity.clone(),
                    transport.clone(),
                    Some(TrustRules::any()),
                )
                .expect("bind");
                let addr = endpoint.local_addr().expect("local address");
                let _ = ready.send((addr, endpoint.fingerprint()));
                let store = Store::new(&dir, false).expect("store");
                let partials = options
                    .partials
                    .map(|ttl| qp2p::store::Partials::new(store.root(), ttl));
                let receiver = Receiver::new(Sink::Dir(store), options.limits, Quota::default());
                let receiver = match partials {
                    Some(partials) => receiver.with_partials(partials),
                    None => receiver,
                };
                let handler = Reporting {
                    receiver,
                    before_resume: options.before_resume,
                    events: events_tx,
                };
                let probe = ProbeService::new(options.probe, identity, transport);
                let router = Router::new(handler).probe(probe);
                let server = Server::new(endpoint, options.config);
                server
                    .run(router, async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        let (addr, fingerprint) = started
            .recv_timeout(Duration::from_secs(10))
            .expect("the in-process server started");
        InProcess {
            addr: addr.to_string(),
            ticket: qp2p::net::addr::ticket(&fingerprint, addr),
            events,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The next event named `name` within `timeout` (earlier ones of other names are
    /// dropped); panics when none comes.
    pub fn wait_for(&mut self, name: &str, timeout: Duration) -> Value {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.events.recv_timeout(left) {
                Ok(ev) if ev["event"] == name => return ev,
                Ok(_) => {}
                Err(_) => panic!("the in-process server reported no {name:?} within {timeout:?}"),
            }
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A client endpoint built on the library with a fresh identity, connected to the
/// listener of `ticket` and pinned to its fingerprint (the endpoint is returned to keep
/// it alive): a sender that speaks the wire by hand.
pub async fn connect_pinned(ticket: &str) -> (Endpoint, quinn::Connection) {
    let target: qp2p::Target = ticket.parse().unwrap();
    let addr = target.resolve().await.unwrap()[0];
    let id = Arc::new(Identity::ephemeral().unwrap());
    let endpoint = Endpoint::client(id, TransportOptions::default()).unwrap();
    let rules = TrustRules::pinned_to(target.expect.unwrap());
    let conn = endpoint.connect(addr, rules).await.unwrap();
    (endpoint, conn)
}
