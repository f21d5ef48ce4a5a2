//! `qp2p bench`: measure the transport, on loopback with no set-up, or against a peer.
//!
//! Without `--peer` both ends run in this process: a listener on 127.0.0.1 that serves
//! the benchmark stream kinds (and raw unidirectional streams for the baseline), and a
//! client. With `--peer` the client measures against a running `qp2p listen`, which
//! throws bench data away and never writes it.
//!
//! Scenarios:
//! - throughput: one stream (or `--parallel N`) moving `--size` bytes, three ways: raw
//!   quinn streams (in-process only), framed (header and ack), and hashed (the real
//!   transfer path: BLAKE3, the default digest, at both ends on their I/O threads);
//! - messages: `--message-size` messages with 32 in flight, over one pooled connection
//!   and with a new connection per message; the ratio is what pooling buys;
//! - latency: round trips one at a time, 8-byte request and `--message-size` answer;
//! - handshakes: full handshakes one after another, and `--parallel` at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};

use super::{parse_size, Context, TransportArgs, TrustArgs};
use crate::error::{coded, unreached, Exit};
use qp2p::net::addr::Ticket;
use qp2p::net::bench;
use qp2p::net::endpoint::canonical;
use qp2p::net::framing::{self, ErrorCode};
use qp2p::net::introducer::{reach, PeerPath};
use qp2p::net::server::{Handler, Router, Stream};
use qp2p::net::transfer;
use qp2p::{Endpoint, Identity, Server, ServerConfig, TrustRules};

/// Which measurement to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Bulk transfer rate (Gbit/s), raw, framed and hashed.
    Throughput,
    /// Messages per second, pooled and with a new connection each.
    Messages,
    /// Round-trip latency percentiles.
    Latency,
    /// Full handshakes per second.
    Handshakes,
    /// All of the above.
    All,
}

/// Measure throughput, message rate, latency and handshakes.
///
/// Without --peer both ends run in this process on loopback: no set-up at all. With
/// --peer it measures against a running `qp2p listen`, which discards the data.
#[derive(Debug, clap::Args)]
#[command(after_help = super::examples(&[
    "qp2p bench                                   # everything, on loopback, no set-up",
    "qp2p bench --scenario throughput --size 4GiB --parallel 4",
    "qp2p --json bench --peer FP@192.0.2.7:7447 | jq -c 'select(.event==\"bench\")'",
]))]
pub struct Args {
    /// Measure against this running `qp2p listen` [default: both ends in this process,
    /// on loopback].
    #[arg(long, value_name = "ADDR|TICKET")]
    pub peer: Option<String>,
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Scenario::All)]
    pub scenario: Scenario,
    /// Bytes moved by each throughput run.
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size)]
    pub size: u64,
    /// Size of one message (messages) and of one answer (latency).
    #[arg(long, value_name = "SIZE", default_value = "1KiB", value_parser = parse_size)]
    pub message_size: u64,
    /// Messages, round trips or handshakes per run [default: 50000 messages, 10000
    /// round trips, 1000 handshakes; a tenth for unpooled messages].
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Upper bound on each run.
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = super::parse_nonzero_duration)]
    pub duration: Duration,
    /// Streams for throughput, messages and handshakes in flight [default: 1 stream, 32
    /// in flight; new connections 8 at once with --peer, since a listener admits 16 per
    /// address].
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
    /// Throughput of raw quinn streams only (no header, ack, hashing).
    #[arg(long)]
    pub raw: bool,
    /// Trust options (with --peer).
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Transport options.
    #[command(flatten)]
    pub transport: TransportArgs,
}

/// Where the bench connects, and how.
struct Peer {
    endpoint: Endpoint,
    addr: SocketAddr,
    rules: TrustRules,
    in_process: bool,
    /// How the peer was reached (a ticket with several ways is raced once; every
    /// connection after goes the winner's way).
    path: PeerPath,
    /// A relayed path's control connection: the relay session lasts while it is open.
    _control: Option<quinn::Connection>,
}

impl Peer {
    async fn connect(&self) -> anyhow::Result<quinn::Connection> {
        let conn = self.endpoint.connect(self.addr, self.rules.clone()).await;
        if let Err(qp2p::ConnectError::Lost(quinn::ConnectionError::ConnectionClosed(c))) = &conn {
            if c.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED {
                return Err(coded(
                    Exit::Connect,
                    "the listener refused a connection: it is at its limit of \
                     connections from one address (--max-connections-per-ip, 16 unless \
                     it was started with another); lower --parallel or raise that limit",
                ));
            }
        }
        Ok(conn?)
    }

    /// Connections in flight at once: `--parallel`, else 32 in-process and 8 against a
    /// listener (which admits 16 per address unless told otherwise).
    fn connections_in_flight(&self, args: &Args) -> usize {
        args.parallel
            .unwrap_or(if self.in_process { 32 } else { 8 })
    }
}

/// Runs the chosen scenarios and reports each.
pub async fn run(args: Args, ctx: Context) -> anyhow::Result<()> {
    if args.size == 0 || args.message_size > bench::MAX_RESPONSE {
        return Err(coded(
            Exit::Usage,
            format!(
                "--size must be > 0 and --message-size at most {} bytes",
                bench::MAX_RESPONSE
            ),
        ));
    }
    let (peer, _server) = setup(&args, &ctx).await?;
    let all = args.scenario == Scenario::All;
    let mut rows: Vec<Value> = Vec::new();
    let mut report = |mut row: Value| {
        row["path"] = json!(peer.path.name());
        // Humans get the table at the end; an empty line per row would only push it
        // down the screen.
        if ctx.json {
            ctx.out.event(row.clone(), String::new);
        }
        rows.push(row);
    };
    let work = async {
        if all || args.scenario == Scenario::Throughput {
            for row in throughput(&peer, &args, &ctx).await? {
                report(row);
            }
        }
        if all || args.scenario == Scenario::Messages {
            report(messages(&peer, &args, &ctx).await?);
        }
        if all || args.scenario == Scenario::Latency {
            report(latency(&peer, &args, &ctx).await?);
        }
        if all || args.scenario == Scenario::Handshakes {
            report(handshakes(&peer, &args, &ctx).await?);
        }
        anyhow::Ok(())
    };
    let result = tokio::select! {
        r = work => r,
        _ = ctx.shutdown.cancelled() => Ok(()),
    };
    if !ctx.json {
        print_table(&rows, &peer);
    }
    peer.endpoint
        .shutdown(
            framing::close::DONE,
            b"bench done",
            Duration::from_millis(50),
        )
        .await;
    result
}

/// The client endpoint, and the in-process server when there is no `--peer`.
async fn setup(args: &Args, ctx: &Context) -> anyhow::Result<(Peer, Option<Endpoint>)> {
    let options = args.transport.options();
    match &args.peer {
        Some(text) => {
            let ticket: Ticket = text
                .parse()
                .map_err(|e| coded(Exit::Usage, format!("{e}")))?;
            let rules = args.trust.rules()?.with_pin(ticket.expect);
            let endpoint = Endpoint::client(ctx.identity()?, options)?;
            let (addr, path, control) = match ticket.single() {
                Some(target) => {
                    let addrs = target.resolve().await.map_err(|e| {
                        coded(Exit::Connect, format!("cannot resolve {target}: {e}"))
                    })?;
                    (addrs[0], PeerPath::Direct, None)
                }
                None => {
                    let reached = reach(&endpoint, &ticket, &rules, &args.transport.backoff())
                        .await
                        .map_err(unreached)?;
                    reached.conn.close(framing::close::DONE, b"found the way");
                    (reached.addr, reached.path, reached.control)
                }
            };
            Ok((
                Peer {
                    endpoint,
                    addr,
                    rules,
                    in_process: false,
                    path,
                    _control: control,
                },
                None,
            ))
        }
        None => {
            if !args.trust.ca.is_empty() {
                return Err(coded(
                    Exit::Usage,
                    "--ca needs --peer: in-process both ends have fresh identities",
                ));
            }
            let server = Endpoint::bind(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                Arc::new(Identity::ephemeral()?),
                options.clone(),
                Some(TrustRules::any()),
            )?;
            let addr = server.local_addr()?;
            tokio::spawn(serve(server.clone()));
            let endpoint = Endpoint::bind(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                Arc::new(Identity::ephemeral()?),
                options,
                None,
            )?;
            let rules = TrustRules::pinned_to(server.fingerprint());
            Ok((
                Peer {
                    endpoint,
                    addr,
                    rules,
                    in_process: true,
                    path: PeerPath::Direct,
                    _control: None,
                },
                Some(server),
            ))
        }
    }
}

/// The in-process server: bench streams on bidirectional streams, the raw baseline on
/// unidirectional ones. Only this process dials it: no connection limits.
async fn serve(endpoint: Endpoint) {
    let server = Server::new(endpoint, ServerConfig::unlimited());
    let router = Router::new(BenchOnly).raw_uni();
    server.run(router, std::future::pending()).await;
}

/// The in-process server takes no messages.
struct BenchOnly;

impl Handler for BenchOnly {
    async fn message(&self, mut stream: Stream) {
        transfer::refuse(
            &mut stream.recv,
            stream.send.as_mut(),
            ErrorCode::Unsupported,
        );
    }
}

/// Process CPU time (user + system) so far.
#[cfg(unix)]
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Process CPU time (user + system) so far.
#[cfg(windows)]
fn cpu_time() -> Duration {
    use windows_sys::Win32::Foundation::FILETIME;
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, GetProcessTimes};
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: the pseudo-handle of the current process needs no closing; the four
    // FILETIMEs are ours for GetProcessTimes to fill.
    let ok = unsafe {
        GetProcessTimes(
            GetCurrentProcess(),
            &mut created,
            &mut exited,
            &mut kernel,
            &mut user,
        )
    };
    if ok == 0 {
        return Duration::ZERO;
    }
    // FILETIMEs count 100 ns.
    let ticks = |t: FILETIME| (u64::from(t.dwHighDateTime) << 32) | u64::from(t.dwLowDateTime);
    Duration::from_nanos((ticks(kernel) + ticks(user)).saturating_mul(100))
}

fn spinner(ctx: &Context, what: &str) -> indicatif::ProgressBar {
    ctx.out.progress(None, what)
}

async fn throughput(peer: &Peer, args: &Args, ctx: &Context) -> anyhow::Result<Vec<Value>> {
    let streams = args.parallel.unwrap_or(1).max(1);
    let mut modes = vec!["raw"];
    if !args.raw {
        modes.extend(["framed", "hashed"]);
    }
    if !peer.in_process {
        // A listener has no raw sink: its baseline is the framed stream.
        modes.retain(|m| *m != "raw");
        if modes.is_empty() {
            modes.push("framed");
        }
    }
    let conn = peer.connect().await?;
    // Warm up before measuring: a fresh connection starts at 1200-byte packets and a
    // small congestion window, which the first mode measured would otherwise pay for
    // alone.
    let warm_up = args.size.min(WARM_UP);
    if peer.in_process {
        bench::raw_send(&conn, warm_up).await?;
    } else {
        bench::discard(&conn, warm_up, false).await?;
    }
    let per_stream = args.size.div_ceil(streams as u64);
    let mut rows = Vec::new();
    let mut raw_rate = None;
    for mode in modes {
        let bar = spinner(ctx, &format!("throughput {mode}"));
        let cpu0 = cpu_time();
        let start = Instant::now();
        let runs = (0..streams).map(|_| {
            let conn = conn.clone();
            async move {
                match mode {
                    "raw" => bench::raw_send(&conn, per_stream)
                        .await
                        .map(|()| per_stream),
                    "framed" => bench::discard(&conn, per_stream, false).await,
                    _ => bench::discard(&conn, per_stream, true).await,
                }
            }
        });
        let results = futures_util::future::join_all(runs).await;
        let seconds = start.elapsed().as_secs_f64();
        let cpu = (cpu_time() - cpu0).as_secs_f64();
        bar.finish_and_clear();
        let mut bytes = 0;
        for r in results {
            bytes += match r {
                Ok(n) => n,
                // The advice for `send` (--digest sha256) has no meaning here.
                Err(transfer::SendError::OlderPeer(algorithm)) => {
                    return Err(coded(
                        Exit::Transfer,
                        format!(
                            "the listener runs an older qp2p, which does not take {algorithm} \
                             digests: the hashed mode needs a listener of this version \
                             (--raw measures the framed stream only)"
                        ),
                    ))
                }
                Err(e) => return Err(e.into()),
            };
        }
        let gbit = bytes as f64 * 8.0 / seconds / 1e9;
        let stats = conn.stats();
        let mut row = json!({
            "event": "bench",
            "scenario": "throughput",
            "mode": mode,
            "streams": streams,
            "bytes": bytes,
            "seconds": seconds,
            "gbit_s": gbit,
            "cpu_s_per_gib": cpu / (bytes as f64 / (1u64 << 30) as f64),
            "cpu_measures": if peer.in_process { "both ends" } else { "this end" },
            "rtt_ms": stats.path.rtt.as_secs_f64() * 1000.0,
            "lost_packets": stats.path.lost_packets,
            "cwnd": stats.path.cwnd,
            "mtu": stats.path.current_mtu,
        });
        if mode == "hashed" {
            row["digest"] = json!(qp2p::Algorithm::Blake3.name());
        }
        match (mode, raw_rate) {
            ("raw", _) => raw_rate = Some(gbit),
            (_, Some(raw)) => row["vs_raw"] = json!(gbit / raw),
            _ => {}
        }
        rows.push(row);
    }
    conn.close(framing::close::DONE, b"");
    Ok(rows)
}

/// Bytes sent before the throughput runs, so that each is measured on a warm connection.
const WARM_UP: u64 = 64 * 1024 * 1024;

/// Runs `op` `count` times with `parallel` in flight, stopping early at `limit`;
/// returns how many completed and how long it took.
async fn repeat<F, Fut>(
    count: u64,
    parallel: usize,
    limit: Duration,
    op: F,
) -> anyhow::Result<(u64, Duration)>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let start = Instant::now();
    let mut done = 0;
    let mut results = stream::iter(0..count)
        .take_while(|_| std::future::ready(start.elapsed() < limit))
        .map(|_| op())
        .buffer_unordered(parallel.max(1));
    while let Some(r) = results.next().await {
        r?;
        done += 1;
    }
    Ok((done, start.elapsed()))
}

async fn messages(peer: &Peer, args: &Args, ctx: &Context) -> anyhow::Result<Value> {
    let count = args.count.unwrap_or(50_000);
    let parallel = args.parallel.unwrap_or(32);
    let size = args.message_size;
    let bar = spinner(ctx, "messages pooled");
    let conn = peer.connect().await?;
    let (pooled, pooled_time) = repeat(count, parallel, args.duration, || {
        let conn = conn.clone();
        async move { Ok(bench::discard(&conn, size, true).await.map(|_| ())?) }
    })
    .await?;
    conn.close(framing::close::DONE, b"");
    bar.set_message("messages unpooled");
    let unpooled_in_flight = peer.connections_in_flight(args);
    let (unpooled, unpooled_time) = repeat(
        (count / 10).max(1),
        unpooled_in_flight,
        args.duration,
        || async {
            let conn = peer.connect().await?;
            let r = bench::discard(&conn, size, true).await;
            conn.close(framing::close::DONE, b"");
            Ok(r.map(|_| ())?)
        },
    )
    .await?;
    bar.finish_and_clear();
    let pooled_rate = pooled as f64 / pooled_time.as_secs_f64();
    let unpooled_rate = unpooled as f64 / unpooled_time.as_secs_f64();
    Ok(json!({
        "event": "bench",
        "scenario": "messages",
        "message_size": size,
        "in_flight": parallel,
        "pooled_messages": pooled,
        "pooled_per_s": pooled_rate,
        "unpooled_messages": unpooled,
        "unpooled_in_flight": unpooled_in_flight,
        "unpooled_per_s": unpooled_rate,
        "pooling_gain": pooled_rate / unpooled_rate,
    }))
}

async fn latency(peer: &Peer, args: &Args, ctx: &Context) -> anyhow::Result<Value> {
    let count = args.count.unwrap_or(10_000);
    let bar = spinner(ctx, "latency");
    let conn = peer.connect().await?;
    // Warm up: the first round trips pay for stream credit and congestion window.
    for _ in 0..100 {
        bench::request(&conn, 8, args.message_size).await?;
    }
    let mut samples = Vec::with_capacity(count as usize);
    let start = Instant::now();
    for _ in 0..count {
        if start.elapsed() >= args.duration {
            break;
        }
        let t = Instant::now();
        bench::request(&conn, 8, args.message_size).await?;
        samples.push(t.elapsed());
    }
    bar.finish_and_clear();
    conn.close(framing::close::DONE, b"");
    samples.sort();
    let pct = |p: f64| -> f64 {
        let i = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1e6
    };
    if samples.is_empty() {
        return Err(coded(Exit::Usage, "no round trip fitted in --duration"));
    }
    Ok(json!({
        "event": "bench",
        "scenario": "latency",
        "request_size": 8,
        "response_size": args.message_size,
        "round_trips": samples.len(),
        "p50_us": pct(0.50),
        "p90_us": pct(0.90),
        "p99_us": pct(0.99),
        "max_us": pct(1.0),
        "per_s": samples.len() as f64 / start.elapsed().as_secs_f64(),
    }))
}

async fn handshakes(peer: &Peer, args: &Args, ctx: &Context) -> anyhow::Result<Value> {
    let count = args.count.unwrap_or(1_000);
    let parallel = peer.connections_in_flight(args);
    let bar = spinner(ctx, "handshakes");
    let once = || async {
        let conn = peer.connect().await?;
        conn.close(framing::close::DONE, b"");
        anyhow::Ok(())
    };
    let (seq, seq_time) = repeat(count, 1, args.duration, once).await?;
    let (par, par_time) = repeat(count, parallel, args.duration, once).await?;
    bar.finish_and_clear();
    Ok(json!({
        "event": "bench",
        "scenario": "handshakes",
        "sequential": seq,
        "sequential_per_s": seq as f64 / seq_time.as_secs_f64(),
        "in_flight": parallel,
        "parallel": par,
        "parallel_per_s": par as f64 / par_time.as_secs_f64(),
    }))
}

fn print_table(rows: &[Value], peer: &Peer) {
    let place = if peer.in_process {
        "in-process on loopback".to_string()
    } else {
        format!("against {}", canonical(peer.addr))
    };
    crate::output::line_to_stderr(&format!("qp2p bench, {place}"));
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    for row in rows {
        let line = match row["scenario"].as_str().unwrap_or("") {
            "throughput" => format!(
                "throughput  {:<7} {:>7.2} Gbit/s  {} stream(s), {:.2} CPU-s/GiB, rtt {:.2} ms, lost {}, cwnd {} KiB{}{}",
                row["mode"].as_str().unwrap_or(""),
                f(row, "gbit_s"),
                row["streams"],
                f(row, "cpu_s_per_gib"),
                f(row, "rtt_ms"),
                row["lost_packets"],
                row["cwnd"].as_u64().unwrap_or(0) / 1024,
                match row.get("vs_raw").and_then(Value::as_f64) {
                    Some(r) => format!(", {r:.2} × raw"),
                    None => String::new(),
                },
                match row.get("digest").and_then(Value::as_str) {
                    Some(d) => format!(", {d} at both ends"),
                    None => String::new(),
                }
            ),
            "messages" => format!(
                "messages    pooled  {:>9.0} /s  unpooled {:.0} /s, pooling gain {:.1}×  ({} B, {} in flight)",
                f(row, "pooled_per_s"),
                f(row, "unpooled_per_s"),
                f(row, "pooling_gain"),
                row["message_size"],
                row["in_flight"]
            ),
            "latency" => format!(
                "latency     p50 {:.0} µs  p90 {:.0} µs  p99 {:.0} µs  max {:.0} µs  ({} round trips, {:.0}/s)",
                f(row, "p50_us"),
                f(row, "p90_us"),
                f(row, "p99_us"),
                f(row, "max_us"),
                row["round_trips"],
                f(row, "per_s")
            ),
            "handshakes" => format!(
                "handshakes  {:>9.0} /s sequential, {:.0} /s with {} in flight",
                f(row, "sequential_per_s"),
                f(row, "parallel_per_s"),
                row["in_flight"]
            ),
            _ => continue,
        };
        crate::output::line_to_stderr(&line);
    }
}
