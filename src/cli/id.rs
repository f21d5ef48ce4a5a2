//! `qp2p id`: print this host's fingerprint, or a certificate signing request.
//!
//! The fingerprint alone goes to stdout (`fp=$(qp2p id)`); where the identity lives and
//! what its certificate is (self-signed or CA-issued, subject, issuer, validity, key
//! type) go to stderr; `--json` gives all of it as one `id` event. With `--csr`, stdout is a PEM
//! certificate signing request for the identity's key instead, for a CA to sign: the key
//! itself never leaves the machine.

use serde_json::json;

use super::Context;
use crate::error::{coded, Exit};
use qp2p::net::tls::{format_date, IdentityKind};

/// Print this host's fingerprint (creating the identity on first use).
///
/// The fingerprint goes to stdout, where the identity lives to stderr. Give it to the
/// people whose listeners should --allow you, or whose senders should --expect you.
#[derive(Debug, clap::Args)]
#[command(after_help = super::examples(&[
    "qp2p id                                      # show it",
    "qp2p id > me.fp                              # keep it for an --allow-file",
    "qp2p listen --allow \"$(ssh alice qp2p id)\"  # admit only alice",
    "qp2p id --csr > me.csr                       # ask a CA for a certificate",
]))]
pub struct Args {
    /// Print a PEM certificate signing request for this identity's key on stdout
    /// instead, for a CA to sign (then use --cert with --key, or cert.pem).
    #[arg(long)]
    pub csr: bool,
    /// Common name (CN) the request asks for [default: this host's name].
    #[arg(long, value_name = "NAME", requires = "csr")]
    pub cn: Option<String>,
}

/// Prints the fingerprint (or, with `--csr`, a signing request).
pub async fn run(args: Args, ctx: Context) -> anyhow::Result<()> {
    if args.csr && ctx.identity_dir.is_none() && ctx.identity_files.is_none() {
        return Err(coded(
            Exit::Usage,
            "--csr needs a lasting identity: an --ephemeral key is gone after this run",
        ));
    }
    let identity = ctx.identity()?;
    let fp = identity.fingerprint.to_string();
    if args.csr {
        return csr(&args, &ctx, &identity);
    }
    let dir = identity.dir.as_ref().map(|d| d.display().to_string());
    let cert = identity.cert_file.as_ref().map(|f| f.display().to_string());
    let info = &identity.info;
    let kind = identity.kind.as_str();
    if ctx.json {
        ctx.out.event(
            json!({
                "event": "id",
                "fingerprint": fp,
                "identity": dir,
                "cert": cert,
                "kind": kind,
                "key": info.key,
                "subject": info.subject,
                "issuer": info.issuer,
                "not_before": format_date(info.not_before),
                "not_after": format_date(info.not_after),
            }),
            String::new,
        );
    } else {
        println!("{fp}");
        ctx.out.event(serde_json::Value::Null, || {
            let place = match (&cert, &dir) {
                (Some(cert), _) => format!("identity: certificate {cert}"),
                (None, Some(dir)) => format!("identity: {dir}"),
                (None, None) => "identity: ephemeral (this run only)".to_string(),
            };
            let what = match identity.kind {
                IdentityKind::SelfSigned => format!(
                    "certificate: self-signed, subject {}, valid until {}",
                    info.subject,
                    format_date(info.not_after)
                ),
                IdentityKind::CaIssued => format!(
                    "certificate: CA-issued by {}, subject {}, valid {} until {}",
                    info.issuer,
                    info.subject,
                    format_date(info.not_before),
                    format_date(info.not_after)
                ),
            };
            format!("{place}\n{what}, {} key", info.key)
        });
    }
    Ok(())
}

/// Prints the signing request on stdout (in an event with `--json`), and on stderr
/// what to do with the certificate the CA sends back.
fn csr(args: &Args, ctx: &Context, identity: &qp2p::Identity) -> anyhow::Result<()> {
    let cn = match &args.cn {
        Some(cn) => cn.clone(),
        None => host_name(),
    };
    let pem = identity.csr(&cn)?;
    let fp = identity.fingerprint.to_string();
    if ctx.json {
        ctx.out.event(
            json!({"event": "csr", "fingerprint": fp, "subject": format!("CN={cn}"), "csr": pem}),
            String::new,
        );
    } else {
        print!("{pem}");
        let key = match (&ctx.identity_files, &identity.dir) {
            (Some((_, key)), _) => key.display().to_string(),
            (None, Some(dir)) => dir.join("key.pem").display().to_string(),
            (None, None) => "KEY".to_string(),
        };
        let place = match &identity.dir {
            Some(dir) => format!(", or save it as {}", dir.join("cert.pem").display()),
            None => String::new(),
        };
        ctx.out.event(serde_json::Value::Null, || {
            format!(
                "certificate signing request for CN={cn}, fingerprint {fp}: have your CA sign \
                 it, then use --cert CERT --key {key}{place}"
            )
        });
    }
    Ok(())
}

/// This host's name, for the request's common name.
#[cfg(unix)]
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer we own.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..len]) {
        Ok(name) if ok && !name.is_empty() => name.to_string(),
        _ => "qp2p peer".to_string(),
    }
}

/// This host's name, for the request's common name (Windows keeps it in the
/// environment).
#[cfg(not(unix))]
fn host_name() -> String {
    std::env::var("COMPUTERNAME")
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "qp2p peer".to_string())
}
