//! `qp2p listen`: accept senders and store what they send.
//!
//! Every connection gets a task, every stream on it another: one slow or hostile stream
//! never holds up the rest. A stream's header must arrive within a deadline; a bad
//! header resets that stream only.
//!
//! What a hostile peer could do, and the limit that stops it (each a flag, defaults in
//! README): open connections without end (`--max-connections`, and per source address
//! `--max-connections-per-ip`: refused before the handshake, so a refusal costs no
//! cryptography); start handshakes and never finish them (`--handshake-timeout`, and
//! past half of either connection limit a new address must first answer a stateless
//! Retry, so handshakes from forged source addresses cannot take the slots); open
//! streams without end (`--max-streams`, enforced by QUIC flow control); open a stream and
//! say nothing (`--header-timeout`, then the stream is reset); send a huge header (8 KiB,
//! fixed by the protocol); send more than we want (`--max-size`, and the free space of
//! DIR for a declared length). Payloads go to an invisible file in DIR (see
//! `store`) that gets its name only when complete, or to stdout one whole message at a
//! time. Message ids of recent messages are remembered so a retried message is
//! acknowledged again but stored once.
//!
//! The accept loop, the limits and the routing by stream kind are the library's
//! ([`qp2p::net::server`]); this file turns flags into its configuration and serves
//! the message streams it routes here (the quota, the report); `receive` holds the path
//! of one message into the store.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;
use tracing::{debug, info, warn};

use super::{parse_size, Context, TransportArgs, TrustArgs};
use crate::error::{coded, Exit};
use crate::output::shown;
use qp2p::net::addr::ticket;
use qp2p::net::endpoint::{canonical, EndpointError};
use qp2p::net::framing;
use qp2p::net::probe::ProbeService;
use qp2p::net::receiver::{Outcome, Quota, Receiver, Sink};
use qp2p::net::server::{Handler, HandshakeError, Router, Stream};
use qp2p::net::transfer::{self, Limits, RecvError};
use qp2p::net::upnp::MAX_LEASE;
use qp2p::store::{Partials, Store};
use qp2p::{Endpoint, Fingerprint, Server, ServerConfig, TransportOptions, TrustRules};

mod receive;
mod via;
use receive::{report_received, report_text, who};

/// Receive files (or a stream) from senders.
///
/// Prints its address, fingerprint and ticket, and the `qp2p send` line to run on the
/// sending machine; then stores every message it receives in DIR (or writes it to
/// stdout) until stopped (Ctrl-C).
#[derive(Debug, clap::Args)]
#[command(after_help = super::examples(&[
    "qp2p listen --out ~/inbox                    # keep receiving into ~/inbox",
    "qp2p listen --once --stdout | tar x          # receive one tar stream, unpack it",
    "qp2p listen --allow \"$(cat alice.fp)\" --max-size 1GiB",
    "qp2p --json listen --bind 127.0.0.1:0 --count 3   # scripts: JSON, any free port",
]))]
pub struct Args {
    /// Address and UDP port to listen on: IP:PORT, `[v6]:PORT`, a host name, `:PORT`
    /// (all addresses), an address without a port (port 7447); `[::]` is dual-stack, port
    /// 0 picks a free one.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "[::]:7447",
        value_parser = qp2p::net::addr::parse_bind,
        env = "QP2P_BIND",
        hide_env_values = true
    )]
    pub bind: SocketAddr,
    /// Directory files are stored in.
    #[arg(
        long,
        value_name = "DIR",
        default_value = ".",
        conflicts_with = "stdout"
    )]
    pub out: PathBuf,
    /// Write payloads to stdout, one whole message after another.
    #[arg(long)]
    pub stdout: bool,
    /// Take one `send` run, then exit: every message of the first sender's connection
    /// (a whole directory), until it closes; with --stdout, exactly one message.
    /// Others are refused at once.
    #[arg(long, conflicts_with = "count")]
    pub once: bool,
    /// Take exactly N messages (from any senders), then exit; one more is refused at
    /// once [default: run until stopped].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Admit only senders with this fingerprint (repeatable) [default: admit anyone].
    #[arg(long, value_name = "FP")]
    pub allow: Vec<Fingerprint>,
    /// Admit only senders whose fingerprint is in FILE (one per line, # comments)
    /// [default: admit anyone].
    #[arg(long, value_name = "FILE")]
    pub allow_file: Option<PathBuf>,
    /// Refuse messages larger than SIZE (e.g. 512MiB) [default: no limit].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_size: Option<u64>,
    /// Keep what arrived of a file whose transfer broke off for DUR after its last
    /// byte, hidden in DIR/.qp2p-partial, so that the sender's next try sends only the
    /// rest; 0 keeps nothing (no resume). Older ones are removed at start and while
    /// listening.
    #[arg(
        long,
        value_name = "DUR",
        default_value = "1d",
        value_parser = super::parse_duration
    )]
    pub partial_ttl: Duration,
    /// Replace existing files instead of storing under a new name (name.1.ext).
    #[arg(long)]
    pub overwrite: bool,
    /// Map the listening port on the UPnP gateway for the whole run (renewed before
    /// the lease ends, removed on exit); without a gateway, a warning.
    #[arg(long)]
    pub upnp: bool,
    /// Lease asked for the UPnP mapping; it is renewed at half of it.
    #[arg(
        long,
        value_name = "DUR",
        default_value = "1h",
        value_parser = super::parse_duration,
        requires = "upnp"
    )]
    pub lease: Duration,
    /// Do not answer reachability probes (`qp2p upnp-check --probe`).
    #[arg(long)]
    pub no_probe: bool,
    /// Also serve as an introducer: listeners behind NAT register here (`--via`) and
    /// senders ask for introductions; it learns addresses and fingerprints, never
    /// content. --allow/--ca limit who may register or ask.
    #[arg(long)]
    pub introduce: bool,
    /// Register with the introducer at TICKET (repeatable) from the listening socket,
    /// keep the NAT binding open and register again when the connection is lost; the
    /// ticket printed then names every way to this listener [default: no introducer,
    /// reachable only at its own addresses].
    #[arg(long, value_name = "TICKET")]
    pub via: Vec<qp2p::Target>,
    /// With --introduce, also relay: forward the datagrams of two peers whose punch
    /// failed (they stay end to end encrypted), within --relay-sessions,
    /// --relay-bytes and --relay-time.
    #[arg(long, requires = "introduce")]
    pub relay: bool,
    /// Relay sessions at once; more are refused (and logged).
    #[arg(long, value_name = "N", default_value_t = 4, requires = "relay",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub relay_sessions: u32,
    /// Bytes a relay session may carry (both directions); past it the session is cut
    /// and the sender told why.
    #[arg(long, value_name = "SIZE", default_value = "256MiB", requires = "relay",
          value_parser = parse_size)]
    pub relay_bytes: u64,
    /// How long a relay session may last.
    #[arg(long, value_name = "DUR", default_value = "10m", requires = "relay",
          value_parser = super::parse_nonzero_duration)]
    pub relay_time: Duration,
    /// Serve at most N connections at once; more are refused before the handshake.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 256,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_connections: u32,
    /// Serve at most N connections at once from one IP address.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 16,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_connections_per_ip: u32,
    /// Let one connection have at most N streams (messages) open at once in each
    /// direction; a sender wanting more waits.
    #[arg(
        long,
        value_name = "N",
        default_value_t = qp2p::net::endpoint::MAX_STREAMS,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_streams: u32,
    /// Reset a stream whose header has not arrived within DUR.
    #[arg(
        long,
        value_name = "DUR",
        default_value = "10s",
        value_parser = super::parse_duration
    )]
    pub header_timeout: Duration,
    /// Drop a connection whose handshake has not completed within DUR.
    #[arg(
        long,
        value_name = "DUR",
        default_value = "10s",
        value_parser = super::parse_duration
    )]
    pub handshake_timeout: Duration,
    /// Trust options.
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Transport options.
    #[command(flatten)]
    pub transport: TransportArgs,
}

struct State {
    receiver: Receiver,
    /// The reader of `--stdout` went away: stop, after telling the senders.
    stdout_closed: std::sync::atomic::AtomicBool,
    ctx: Context,
    /// Where introduced senders come from (`--via`): how each was reached.
    paths: via::Seen,
}

impl State {
    /// Ends the run with exit 5 and `why` (the first failure wins).
    fn fail(&self, why: String) {
        self.receiver.fail(why)
    }

    fn quota(&self) -> std::sync::MutexGuard<'_, Quota> {
        self.receiver.quota()
    }
}

/// Listens until stopped, or until `--once`/`--count` is reached.
pub async fn run(args: Args, ctx: Context) -> anyhow::Result<()> {
    if args.stdout && ctx.json {
        return Err(coded(
            Exit::Usage,
            "--json and --stdout cannot be combined: stdout carries the payload",
        ));
    }
    if args.header_timeout.is_zero() || args.handshake_timeout.is_zero() {
        return Err(coded(
            Exit::Usage,
            "--header-timeout and --handshake-timeout must be longer than 0",
        ));
    }
    // Every rule given must hold: the allow-list and, with --ca, the CA.
    let rules = allow_rules(&args)?.with_ca(args.trust.rules()?.ca);
    let identity = ctx.identity()?;
    let fingerprint = identity.fingerprint;
    let probe = ProbeService::new(!args.no_probe, identity.clone(), args.transport.options());
    if args.upnp && (args.lease < Duration::from_secs(1) || args.lease > MAX_LEASE) {
        return Err(coded(Exit::Usage, "--lease must be between 1s and 7days"));
    }
    let options = TransportOptions {
        max_streams: args.max_streams,
        ..args.transport.options()
    };
    let endpoint =
        Endpoint::bind(args.bind, identity, options, Some(rules)).map_err(bind_failed)?;
    let bound = canonical(endpoint.local_addr().context("reading the bound address")?);
    let sink = if args.stdout {
        Sink::Stream {
            turn: Default::default(),
            open: || Box::new(std::io::stdout()),
        }
    } else {
        Sink::Dir(output_dir(&args.out, args.overwrite)?)
    };
    let shown = display_addr(bound);
    let vias = via::resolve(&args.via).await?;
    let ticket = match vias.is_empty() {
        true => ticket(&fingerprint, shown),
        false => via::ticket(&fingerprint, shown, &vias),
    };
    ctx.out.event(
        json!({
            "event": "listening",
            "addr": bound.to_string(),
            "fingerprint": fingerprint.to_string(),
            "ticket": ticket,
        }),
        || {
            let dest = match &sink {
                Sink::Dir(store) => format!("storing in {}", store.root().display()),
                Sink::Stream { .. } => "writing to stdout".into(),
            };
            let qp2p = super::invocation();
            format!(
                "listening on {bound} ({dest})\nfingerprint {fingerprint}\nticket {ticket}\n\
                 send with: {qp2p} send {ticket} FILE"
            )
        },
    );
    if ctx.out.quiet() && !ctx.json && args.bind.port() == 0 {
        // -q hides reports, but a port picked by the system must still be told.
        crate::output::line_to_stderr(&format!("listening on {bound}"));
    }

    let partials = match &sink {
        Sink::Dir(store) if !args.partial_ttl.is_zero() => {
            let c = ctx.clone();
            Some(
                Partials::new(store.root(), args.partial_ttl)
                    .on_room_made(move |swept, short| report_room_made(&c, swept, short)),
            )
        }
        _ => None,
    };
    if let Some(partials) = &partials {
        sweep_partials(&ctx, partials);
    }
    let receiver = Receiver::new(
        sink,
        Limits {
            max_size: args.max_size,
        },
        Quota {
            once: args.once && !args.stdout,
            limit: match (args.once, args.stdout) {
                // Stdout cannot tell one message from the next: one only.
                (true, true) => Some(1),
                _ => args.count,
            },
            ..Quota::default()
        },
    );
    let receiver = match partials.clone() {
        Some(partials) => receiver.with_partials(partials),
        None => receiver,
    };
    let state = Arc::new(State {
        receiver,
        stdout_closed: Default::default(),
        ctx: ctx.clone(),
        paths: via::Seen::default(),
    });
    // With --via, a UPnP mapping is announced to the introducers, and the ticket
    // shown for it names every way, the mapping first.
    let announced = via::Announced::new(via::own_addrs(bound));
    let upnp = match args.upnp {
        true => {
            let announced = announced.clone();
            let others = (!vias.is_empty()).then(|| ticket.clone());
            super::upnp_check::keep_mapping(&ctx, fingerprint, bound, args.lease, move |ext| {
                announced.mapped(ext);
                let others = others.as_deref()?;
                let rest = others.split_once('@').map_or(others, |(_, rest)| rest);
                Some(format!("{fingerprint}@{},{rest}", ext?))
            })
        }
        false => None,
    };

    let server = Server::new(
        endpoint.clone(),
        ServerConfig {
            max_connections: args.max_connections,
            max_connections_per_ip: args.max_connections_per_ip,
            handshake_timeout: args.handshake_timeout,
            header_timeout: args.header_timeout,
        },
    );
    let stop = async {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => {}
            _ = state.receiver.done.cancelled() => {}
            _ = ctx.out.stdout_gone() => {
                // `--json` events had a reader that has gone (`| head -1`): stop
                // taking new senders, like `--stdout` does when its reader goes.
                state.receiver.done.cancel();
            }
        }
    };
    let sweeper = partials.map(|partials| {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let every = (partials.ttl() / 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
            loop {
                tokio::time::sleep(every).await;
                let (c, p) = (ctx.clone(), partials.clone());
                let _ = tokio::task::spawn_blocking(move || sweep_partials(&c, &p)).await;
            }
        })
    });
    let _sweeper = sweeper.map(AbortOnDrop);
    let registrations = via::spawn(&endpoint, &vias, &announced, &ctx.out, &state.paths);
    let mut router = Router::new(state.clone()).probe(probe);
    if args.introduce {
        let relay = args.relay.then(|| {
            qp2p::net::introducer::Relay::new(qp2p::net::introducer::RelayLimits {
                sessions: args.relay_sessions as usize,
                bytes: args.relay_bytes,
                time: args.relay_time,
            })
        });
        router = router.introducer(qp2p::net::introducer::IntroducerService::new(relay));
    }
    server.run(router, stop).await;
    for task in registrations {
        task.abort();
    }
    if state.stdout_closed.load(Ordering::SeqCst) {
        // Closing now would discard the stream refusal still queued for the sender
        // (it would see a vanished listener, not "could not store"); it closes its
        // connection once told, so wait for that, briefly.
        let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.quinn().wait_idle()).await;
    }
    let failure = state.receiver.take_failure();
    // A sender told DONE does not retry: this listener takes no more messages.
    let (code, reason): (_, &[u8]) = match (&failure, ctx.shutdown.is_cancelled()) {
        (_, true) => (framing::close::SHUTDOWN, b"shutting down"),
        (Some(_), false) => (framing::close::SHUTDOWN, b"stopped after a failed message"),
        (None, false) => (framing::close::DONE, b"done: takes no more messages"),
    };
    // A `--once` run that ended well ended with its sender's own close: that connection
    // needs no word from us, and any other gets its close as soon as its driver runs.
    // Waiting for the endpoint to be idle would wait out the sender's connection's
    // draining period (three probe timeouts: about 80 ms even on loopback).
    let wait = if args.once && failure.is_none() && !ctx.shutdown.is_cancelled() {
        Duration::from_millis(10)
    } else {
        Duration::from_secs(1)
    };
    endpoint.shutdown(code, reason, wait).await;
    if let Some(upnp) = upnp {
        upnp.stop().await;
    }
    match failure {
        Some(why) if !ctx.shutdown.is_cancelled() => Err(coded(Exit::Transfer, why)),
        _ => Ok(()),
    }
}

/// The trust rules from `--allow` and `--allow-file`.
fn allow_rules(args: &Args) -> anyhow::Result<TrustRules> {
    let mut allowed: Vec<Fingerprint> = args.allow.clone();
    if let Some(file) = &args.allow_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read allow file {}", file.display()))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let fp = line
                .parse::<Fingerprint>()
                .map_err(|e| coded(Exit::Usage, format!("{}:{}: {e}", file.display(), n + 1)))?;
            allowed.push(fp);
        }
        if allowed.is_empty() {
            return Err(coded(
                Exit::Usage,
                format!("allow file {} lists no fingerprint", file.display()),
            ));
        }
    }
    Ok(if allowed.is_empty() {
        TrustRules::any()
    } else {
        TrustRules {
            pinned: Some(allowed.into_iter().collect()),
            ca: None,
        }
    })
}

/// The error for a socket that cannot be bound, with what to do when the port is taken.
fn bind_failed(e: EndpointError) -> anyhow::Error {
    match &e {
        EndpointError::Bind { addr, source } if source.kind() == ErrorKind::AddrInUse => coded(
            Exit::Other,
            format!(
                "could not bind {addr}: {source}: another process uses UDP port {port}; \
                     pick another with --bind ADDR:PORT, or :0 for any free port",
                port = addr.port()
            ),
        ),
        _ => e.into(),
    }
}

/// The store for `--out DIR`, checked now rather than at the first message: DIR must be
/// a directory (or creatable) and writable. A file is a usage error; a directory that
/// cannot be written (read-only filesystem, permissions) is exit 1.
fn output_dir(dir: &Path, overwrite: bool) -> anyhow::Result<Store> {
    if dir.exists() && !dir.is_dir() {
        return Err(coded(
            Exit::Usage,
            format!(
                "--out {}: is a file, not a directory; give a directory to store into",
                dir.display()
            ),
        ));
    }
    let store = Store::new(dir, overwrite)
        .with_context(|| format!("cannot use {} as output directory", dir.display()))?;
    store.check_writable().map_err(|e| {
        coded(
            Exit::Other,
            format!(
                "cannot write into {}: {e}; give a writable directory with --out DIR",
                store.root().display()
            ),
        )
    })?;
    Ok(store)
}

/// The address to put in the ticket: the bound one, or for a wildcard bind the first
/// non-loopback address of this host (loopback if there is none).
fn display_addr(bound: SocketAddr) -> SocketAddr {
    if !bound.ip().is_unspecified() {
        return bound;
    }
    let ips = local_addresses();
    let pick = ips
        .iter()
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
        .or_else(|| ips.iter().find(|ip| !ip.is_loopback() && is_global_v6(ip)))
        .copied()
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    SocketAddr::new(pick, bound.port())
}

fn is_global_v6(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
        IpAddr::V4(_) => false,
    }
}

/// The addresses of this host's interfaces that are up (operationally: an interface
/// without a carrier is of no use to a sender), from `if-addrs` on every platform.
fn local_addresses() -> Vec<IpAddr> {
    if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(if_addrs::Interface::is_oper_up)
        .map(|iface| iface.ip())
        .collect()
}

/// The listener's side of the server: messages into the store (or stdout), and the
/// end of a `--once` run with its sender's connection.
impl Handler for State {
    async fn message(&self, stream: Stream) {
        serve_message(stream, self).await
    }

    fn handshake_failed(&self, remote: SocketAddr, error: HandshakeError) {
        match &error {
            HandshakeError::TimedOut(_) => warn!("{error}; connection dropped"),
            // Our refusals (a sender not on the allow list) are worth a warning; a peer
            // that gave up (a lost race, Ctrl-C) is normal.
            HandshakeError::Refused {
                reason,
                fingerprint,
            } => {
                let reason = match fingerprint {
                    Some(_) => format!("{reason} (not on --allow)"),
                    None => reason.clone(),
                };
                report_refused(self, remote, &reason, *fingerprint)
            }
            HandshakeError::Failed(e) => warn!(cause = %shown(&e.to_string()), "handshake failed"),
            HandshakeError::Abandoned(e) => {
                info!(cause = %shown(&e.to_string()), "handshake abandoned")
            }
        }
    }

    async fn stopping(&self) {
        self.receiver.done.cancelled().await
    }

    async fn on_stop(&self, conn: &quinn::Connection) {
        // Hold the connection until `run` closes the endpoint with the reason (or the
        // sender closes it, once told): dropping the last handle would close it at once
        // with code 0 and no reason, and discard a refusal still queued for the sender.
        let _ = tokio::time::timeout(Duration::from_secs(2), conn.closed()).await;
    }

    /// `--once`: this sender's run is over when its connection is. Its messages
    /// finish (or fail) first, so their reports come before the end.
    fn owns(&self, conn: &quinn::Connection) -> bool {
        self.quota().session == Some(conn.stable_id())
    }

    fn finished(&self, conn: &quinn::Connection) {
        end_session(conn, self)
    }
}

/// `--once`: the sender's connection closed. It said it was done (exit 0), or it went
/// away mid-run (interrupted, lost): exit 5 with its reason.
fn end_session(conn: &quinn::Connection, state: &State) {
    match conn.close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(c))
            if c.error_code == framing::close::DONE =>
        {
            state.receiver.done.cancel()
        }
        Some(quinn::ConnectionError::LocallyClosed) | None => state.receiver.done.cancel(),
        Some(e) => {
            let stored = state.quota().stored;
            state.fail(format!(
                "the sender's run ended before it was done: {} ({stored} message{} stored)",
                transfer::describe_lost(&e),
                if stored == 1 { "" } else { "s" }
            ))
        }
    }
}

/// One message or text stream whose header has arrived: the quota, the message
/// received, and its report.
async fn serve_message(mut stream: Stream, state: &State) {
    let outcome = state.receiver.serve(&mut stream, &state.ctx.out).await;
    let Stream {
        header,
        send,
        peer,
        fingerprint: peer_fp,
        ..
    } = stream;
    let name = header.name.clone();
    match outcome {
        Outcome::Refused(_) => {}
        Outcome::Text { text, last, .. } => {
            report_text(state, &header, &text, (peer, peer_fp));
            if last {
                state.receiver.done.cancel();
            }
        }
        Outcome::Received {
            stored,
            status,
            seconds,
            last,
        } => {
            let stream = if send.is_some() { "bi" } else { "uni" };
            report_received(
                state,
                &header,
                &stored,
                status,
                (peer, peer_fp),
                stream,
                seconds,
            );
            if last {
                state.receiver.done.cancel();
            }
        }
        Outcome::Failed(e) => {
            debug!(name = %shown(&name), cause = ?e, "message not stored");
            if matches!(state.receiver.target, Sink::Stream { .. })
                && matches!(&e, RecvError::Storage(io) if io.kind() == std::io::ErrorKind::BrokenPipe)
            {
                // Whoever read our stdout is gone (`| head -c 10`): nothing more can be
                // delivered, so stop as `yes | head` does, with a clean exit.
                warn!("stdout was closed by its reader; stopping");
                state.stdout_closed.store(true, Ordering::SeqCst);
                state.receiver.done.cancel();
            }
            state.ctx.out.event(
                json!({
                    "event": "transfer_failed",
                    "name": name,
                    "peer": peer.to_string(),
                    "peer_fingerprint": peer_fp.map(|f| f.to_string()),
                    "error": e.to_string(),
                    "message_id": header.id.to_string(),
                }),
                || {
                    // A resumable file that broke off (not refused) leaves its partial.
                    let resumable = state.receiver.partials().is_some()
                        && header.resume.is_some()
                        && matches!(e, RecvError::Cancelled(_) | RecvError::Lost(_));
                    let kept = match (&state.receiver.target, resumable) {
                        (Sink::Dir(_), true) => {
                            "; nothing stored under its name, what arrived is kept for a resume"
                        }
                        (Sink::Dir(_), false) => "; nothing stored",
                        (Sink::Stream { .. }, _) => "",
                    };
                    format!(
                        "failed to receive \"{}\" from {}: {}{kept}",
                        shown(&name),
                        who(peer, peer_fp),
                        shown(&e.to_string())
                    )
                },
            );
        }
    }
}

/// A sender refused in the handshake (not on `--allow`, or `--ca` refused its
/// certificate): a `refused` event, and a warning line that says why in words.
fn report_refused(state: &State, peer: SocketAddr, reason: &str, fp: Option<Fingerprint>) {
    let reason = shown(reason).to_string();
    warn!(%peer, "sender refused: {reason}");
    if state.ctx.json {
        state.ctx.out.event(
            json!({
                "event": "refused",
                "peer": peer.to_string(),
                "peer_fingerprint": fp.map(|f| f.to_string()),
                "reason": reason,
            }),
            String::new,
        );
    }
}

/// Removes the partial files older than their time to live and says what that freed.
fn sweep_partials(ctx: &Context, partials: &Partials) {
    let swept = partials.sweep();
    if swept.count == 0 {
        return;
    }
    ctx.out.event(
        json!({
            "event": "partials_expired",
            "count": swept.count,
            "bytes": swept.bytes,
            "ttl": humantime::format_duration(partials.ttl()).to_string(),
        }),
        || {
            format!(
                "removed {} partial file(s) of broken-off transfers older than {}: {} freed",
                swept.count,
                humantime::format_duration(partials.ttl()),
                qp2p::net::transfer::size(swept.bytes)
            )
        },
    );
}

/// Says which partial files were removed to make room for a message the disk could
/// not hold otherwise.
fn report_room_made(ctx: &Context, swept: qp2p::store::Swept, short: u64) {
    ctx.out.event(
        json!({
            "event": "partials_evicted",
            "count": swept.count,
            "bytes": swept.bytes,
            "short": short,
        }),
        || {
            format!(
                "removed {} partial file(s) of broken-off transfers, oldest first, to make room for a new one: {} freed ({} were short)",
                swept.count,
                qp2p::net::transfer::size(swept.bytes),
                qp2p::net::transfer::size(short)
            )
        },
    );
}

/// Aborts a background task when the run ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
