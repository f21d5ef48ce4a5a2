//! A lying introducer on loopback, built from the library's public pieces (its
//! endpoint, server, and the introduction wire): for the tests that check a sender
//! cannot be talked into a connection with the wrong peer, whatever an introducer or
//! its relay says.
//!
//! An honest introducer looks listeners up by the fingerprint asked for, so it never
//! pairs a sender with another listener. [`Liar`] answers every introduction, for any
//! fingerprint, with the address of one `wrong` peer as the listener's observed
//! address (so the sender dials it as a punched candidate), and with `relay` it also
//! offers a relay whose every session forwards the sender's datagrams to `wrong` and
//! back, as a compromised relay would. It counts the bytes that came back from
//! `wrong` through its relay, so a test can tell the relayed handshake really reached
//! that peer.
//!
//! It runs on a thread of its own with its own runtime (as [`super::server`] does);
//! dropping it stops the runtime, its sockets and its tasks.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use qp2p::net::introducer::relay::BIND_MAGIC;
use qp2p::net::introducer::wire::{read_request, Answer, Request, Status};
use qp2p::{Endpoint, Identity, Server, ServerConfig, TransportOptions, TrustRules};
use tokio::net::UdpSocket;

/// A lying introducer (and relay) on 127.0.0.1; stopped when dropped.
pub struct Liar {
    /// `FINGERPRINT@127.0.0.1:PORT`: the introducer's way in a ticket.
    pub ticket: String,
    /// Bytes the relay carried from `wrong` back to senders.
    pub relayed_back: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Liar {
    /// Introduces every sender to `wrong`, and with `relay` relays it there too.
    pub fn start(wrong: SocketAddr, relay: bool) -> Self {
        let (ready, started) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let relayed_back = Arc::new(AtomicU64::new(0));
        let counter = relayed_back.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let identity = Arc::new(Identity::ephemeral().expect("identity"));
                let endpoint = Endpoint::bind(
                    "127.0.0.1:0".parse().unwrap(),
                    identity,
                    TransportOptions::default(),
                    Some(TrustRules::any()),
                )
                .expect("bind");
                let addr = endpoint.local_addr().expect("local address");
                let _ = ready.send((addr, endpoint.fingerprint()));
                let server = Server::new(endpoint, ServerConfig::unlimited());
                let serve = async {
                    while let Some(incoming) = server.accept().await {
                        let counter = counter.clone();
                        tokio::spawn(async move {
                            let Ok(connected) = incoming.accept().await else {
                                return;
                            };
                            let conn = connected.conn;
                            while let Ok((send, recv)) = conn.accept_bi().await {
                                tokio::spawn(answer(
                                    conn.clone(),
                                    send,
                                    recv,
                                    wrong,
                                    relay,
                                    counter.clone(),
                                ));
                            }
                        });
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime here cancels every task and closes every socket.
        });
        let (addr, fingerprint) = started
            .recv_timeout(Duration::from_secs(10))
            .expect("the lying introducer started");
        Liar {
            ticket: qp2p::net::addr::ticket(&fingerprint, addr),
            relayed_back,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

/// Answers one introduction stream with lies about `wrong`.
async fn answer(
    conn: quinn::Connection,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    wrong: SocketAddr,
    relay: bool,
    counter: Arc<AtomicU64>,
) {
    let requester = conn.remote_address();
    let answer = match read_request(&mut recv).await {
        // "The listener you want is at `wrong`; it has punched toward you."
        Ok(Request::Introduce { .. }) => Answer {
            relay,
            addrs: vec![requester, wrong],
            ..Answer::bare(Status::Ok)
        },
        Ok(Request::Relay { .. }) if relay => {
            let socket = UdpSocket::bind("127.0.0.1:0").await.expect("relay socket");
            let at = socket.local_addr().expect("relay address");
            let nonce: [u8; 16] = rand::random();
            tokio::spawn(forward(socket, nonce, wrong, counter));
            Answer {
                addrs: vec![at],
                nonce: Some(nonce),
                ..Answer::bare(Status::Ok)
            }
        }
        _ => Answer::bare(Status::Refused),
    };
    let _ = send.write_all(&answer.encode()).await;
    let _ = send.finish();
    // The sender keeps its relay control connection open while it uses the session.
    conn.closed().await;
}

/// A relay session that latches the sender by its nonce and forwards between it and
/// `wrong`.
async fn forward(socket: UdpSocket, nonce: [u8; 16], wrong: SocketAddr, counter: Arc<AtomicU64>) {
    let mut sender: Option<SocketAddr> = None;
    let mut buf = vec![0u8; 65_536];
    while let Ok(Ok((n, from))) =
        tokio::time::timeout(Duration::from_secs(30), socket.recv_from(&mut buf)).await
    {
        if from == wrong {
            if let Some(to) = sender {
                counter.fetch_add(n as u64, Ordering::SeqCst);
                let _ = socket.send_to(&buf[..n], to).await;
            }
        } else if Some(from) == sender {
            let _ = socket.send_to(&buf[..n], wrong).await;
        } else if n == 24 && buf[..8] == BIND_MAGIC && buf[8..24] == nonce {
            sender = Some(from);
        }
    }
}

impl Drop for Liar {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
