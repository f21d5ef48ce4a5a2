//! The command line: one file per subcommand, each an `Args` struct and a `run`.
//!
//! Options shared by every subcommand (`--json`, `-q`, `-v`, `--identity`,
//! `--ephemeral`, `--cert`/`--key`) are global: they may stand before or after the
//! subcommand. Transport options are one flattened struct, [`TransportArgs`], so every
//! subcommand that connects or listens has the same ones with the same defaults; trust
//! options ([`TrustArgs`], `--ca`) likewise.
//!
//! Why `--cert`/`--key` are global and `--ca` is not: the certificate and key *are* the
//! identity, like `--identity`, and `qp2p id` (which shows it, or makes a signing request
//! for its key) needs them as much as `listen` does. `--ca` says which peers to trust,
//! which only matters to a subcommand that meets peers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::error::{coded, Exit};
use crate::output::Output;
use qp2p::net::endpoint::{canonical, Congestion};
use qp2p::net::race::{self, Fate};
use qp2p::net::tls::{CaTrust, TlsError};
use qp2p::{Backoff, Identity, TransportOptions, TrustRules};

pub mod bench;
pub mod generate;
pub mod id;
pub mod listen;
pub mod race_connect;
pub mod send;
pub mod upnp_check;

/// Encrypted peer-to-peer transfer over QUIC.
///
/// Every connection is TLS 1.3 with both sides showing a key; a ticket
/// (FINGERPRINT@HOST:PORT) pins the peer so nobody else can stand in for it.
#[derive(Debug, Parser)]
#[command(
    name = "qp2p",
    version,
    propagate_version = true,
    max_term_width = 100,
    after_help = examples(&[
        "qp2p listen                               # receive into this directory",
        "qp2p send FP@192.0.2.7:7447 report.pdf    # the line that listen printed",
        "tar c photos | qp2p send FP@192.0.2.7 --name photos.tar",
        "qp2p help send                            # options and examples of send",
    ])
)]
pub struct Cli {
    /// Options of every subcommand.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes, before or after its name.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Print one JSON object per line on stdout for every event (errors included).
    #[arg(long, global = true)]
    pub json: bool,
    /// Print errors only.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Identity directory (key.pem, cert.pem) [default: $QP2P_HOME, else ~/.config/qp2p]
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "QP2P_HOME",
        hide_env_values = true
    )]
    pub identity: Option<PathBuf>,
    /// Use a fresh identity that lives in memory for this run only (wins over
    /// --identity and QP2P_HOME).
    #[arg(long, global = true)]
    pub ephemeral: bool,
    /// Use this certificate (PEM; leaf first, then any intermediates), issued by a CA
    /// for the key in --key, as identity [default: the identity directory's cert.pem].
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        requires = "key",
        conflicts_with = "ephemeral"
    )]
    pub cert: Option<PathBuf>,
    /// The private key (PEM, mode 0600) for --cert [default: none; --cert needs it].
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        requires = "cert",
        conflicts_with = "ephemeral"
    )]
    pub key: Option<PathBuf>,
}

/// The subcommands.
///
/// Each one's help (summary, description, examples) is the doc comment and
/// `after_help` of its `Args` struct, in its own file.
// A doc comment on a variant would replace that help: the variants stay bare.
#[allow(missing_docs)]
#[derive(Debug, Subcommand)]
pub enum Command {
    Listen(listen::Args),
    Send(send::Args),
    RaceConnect(race_connect::Args),
    UpnpCheck(upnp_check::Args),
    Bench(bench::Args),
    Id(id::Args),
    Completions(generate::CompletionsArgs),
    Man(generate::ManArgs),
}

/// Transport options of every subcommand that connects or listens.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Transport")]
pub struct TransportArgs {
    /// Close a connection after this long without a packet from the peer.
    #[arg(
        long,
        value_name = "DUR",
        default_value = "30s",
        value_parser = parse_nonzero_duration,
        env = "QP2P_IDLE_TIMEOUT",
        hide_env_values = true
    )]
    pub idle_timeout: Duration,
    /// Send a keep-alive after this long without traffic (0 = never).
    #[arg(
        long,
        value_name = "DUR",
        default_value = "10s",
        value_parser = parse_duration,
        env = "QP2P_KEEP_ALIVE",
        hide_env_values = true
    )]
    pub keep_alive: Duration,
    /// Give up one handshake attempt after this long.
    #[arg(
        long,
        value_name = "DUR",
        default_value = "2s",
        value_parser = parse_nonzero_duration,
        env = "QP2P_CONNECT_TIMEOUT",
        hide_env_values = true
    )]
    pub connect_timeout: Duration,
    /// Total time for retrying one operation (0 = no retry).
    #[arg(
        long,
        value_name = "DUR",
        default_value = "30s",
        value_parser = parse_duration,
        env = "QP2P_RETRY_FOR",
        hide_env_values = true
    )]
    pub retry_for: Duration,
    /// First retry delay; each next one is 1.5 times longer, ±30 % jitter.
    #[arg(
        long,
        value_name = "DUR",
        default_value = "500ms",
        value_parser = parse_nonzero_duration,
        env = "QP2P_RETRY_INITIAL",
        hide_env_values = true
    )]
    pub retry_initial: Duration,
    /// Longest retry delay.
    #[arg(
        long,
        value_name = "DUR",
        default_value = "15s",
        value_parser = parse_nonzero_duration,
        env = "QP2P_RETRY_MAX",
        hide_env_values = true
    )]
    pub retry_max: Duration,
    /// Congestion controller.
    #[arg(
        long,
        value_enum,
        default_value_t = CongestionArg::Bbr,
        env = "QP2P_CONGESTION",
        hide_env_values = true
    )]
    pub congestion: CongestionArg,
}

/// `--congestion`: the controllers of [`Congestion`], as the command line names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CongestionArg {
    /// Model-based (BBR v1); holds its rate under random loss.
    Bbr,
    /// Loss-based, quinn's own default.
    Cubic,
    /// Loss-based, the classic.
    Newreno,
}

impl From<CongestionArg> for Congestion {
    fn from(arg: CongestionArg) -> Self {
        match arg {
            CongestionArg::Bbr => Congestion::Bbr,
            CongestionArg::Cubic => Congestion::Cubic,
            CongestionArg::Newreno => Congestion::Newreno,
        }
    }
}

impl TransportArgs {
    /// The endpoint's transport settings.
    pub fn options(&self) -> TransportOptions {
        TransportOptions {
            idle_timeout: self.idle_timeout,
            keep_alive: (!self.keep_alive.is_zero()).then_some(self.keep_alive),
            connect_timeout: self.connect_timeout,
            congestion: self.congestion.into(),
            ..TransportOptions::default()
        }
    }

    /// The retry schedule.
    pub fn backoff(&self) -> Backoff {
        Backoff {
            initial: self.retry_initial,
            max: self.retry_max,
            budget: self.retry_for,
            ..Backoff::default()
        }
    }
}

/// An "Examples:" section for a subcommand's help (its `after_help`), headed like
/// clap's own sections. One command per line, a `# comment` after it if useful.
///
/// `qp2p man` turns it into the page's EXAMPLES section (see [`generate`]).
pub fn examples(lines: &[&str]) -> clap::builder::StyledStr {
    let header = *clap::builder::styling::Styles::default().get_header();
    let mut text = format!("{header}{EXAMPLES_HEADING}{header:#}");
    for line in lines {
        text.push_str("\n  ");
        text.push_str(line);
    }
    text.into()
}

/// The heading [`examples`] writes, which `qp2p man` looks for.
pub const EXAMPLES_HEADING: &str = "Examples:";

/// Trust options of every subcommand that connects or listens.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Trust")]
pub struct TrustArgs {
    /// Accept only peers whose certificate a CA in FILE issued (PEM, one or more CA
    /// certificates; repeatable). Combines with tickets, --expect and --allow: each
    /// one given must hold [default: no CA check].
    #[arg(long = "ca", value_name = "FILE")]
    pub ca: Vec<PathBuf>,
}

impl TrustArgs {
    /// The rules every peer must pass besides its own pin: CA trust with `--ca`, none
    /// without. An unreadable file is exit 1, one that holds no usable CA certificate a
    /// usage error.
    pub fn rules(&self) -> anyhow::Result<TrustRules> {
        if self.ca.is_empty() {
            return Ok(TrustRules::any());
        }
        let ca = CaTrust::load(&self.ca).map_err(|e| match e {
            TlsError::CaIo { .. } => anyhow::Error::new(e),
            e => coded(Exit::Usage, e.to_string()),
        })?;
        Ok(TrustRules::any().with_ca(Some(ca)))
    }
}

/// How to run this very binary from here, for command lines qp2p prints to be copied:
/// `qp2p` when that is what PATH finds, else its path (`target/release/qp2p` in a fresh
/// clone, where `qp2p` alone is "command not found"), quoted for the shell if needed.
pub fn invocation() -> String {
    let Ok(exe) = std::env::current_exe().and_then(std::fs::canonicalize) else {
        return "qp2p".into();
    };
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("qp2p"))
        .find(|candidate| candidate.is_file());
    if on_path.and_then(|p| std::fs::canonicalize(p).ok()).as_ref() == Some(&exe) {
        return "qp2p".into();
    }
    let shown = std::env::current_dir()
        .ok()
        .and_then(|cwd| exe.strip_prefix(cwd).ok().map(PathBuf::from))
        .unwrap_or_else(|| exe.clone());
    let shown = shown.display().to_string();
    let plain = |c: char| c.is_ascii_alphanumeric() || "_./-+@%:,".contains(c);
    if shown.chars().all(plain) {
        shown
    } else {
        format!("'{}'", shown.replace('\'', r"'\''"))
    }
}

/// What every `run` gets besides its arguments.
#[derive(Debug, Clone)]
pub struct Context {
    /// Global options.
    pub json: bool,
    /// Where reports go.
    pub out: Output,
    /// Identity directory, `None` for ephemeral or `--cert/--key`.
    pub identity_dir: Option<PathBuf>,
    /// `--cert` and `--key`, which win over the identity directory.
    pub identity_files: Option<(PathBuf, PathBuf)>,
    /// Cancelled on Ctrl-C / SIGTERM.
    pub shutdown: CancellationToken,
}

impl Context {
    /// The context for the global options.
    pub fn new(global: &GlobalArgs, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let identity_files = global.cert.clone().zip(global.key.clone());
        let identity_dir = if global.ephemeral || identity_files.is_some() {
            None
        } else {
            Some(match &global.identity {
                Some(dir) => dir.clone(),
                None => default_identity_dir()?,
            })
        };
        Ok(Self {
            json: global.json,
            out: Output::new(global.json, global.quiet),
            identity_dir,
            identity_files,
            shutdown,
        })
    }

    /// Loads (or creates) this host's identity; warns when its certificate is outside
    /// its validity period (peers that check it with --ca will refuse it).
    pub fn identity(&self) -> anyhow::Result<Arc<Identity>> {
        let identity = match (&self.identity_files, &self.identity_dir) {
            (Some((cert, key)), _) => Identity::from_files(cert, key)?,
            (None, Some(dir)) => {
                let new = matches!(
                    std::fs::symlink_metadata(dir.join("key.pem")),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound
                );
                let identity = Identity::load_or_create(dir)?;
                if new {
                    self.out.note(&format!(
                        "created a new identity in {} (fingerprint {})",
                        dir.display(),
                        identity.fingerprint
                    ));
                }
                identity
            }
            (None, None) => Identity::ephemeral()?,
        };
        if let Some(problem) = identity.info.validity_problem(std::time::SystemTime::now()) {
            self.out.warn(&format!(
                "our certificate is {problem}: peers that check it (--ca) will refuse it"
            ));
        }
        Ok(Arc::new(identity))
    }
}

fn default_identity_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("qp2p"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("cannot find the identity directory: set QP2P_HOME or HOME, or use --ephemeral")?;
    Ok(PathBuf::from(home).join(".config").join("qp2p"))
}

/// Parses a humantime duration (`500ms`, `30s`, `2m`); a bare `0` is zero.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 500ms, 30s, 2m)"))
}

/// Parses a duration that must be longer than zero (a timeout of 0 would fail
/// everything before it started).
pub fn parse_nonzero_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("must be longer than 0 (examples: 500ms, 30s, 2m)".into()),
        d => Ok(d),
    }
}

/// `send --digest`: the algorithms as the command line names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DigestArg {
    /// BLAKE3, what `b3sum` prints (the default).
    Blake3,
    /// SHA-256, what `sha256sum` prints; also what a listener of qp2p before BLAKE3 takes.
    Sha256,
}

impl From<DigestArg> for qp2p::Algorithm {
    fn from(d: DigestArg) -> Self {
        match d {
            DigestArg::Blake3 => qp2p::Algorithm::Blake3,
            DigestArg::Sha256 => qp2p::Algorithm::Sha256,
        }
    }
}

/// Parses a size: plain bytes, or with a unit (`64KiB`, `1MiB`, `1GiB`, `10MB`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?} (examples: 512, 64KiB, 1MiB, 1GiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "invalid size unit in {s:?} (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"
            ))
        }
    };
    let bytes = num * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("size {s:?} out of range"));
    }
    Ok(bytes as u64)
}

/// The error when every raced address failed: exit 3 (or 4 if every one was an
/// identity rejection), one reason per address.
pub(crate) fn all_failed(losers: Vec<(SocketAddr, Fate)>) -> anyhow::Error {
    let exit = if race::all_identity(losers.iter().map(|(_, f)| f)) {
        Exit::Identity
    } else {
        Exit::Connect
    };
    let reasons: Vec<String> = losers
        .iter()
        .map(|(addr, fate)| format!("{}: {}", canonical(*addr), fate.reason()))
        .collect();
    coded(
        exit,
        format!("could not connect to any address ({})", reasons.join("; ")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("1XB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
    }

    /// Zero timeouts are refused before anything connects.
    #[test]
    fn zero_timeouts_are_usage_errors() {
        assert!(parse_nonzero_duration("0").is_err());
        assert!(parse_nonzero_duration("0s").is_err());
        assert_eq!(parse_nonzero_duration("2s"), Ok(Duration::from_secs(2)));
        for flag in [
            "--connect-timeout",
            "--idle-timeout",
            "--retry-initial",
            "--retry-max",
        ] {
            let parsed = Cli::try_parse_from(["qp2p", "send", flag, "0", "127.0.0.1"]);
            assert!(parsed.is_err(), "{flag} 0 accepted");
        }
        let parsed = Cli::try_parse_from(["qp2p", "listen", "--count", "0"]);
        assert!(parsed.is_err(), "--count 0 accepted");
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_go_before_or_after_the_subcommand() {
        let a = Cli::try_parse_from(["qp2p", "--json", "id"]).unwrap();
        let b = Cli::try_parse_from(["qp2p", "id", "--json"]).unwrap();
        assert!(a.global.json && b.global.json);
    }
}
