//! A sender on the qp2p library: sends FILE to the listener a TICKET names
//! (`FINGERPRINT@HOST:PORT`, as `qp2p listen` or the receiver example prints it),
//! refusing any other peer, retrying as the qp2p command does, and checking the
//! receiver's acknowledgement of bytes and digest.
//!
//! `cargo run --example sender -- FP@127.0.0.1:7447 photo.jpg`

use std::path::PathBuf;
use std::sync::Arc;

use qp2p::{Endpoint, Identity, Outgoing, Pool, Sender, Target, TransportOptions, TrustRules};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(ticket), Some(path)) = (args.next(), args.next()) else {
        return Err("usage: sender TICKET FILE".into());
    };
    let target: Target = ticket.parse()?;
    let addr = *target.resolve().await?.first().ok_or("no address")?;
    let rules = TrustRules::any().with_pin(target.expect);

    let identity = Arc::new(Identity::ephemeral()?);
    let endpoint = Endpoint::client(identity, TransportOptions::default())?;
    let sender = Sender::new(Pool::new(endpoint), addr, rules);

    let path = PathBuf::from(path);
    let name = path
        .file_name()
        .ok_or("not a file")?
        .to_string_lossy()
        .into();
    let len = std::fs::metadata(&path)?.len();
    let delivered = sender.send(Outgoing::File { path, name, len }, &()).await?;
    println!(
        "sent {} bytes, stored as {:?}",
        delivered.sent.bytes, delivered.sent.stored_as
    );
    sender.close(false).await;
    Ok(())
}
