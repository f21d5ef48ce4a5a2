//! A UDP relay on loopback that stands between a `qp2p` sender and a listener and
//! impairs the traffic on command: no root, no `tc netem`, plain threads in the test
//! process.
//!
//! ```text
//!   qp2p send ──▶ relay.addr() ──(one upstream socket per client)──▶ target (listener)
//!             ◀──                ◀──
//! ```
//!
//! Each client, told apart by its source address, gets its own upstream socket, so the
//! listener sees one peer per client, as it would without the relay. While running, a
//! [`Relay`] can, per direction ([`Dir`]): drop a share of datagrams at random, delay
//! them by a fixed time, duplicate a share, and hold a share back for an extra time
//! (reordering) — see [`Impairment`]. Apart from that it can black-hole everything
//! ([`Relay::black_hole`]), one direction ([`Relay::cut`]), or one client
//! ([`Relay::black_hole_client`], [`Relay::black_hole_next_client`]), and switch that
//! off again. Counters ([`Relay::counters`], [`Relay::client_counters`]) say what it
//! saw, forwarded and dropped.
//!
//! How it is built, and why:
//! - One thread reads the public socket, one per client reads that client's upstream
//!   socket (both with a short read timeout, so they notice a stop), and one thread
//!   sends delayed datagrams. Delays are *not* slept on the forwarding threads, which
//!   would serialise the traffic (100 datagrams × 50 ms = 5 s); a delayed datagram goes
//!   into a timer queue (a min-heap by release time, ties in arrival order) and the
//!   timer thread sends it when it is due. With a fixed delay the order is kept; a
//!   held-back datagram overtakes nobody but is overtaken.
//! - Random loss, duplication and hold-back are decided when a datagram arrives. A
//!   black-hole (any of the three kinds) is checked again when a delayed datagram is
//!   released: a link that goes down loses what is in flight on it too.
//! - Sockets ask for 4 MiB kernel buffers, so that bursts are not lost in the kernel
//!   on top of the loss asked for.
//! - Dropping the [`Relay`] stops every thread and joins it.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How often blocked reads wake up to see whether the relay is stopping.
const POLL: Duration = Duration::from_millis(50);
/// Kernel buffer size asked for on every relay socket.
const SOCKET_BUFFER: usize = 4 * 1024 * 1024;
/// Larger than any UDP datagram.
const MAX_DATAGRAM: usize = 65536;

/// A direction through the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// From a client (the sender) to the target (the listener).
    ToServer,
    /// From the target back to a client.
    ToClient,
}

impl Dir {
    /// Both directions.
    pub const BOTH: [Dir; 2] = [Dir::ToServer, Dir::ToClient];

    fn index(self) -> usize {
        match self {
            Dir::ToServer => 0,
            Dir::ToClient => 1,
        }
    }
}

/// What the relay does to the datagrams of one direction. Shares are between 0 and 1.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Impairment {
    /// Share of datagrams dropped at random.
    pub loss: f64,
    /// Fixed delay of every datagram.
    pub delay: Duration,
    /// Share of datagrams sent twice (the copy right after the original).
    pub duplicate: f64,
    /// Share of datagrams held back for [`Impairment::reorder_delay`] on top of
    /// `delay`, so that later ones overtake them.
    pub reorder: f64,
    /// Extra delay of the held-back datagrams.
    pub reorder_delay: Duration,
    /// Datagrams larger than this are dropped, as a narrower link drops them (with the
    /// don't-fragment bit QUIC sets); `None` for no limit.
    pub max_datagram: Option<usize>,
}

impl Impairment {
    /// Everything passes at once.
    pub fn none() -> Impairment {
        Impairment::default()
    }

    /// Only a fixed delay.
    pub fn delay(delay: Duration) -> Impairment {
        Impairment {
            delay,
            ..Impairment::default()
        }
    }

    /// `loss` of the datagrams dropped, the rest delayed by `delay`.
    pub fn lossy(loss: f64, delay: Duration) -> Impairment {
        Impairment {
            loss,
            delay,
            ..Impairment::default()
        }
    }
}

/// What the relay did with the datagrams of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams that arrived.
    pub seen: u64,
    /// Datagrams sent on (copies included).
    pub forwarded: u64,
    /// Bytes sent on (copies included).
    pub forwarded_bytes: u64,
    /// Datagrams dropped: random loss or a black-hole, on arrival or on release.
    pub dropped: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Datagrams (or copies) held back for reordering.
    pub held_back: u64,
}

#[derive(Default)]
struct AtomicCounters {
    seen: AtomicU64,
    forwarded: AtomicU64,
    forwarded_bytes: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    held_back: AtomicU64,
}

impl AtomicCounters {
    fn snapshot(&self) -> Counters {
        Counters {
            seen: self.seen.load(Ordering::SeqCst),
            forwarded: self.forwarded.load(Ordering::SeqCst),
            forwarded_bytes: self.forwarded_bytes.load(Ordering::SeqCst),
            dropped: self.dropped.load(Ordering::SeqCst),
            duplicated: self.duplicated.load(Ordering::SeqCst),
            held_back: self.held_back.load(Ordering::SeqCst),
        }
    }
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::SeqCst);
}

/// The switches a test turns while the relay runs.
#[derive(Default)]
struct Control {
    impairment: [Impairment; 2],
    /// Everything dropped, both directions.
    black_hole: bool,
    /// One direction dropped entirely.
    cut: [bool; 2],
    /// Clients whose datagrams are dropped, and in which directions.
    blocked: HashMap<SocketAddr, [bool; 2]>,
    /// Directions to black-hole for each of the next new clients, in turn.
    block_next: VecDeque<[bool; 2]>,
}

/// One client and its upstream socket.
struct Session {
    client: SocketAddr,
    upstream: Arc<UdpSocket>,
    counters: [AtomicCounters; 2],
}

/// A datagram waiting in the timer queue.
struct Delayed {
    due: Instant,
    seq: u64,
    dir: Dir,
    data: Vec<u8>,
    session: Arc<Session>,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}

impl Eq for Delayed {}

impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Delayed {
    /// Reversed, so that `BinaryHeap` (a max-heap) yields the earliest due first.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Delayed>,
    seq: u64,
}

struct Shared {
    target: SocketAddr,
    public: Arc<UdpSocket>,
    stop: AtomicBool,
    control: Mutex<Control>,
    counters: [AtomicCounters; 2],
    sessions: Mutex<HashMap<SocketAddr, Arc<Session>>>,
    queue: Mutex<Queue>,
    wake: Condvar,
    rng: Mutex<StdRng>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// A running relay; stopped and joined when dropped.
pub struct Relay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    main: Vec<JoinHandle<()>>,
}

impl Relay {
    /// Starts a relay on 127.0.0.1 (a free port) forwarding to `target`; nothing is
    /// impaired until a test says so.
    pub fn start(target: SocketAddr) -> Relay {
        let public = Arc::new(udp_socket().expect("bind the relay's socket"));
        let addr = public.local_addr().expect("relay address");
        let shared = Arc::new(Shared {
            target,
            public,
            stop: AtomicBool::new(false),
            control: Mutex::default(),
            counters: Default::default(),
            sessions: Mutex::default(),
            queue: Mutex::default(),
            wake: Condvar::new(),
            rng: Mutex::new(StdRng::from_entropy()),
            threads: Mutex::default(),
        });
        let s = Arc::clone(&shared);
        let accept = thread::Builder::new()
            .name("relay-public".into())
            .spawn(move || public_loop(&s))
            .expect("spawn relay thread");
        let s = Arc::clone(&shared);
        let timer = thread::Builder::new()
            .name("relay-timer".into())
            .spawn(move || timer_loop(&s))
            .expect("spawn relay timer");
        Relay {
            addr,
            shared,
            main: vec![accept, timer],
        }
    }

    /// Starts a relay to the listener at `target` ("IP:PORT").
    pub fn to(target: &str) -> Relay {
        Relay::start(target.parse().expect("relay target is IP:PORT"))
    }

    /// Starts a relay to `target` ("IP:PORT") that delays every datagram both ways by
    /// `delay`.
    pub fn delayed_to(target: &str, delay: Duration) -> Relay {
        let relay = Relay::to(target);
        relay.set_both(Impairment::delay(delay));
        relay
    }

    /// The address clients send to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the relay forwards to.
    pub fn target(&self) -> SocketAddr {
        self.shared.target
    }

    /// Sets what happens to the datagrams of `dir` from now on.
    pub fn set(&self, dir: Dir, impairment: Impairment) {
        self.control().impairment[dir.index()] = impairment;
    }

    /// Sets the same impairment on both directions.
    pub fn set_both(&self, impairment: Impairment) {
        for dir in Dir::BOTH {
            self.set(dir, impairment);
        }
    }

    /// Drops everything in both directions while `on`, what is in flight included.
    pub fn black_hole(&self, on: bool) {
        self.control().black_hole = on;
    }

    /// Drops everything in `dir` while `on`, what is in flight included.
    pub fn cut(&self, dir: Dir, on: bool) {
        self.control().cut[dir.index()] = on;
    }

    /// Drops the datagrams of `client` (its source address) in `dirs` from now on;
    /// `&Dir::BOTH` cuts it off entirely, `&[]` lets it through again.
    pub fn black_hole_client(&self, client: SocketAddr, dirs: &[Dir]) {
        let mut control = self.control();
        match directions(dirs) {
            [false, false] => control.blocked.remove(&client),
            d => control.blocked.insert(client, d),
        };
    }

    /// Black-holes `dirs` of the next client that shows up (one not seen before), from
    /// its very first datagram on; [`Relay::clients`] names it once it came. Called
    /// twice, it applies to the next two clients, in turn.
    pub fn black_hole_next_client(&self, dirs: &[Dir]) {
        self.control().block_next.push_back(directions(dirs));
    }

    /// The clients seen so far, in no particular order.
    pub fn clients(&self) -> Vec<SocketAddr> {
        self.shared
            .sessions
            .lock()
            .unwrap()
            .keys()
            .copied()
            .collect()
    }

    /// The clients that are black-holed now (in one direction at least).
    pub fn blocked_clients(&self) -> Vec<SocketAddr> {
        self.control().blocked.keys().copied().collect()
    }

    /// What the relay did in `dir`, over all clients.
    pub fn counters(&self, dir: Dir) -> Counters {
        self.shared.counters[dir.index()].snapshot()
    }

    /// What the relay did in `dir` for one client (zero for an unknown one).
    pub fn client_counters(&self, client: SocketAddr, dir: Dir) -> Counters {
        self.shared
            .sessions
            .lock()
            .unwrap()
            .get(&client)
            .map(|s| s.counters[dir.index()].snapshot())
            .unwrap_or_default()
    }

    /// Waits (polling, at most `timeout`) until `cond` holds for the counters of `dir`;
    /// false if it did not.
    pub fn wait_until(
        &self,
        dir: Dir,
        timeout: Duration,
        cond: impl Fn(&Counters) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(&self.counters(dir)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    fn control(&self) -> std::sync::MutexGuard<'_, Control> {
        self.shared.control.lock().unwrap()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        {
            let _queue = self.shared.queue.lock().unwrap();
            self.shared.wake.notify_all();
        }
        for t in self.main.drain(..) {
            let _ = t.join();
        }
        // The public thread is gone, so no new client threads appear.
        let threads: Vec<_> = self.shared.threads.lock().unwrap().drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

/// A UDP socket on 127.0.0.1, a free port, large buffers, reads that time out.
fn udp_socket() -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    let socket: UdpSocket = socket.into();
    socket.set_read_timeout(Some(POLL))?;
    Ok(socket)
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Reads datagrams from clients and forwards them upstream, making a session (and its
/// thread) for every new client.
fn public_loop(shared: &Arc<Shared>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while !shared.stop.load(Ordering::SeqCst) {
        let (n, client) = match shared.public.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) if would_block(&e) => continue,
            // ICMP errors and the like: a relay goes on.
            Err(_) => continue,
        };
        let session = match session_for(shared, client) {
            Some(s) => s,
            None => continue,
        };
        forward(shared, Dir::ToServer, &session, &buf[..n]);
    }
}

/// The session of `client`, made (with its upstream socket and thread) on first sight.
fn session_for(shared: &Arc<Shared>, client: SocketAddr) -> Option<Arc<Session>> {
    let mut sessions = shared.sessions.lock().unwrap();
    if let Some(s) = sessions.get(&client) {
        return Some(Arc::clone(s));
    }
    let upstream = Arc::new(udp_socket().ok()?);
    let session = Arc::new(Session {
        client,
        upstream,
        counters: Default::default(),
    });
    {
        let mut control = shared.control.lock().unwrap();
        if let Some(dirs) = control.block_next.pop_front() {
            control.blocked.insert(client, dirs);
        }
    }
    sessions.insert(client, Arc::clone(&session));
    let s = Arc::clone(shared);
    let sess = Arc::clone(&session);
    let handle = thread::Builder::new()
        .name("relay-upstream".into())
        .spawn(move || upstream_loop(&s, &sess))
        .expect("spawn relay upstream thread");
    shared.threads.lock().unwrap().push(handle);
    Some(session)
}

/// Reads the target's answers to one client and forwards them back.
fn upstream_loop(shared: &Arc<Shared>, session: &Arc<Session>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while !shared.stop.load(Ordering::SeqCst) {
        match session.upstream.recv_from(&mut buf) {
            Ok((n, from)) if from == shared.target => {
                forward(shared, Dir::ToClient, session, &buf[..n]);
            }
            Ok(_) => {}
            Err(e) if would_block(&e) => {}
            Err(_) => {}
        }
    }
}

/// Whether a black-hole swallows `dir` of `session` right now.
fn swallowed(control: &Control, dir: Dir, session: &Session) -> bool {
    control.black_hole
        || control.cut[dir.index()]
        || control
            .blocked
            .get(&session.client)
            .is_some_and(|d| d[dir.index()])
}

/// `dirs` as one flag per direction.
fn directions(dirs: &[Dir]) -> [bool; 2] {
    let mut d = [false; 2];
    for dir in dirs {
        d[dir.index()] = true;
    }
    d
}

/// Applies the impairments of `dir` to one datagram: drops it, or sends it (and a
/// copy) now or through the timer queue.
fn forward(shared: &Shared, dir: Dir, session: &Arc<Session>, data: &[u8]) {
    let i = dir.index();
    let (global, local) = (&shared.counters[i], &session.counters[i]);
    bump(&global.seen, 1);
    bump(&local.seen, 1);
    let (imp, gone) = {
        let control = shared.control.lock().unwrap();
        (control.impairment[i], swallowed(&control, dir, session))
    };
    // Every roll is made, whatever the settings, so one share does not change the
    // random sequence of another.
    let (lost, dup, holds) = {
        let mut rng = shared.rng.lock().unwrap();
        let lost = rng.gen::<f64>() < imp.loss;
        let dup = rng.gen::<f64>() < imp.duplicate;
        let holds = [
            rng.gen::<f64>() < imp.reorder,
            rng.gen::<f64>() < imp.reorder,
        ];
        (lost, dup, holds)
    };
    let too_large = imp.max_datagram.is_some_and(|max| data.len() > max);
    if gone || lost || too_large {
        bump(&global.dropped, 1);
        bump(&local.dropped, 1);
        return;
    }
    let copies = if dup {
        bump(&global.duplicated, 1);
        bump(&local.duplicated, 1);
        2
    } else {
        1
    };
    for held in holds.iter().take(copies) {
        let mut delay = imp.delay;
        if *held {
            delay += imp.reorder_delay;
            bump(&global.held_back, 1);
            bump(&local.held_back, 1);
        }
        if delay.is_zero() {
            send(shared, dir, session, data);
        } else {
            let mut queue = shared.queue.lock().unwrap();
            queue.seq += 1;
            let seq = queue.seq;
            queue.heap.push(Delayed {
                due: Instant::now() + delay,
                seq,
                dir,
                data: data.to_vec(),
                session: Arc::clone(session),
            });
            shared.wake.notify_one();
        }
    }
}

/// Sends one datagram on: upstream to the target, or from the public socket back to
/// the client.
fn send(shared: &Shared, dir: Dir, session: &Session, data: &[u8]) {
    let sent = match dir {
        Dir::ToServer => session.upstream.send_to(data, shared.target),
        Dir::ToClient => shared.public.send_to(data, session.client),
    };
    let i = dir.index();
    let (global, local) = (&shared.counters[i], &session.counters[i]);
    if sent.is_ok() {
        bump(&global.forwarded, 1);
        bump(&local.forwarded, 1);
        bump(&global.forwarded_bytes, data.len() as u64);
        bump(&local.forwarded_bytes, data.len() as u64);
    } else {
        bump(&global.dropped, 1);
        bump(&local.dropped, 1);
    }
}

/// Sends delayed datagrams when they are due; a black-hole that came on meanwhile
/// swallows them.
fn timer_loop(shared: &Shared) {
    let mut queue = shared.queue.lock().unwrap();
    while !shared.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        let next = queue.heap.peek().map(|d| d.due);
        match next {
            Some(due) if due <= now => {
                // Everything due, sent without holding the lock.
                let mut ready = Vec::new();
                while queue.heap.peek().is_some_and(|d| d.due <= now) {
                    ready.push(queue.heap.pop().unwrap());
                }
                drop(queue);
                for d in ready {
                    let gone = swallowed(&shared.control.lock().unwrap(), d.dir, &d.session);
                    if gone {
                        let i = d.dir.index();
                        bump(&shared.counters[i].dropped, 1);
                        bump(&d.session.counters[i].dropped, 1);
                    } else {
                        send(shared, d.dir, &d.session, &d.data);
                    }
                }
                queue = shared.queue.lock().unwrap();
            }
            Some(due) => {
                queue = shared.wake.wait_timeout(queue, due - now).unwrap().0;
            }
            None => {
                queue = shared.wake.wait_timeout(queue, POLL).unwrap().0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The relay itself, with a UDP echo server as its target.

    use super::*;

    /// A UDP echo server on 127.0.0.1, stopped and joined on drop.
    struct Echo {
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl Echo {
        fn start() -> Echo {
            let socket = udp_socket().unwrap();
            let addr = socket.local_addr().unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&stop);
            let thread = thread::spawn(move || {
                let mut buf = vec![0u8; MAX_DATAGRAM];
                while !flag.load(Ordering::SeqCst) {
                    if let Ok((n, from)) = socket.recv_from(&mut buf) {
                        let _ = socket.send_to(&buf[..n], from);
                    }
                }
            });
            Echo {
                addr,
                stop,
                thread: Some(thread),
            }
        }
    }

    impl Drop for Echo {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// A client socket aimed at the relay.
    fn client(relay: &Relay) -> UdpSocket {
        let socket = udp_socket().unwrap();
        socket.connect(relay.addr()).unwrap();
        socket
    }

    /// Sends `n` numbered datagrams (each `pad` bytes long at least), then collects
    /// the numbers echoed back until `quiet` passes without one.
    fn exchange(socket: &UdpSocket, n: u32, pad: usize, quiet: Duration) -> Vec<u32> {
        for i in 0..n {
            let mut msg = i.to_be_bytes().to_vec();
            msg.resize(pad.max(4), 0);
            socket.send(&msg).unwrap();
            if i % 64 == 63 {
                // Keep well inside the kernel's buffers.
                thread::sleep(Duration::from_millis(1));
            }
        }
        collect(socket, quiet)
    }

    fn collect(socket: &UdpSocket, quiet: Duration) -> Vec<u32> {
        socket.set_read_timeout(Some(quiet)).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok(n) = socket.recv(&mut buf) {
            assert!(n >= 4);
            got.push(u32::from_be_bytes(buf[..4].try_into().unwrap()));
        }
        got
    }

    /// One round trip through the relay, expected to come back: its answer awaited for up to 3 s (a thread starved
    /// for a while on a loaded machine is no failure). Sent once, so counters stay exact.
    fn ping(socket: &UdpSocket, tag: u32) -> Option<Duration> {
        ping_within(socket, tag, Duration::from_secs(3))
    }

    /// A ping expected to be lost: its answer awaited for 500 ms.
    fn ping_lost(socket: &UdpSocket, tag: u32) -> Option<Duration> {
        ping_within(socket, tag, Duration::from_millis(500))
    }

    /// One round trip, its answer awaited for `wait`.
    fn ping_within(socket: &UdpSocket, tag: u32, wait: Duration) -> Option<Duration> {
        let start = Instant::now();
        socket.send(&tag.to_be_bytes()).unwrap();
        socket.set_read_timeout(Some(wait)).unwrap();
        let mut buf = [0u8; 64];
        loop {
            let n = socket.recv(&mut buf).ok()?;
            if n >= 4 && u32::from_be_bytes(buf[..4].try_into().unwrap()) == tag {
                return Some(start.elapsed());
            }
        }
    }

    #[test]
    fn relay_passes_everything_unimpaired() {
        let echo = Echo::start();
        let relay = Relay::start(echo.addr);
        assert_eq!(relay.target(), echo.addr);
        let socket = client(&relay);
        let got = exchange(&socket, 2000, 1200, Duration::from_millis(300));
        assert_eq!(got, (0..2000).collect::<Vec<_>>(), "all, in order");
        for dir in Dir::BOTH {
            let c = relay.counters(dir);
            assert_eq!((c.seen, c.forwarded, c.dropped), (2000, 2000, 0), "{dir:?}");
            assert_eq!(c.forwarded_bytes, 2000 * 1200, "{dir:?}");
        }
        let me = socket.local_addr().unwrap();
        assert_eq!(relay.clients(), vec![me]);
        assert_eq!(relay.client_counters(me, Dir::ToClient).forwarded, 2000);
    }

    /// 20 % loss towards the server over 2000 datagrams: the share dropped is 20 %
    /// within ±5 standard deviations (±90), and the counters add up.
    #[test]
    fn relay_loss_share_is_within_bounds() {
        let echo = Echo::start();
        let relay = Relay::start(echo.addr);
        relay.set(Dir::ToServer, Impairment::lossy(0.2, Duration::ZERO));
        let socket = client(&relay);
        let got = exchange(&socket, 2000, 100, Duration::from_millis(300));
        let up = relay.counters(Dir::ToServer);
        assert_eq!(up.seen, 2000);
        assert_eq!(up.forwarded + up.dropped, 2000);
        assert!(
            (310..=490).contains(&up.dropped),
            "dropped {} of 2000 at 20 % loss",
            up.dropped
        );
        assert_eq!(got.len() as u64, up.forwarded, "the rest all came back");
        assert_eq!(relay.counters(Dir::ToClient).dropped, 0);
    }

    /// 30 ms out and 20 ms back: a round trip takes 50 ms and not much more; and 200
    /// datagrams sent at once all come back after about one delay, not 200 of them
    /// (the delay does not serialise the traffic).
    #[test]
    fn relay_delay_is_measured_and_not_serialised() {
        let echo = Echo::start();
        let relay = Relay::start(echo.addr);
        relay.set(Dir::ToServer, Impairment::delay(Duration::from_millis(30)));
        relay.set(Dir::ToClient, Impairment::delay(Duration::from_millis(20)));
        let socket = client(&relay);
        let mut rtts: Vec<Duration> = (0..10)
            .map(|i| ping(&socket, i).expect("ping lost without loss"))
            .collect();
        rtts.sort();
        let (min, median) = (rtts[0], rtts[5]);
        assert!(min >= Duration::from_millis(50), "rtt {min:?} < 50 ms");
        assert!(
            median < Duration::from_millis(80),
            "median rtt {median:?} for 50 ms of delay: {rtts:?}"
        );

        let start = Instant::now();
        for i in 0..200u32 {
            socket.send(&(1000 + i).to_be_bytes()).unwrap();
        }
        let got = collect(&socket, Duration::from_millis(150));
        let took = start.elapsed();
        assert_eq!(got, (1000..1200).collect::<Vec<_>>(), "all, in order");
        // 50 ms of delay plus the 150 ms of quiet that ends `collect`.
        assert!(
            took < Duration::from_millis(400),
            "200 datagrams took {took:?}"
        );
    }

    /// Duplicating half and holding back a quarter for 20 ms: nothing lost, about
    /// half again as many datagrams come back, some out of order.
    #[test]
    fn relay_duplicates_and_reorders() {
        let echo = Echo::start();
        let relay = Relay::start(echo.addr);
        relay.set(
            Dir::ToServer,
            Impairment {
                duplicate: 0.5,
                reorder: 0.25,
                reorder_delay: Duration::from_millis(20),
                ..Impairment::none()
            },
        );
        let socket = client(&relay);
        let got = exchange(&socket, 1000, 100, Duration::from_millis(300));
        let up = relay.counters(Dir::ToServer);
        assert!(
            (400..=600).contains(&up.duplicated),
            "{} of 1000 duplicated at 50 %",
            up.duplicated
        );
        assert_eq!(got.len() as u64, 1000 + up.duplicated);
        let mut unique = got.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique, (0..1000).collect::<Vec<_>>(), "none lost");
        // Overtaken: arrived after a higher number.
        let mut highest = 0;
        let mut overtaken = 0;
        for &n in &got {
            if n < highest {
                overtaken += 1;
            }
            highest = highest.max(n);
        }
        assert!(up.held_back > 200, "{} held back", up.held_back);
        assert!(overtaken > 200, "only {overtaken} out of order");
    }

    /// The black-hole drops everything both ways, also what was in flight, and
    /// traffic resumes when it is switched off.
    #[test]
    fn relay_black_hole_drops_everything_then_resumes() {
        let echo = Echo::start();
        let relay = Relay::start(echo.addr);
        relay.set_both(Impairment::delay(Duration::from_millis(20)));
        let socket = client(&relay);
        assert!(ping(&socket, 1).is_some());

        // In flight (in the relay's timer queue) when the hole opens: lost.
        socket.send(&2u32.to_be_bytes()).unwrap();
        assert!(relay.wait_until(Dir::ToServer, Duration::from_secs(1), |c| c.seen == 2));
        relay.black_hole(true);
        let got = exchange(&socket, 200, 100, Duration::from_millis(200));
        assert!(got.is_empty(), "{} came through the black-hole", got.len());
        let up = relay.counters(Dir::ToServer);
        assert_eq!(up.forwarded, 1, "only the first ping went through");
        assert_eq!(up.dropped, 201);

        relay.black_hole(false);
        let got = exchange(&socket, 200, 100, Duration::from_millis(200));
        assert_eq!(got, (0..200).collect::<Vec<_>>());

        // One direction only.
        relay.cut(Dir::ToClient, true);
        assert!(ping_lost(&socket, 7).is_none());
        let down = relay.counters(Dir::ToClient);
        relay.cut(Dir::ToClient, false);
        assert!(ping(&socket, 8).is_some());
        assert_eq!(
            relay.counters(Dir::ToServer).dropped,
            201,
            "to server passed"
        );
        assert_eq!(down.dropped, 1);
    }

    /// A black-holed client gets nothing through while another passes; released, it
    /// passes again.
    #[test]
    fn relay_black_holes_one_client() {
        let echo = Echo::start();
        let relay = Relay::start(echo.addr);
        relay.black_hole_next_client(&Dir::BOTH);
        relay.black_hole_next_client(&[Dir::ToClient]);
        let stalled = client(&relay);
        let mute = client(&relay);
        let other = client(&relay);
        assert!(
            ping_lost(&stalled, 1).is_none(),
            "the next client is black-holed"
        );
        assert!(ping_lost(&mute, 2).is_none(), "the next one is mute");
        assert!(ping(&other, 3).is_some(), "the third passes");
        let me = stalled.local_addr().unwrap();
        let mut blocked = relay.blocked_clients();
        blocked.sort();
        let mut expected = vec![me, mute.local_addr().unwrap()];
        expected.sort();
        assert_eq!(blocked, expected);
        assert_eq!(relay.client_counters(me, Dir::ToServer).dropped, 1);
        assert_eq!(relay.client_counters(me, Dir::ToClient).seen, 0);
        let m = mute.local_addr().unwrap();
        assert_eq!(relay.client_counters(m, Dir::ToServer).forwarded, 1);
        assert_eq!(relay.client_counters(m, Dir::ToClient).dropped, 1);

        relay.black_hole_client(me, &[]);
        assert!(ping(&stalled, 4).is_some());
        relay.black_hole_client(other.local_addr().unwrap(), &Dir::BOTH);
        assert!(ping_lost(&other, 5).is_none());
        assert!(ping(&stalled, 6).is_some());
    }

    /// The counters wait, and dropping the relay stops its threads (the test would
    /// hang in `drop` otherwise).
    #[test]
    fn relay_stops_on_drop() {
        let echo = Echo::start();
        let relay = Relay::start(echo.addr);
        relay.set_both(Impairment::delay(Duration::from_secs(5)));
        let socket = client(&relay);
        socket.send(b"late").unwrap();
        assert!(relay.wait_until(Dir::ToServer, Duration::from_secs(2), |c| c.seen == 1));
        assert!(
            !relay.wait_until(Dir::ToServer, Duration::from_millis(50), |c| c.forwarded
                == 1)
        );
        let start = Instant::now();
        drop(relay);
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
