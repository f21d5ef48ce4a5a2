//! `qp2p id`: print this host's fingerprint.
//!
//! The fingerprint alone goes to stdout (`fp=$(qp2p id)`), where the identity lives
//! goes to stderr; `--json` gives both as one `id` event.

use super::Context;

/// Print this host's fingerprint (creating the identity on first use).
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Prints the fingerprint.
pub async fn run(_args: Args, ctx: Context) -> anyhow::Result<()> {
    let identity = ctx.identity()?;
    let fp = identity.fingerprint.to_string();
    let dir = identity.dir.as_ref().map(|d| d.display().to_string());
    if ctx.json {
        ctx.out.event(
            serde_json::json!({"event": "id", "fingerprint": fp, "identity": dir}),
            String::new,
        );
    } else {
        println!("{fp}");
        ctx.out.event(serde_json::Value::Null, || match &dir {
            Some(dir) => format!("identity: {dir}"),
            None => "identity: ephemeral (this run only)".to_string(),
        });
    }
    Ok(())
}
