//! A receiver on the qp2p library: listens on ADDR, prints its ticket, stores every
//! message in DIR with the protocol's rules (duplicates, acks, free space, no
//! overwrite). `cargo run --example receiver -- 127.0.0.1:7447 inbox`

use std::sync::Arc;

use qp2p::net::addr::ticket;
use qp2p::{Endpoint, Handler, Identity, Limits, NoProgress, Outcome, Quota, Receiver};
use qp2p::{Router, Server, ServerConfig, Sink, Store, Stream, TransportOptions, TrustRules};

/// Stores each message and says what happened.
struct Inbox(Receiver);

impl Handler for Inbox {
    async fn message(&self, mut stream: Stream) {
        match self.0.serve(&mut stream, &NoProgress).await {
            Outcome::Received { stored, status, .. } => {
                let name = stored.name.unwrap_or_default();
                println!(
                    "{status:?}: {} ({} bytes)",
                    name.escape_debug(),
                    stored.bytes
                )
            }
            Outcome::Text { text, .. } => println!("text: {}", text.escape_debug()),
            other => println!("not stored: {other:?}"),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:7447".into())
        .parse()?;
    let dir = args.next().unwrap_or_else(|| ".".into());

    let identity = Arc::new(Identity::ephemeral()?);
    let options = TransportOptions::default();
    let endpoint = Endpoint::bind(addr, identity, options, Some(TrustRules::any()))?;
    println!(
        "ticket {}",
        ticket(&endpoint.fingerprint(), endpoint.local_addr()?)
    );

    let store = Store::new(dir.as_ref(), false)?;
    let receiver = Receiver::new(Sink::Dir(store), Limits::default(), Quota::default());
    let server = Server::new(endpoint, ServerConfig::default());
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    server.run(Router::new(Inbox(receiver)), stop).await;
    Ok(())
}
