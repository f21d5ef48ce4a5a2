//! Exit codes, and how an error becomes one.
//!
//! Every failure leaves the process through [`exit_code`], which looks down the error's
//! cause chain for a typed error from the transport (or an explicit [`Coded`] from the
//! command layer) and picks the documented code. The table is in README and the man
//! page; each mapping has a test below.

use qp2p::net::transfer::SendError;
use qp2p::net::upnp::UpnpError;
use qp2p::{ConnectError, Rejection};

/// The documented exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success.
    Success = 0,
    /// Other error (I/O, internal).
    Other = 1,
    /// Usage error.
    Usage = 2,
    /// Could not connect within the retry budget (all raced peers failed).
    Connect = 3,
    /// Peer identity rejected (pinned fingerprint mismatch, not on the allow list, not
    /// issued by a trusted CA).
    Identity = 4,
    /// Transfer failed or refused by the peer (size limit, disk, integrity).
    Transfer = 5,
    /// No UPnP gateway found.
    NoGateway = 6,
    /// The gateway refused the port mapping.
    MappingRefused = 7,
    /// Not reachable from outside (probe failed).
    Unreachable = 8,
    /// Interrupted by SIGINT (Ctrl-C).
    Interrupted = 130,
    /// Terminated by SIGTERM.
    Terminated = 143,
}

impl Exit {
    /// Every code, in order: the table in README and the man page's EXIT STATUS.
    pub const ALL: [Exit; 11] = [
        Exit::Success,
        Exit::Other,
        Exit::Usage,
        Exit::Connect,
        Exit::Identity,
        Exit::Transfer,
        Exit::NoGateway,
        Exit::MappingRefused,
        Exit::Unreachable,
        Exit::Interrupted,
        Exit::Terminated,
    ];

    /// The process exit status.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// What the code means, word for word as in README's table (a test checks).
    pub fn meaning(self) -> &'static str {
        match self {
            Exit::Success => "success",
            Exit::Other => "other error (I/O, internal)",
            Exit::Usage => "usage error",
            Exit::Connect => "could not connect within the retry budget (all raced peers failed)",
            Exit::Identity => {
                "peer identity rejected (pinned fingerprint mismatch, not on the allow list, \
                 not issued by a trusted CA)"
            }
            Exit::Transfer => {
                "transfer failed or refused by the peer (size limit, disk, integrity, bad \
                 name, stdin broken)"
            }
            Exit::NoGateway => "no UPnP gateway found",
            Exit::MappingRefused => "the gateway refused the port mapping",
            Exit::Unreachable => "not reachable from outside (probe failed)",
            Exit::Interrupted => "interrupted (Ctrl-C)",
            Exit::Terminated => "terminated (SIGTERM)",
        }
    }
}

/// An error that carries its exit code explicitly.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Coded {
    /// The code to exit with.
    pub exit: Exit,
    /// What went wrong, one line.
    pub message: String,
}

/// Shorthand for an error with an explicit exit code.
pub fn coded(exit: Exit, message: impl Into<String>) -> anyhow::Error {
    Coded {
        exit,
        message: message.into(),
    }
    .into()
}

/// No way of a ticket with several ways worked: exit 4 when every candidate proved
/// another identity than the one pinned, else 3 (`send`, `bench --peer`).
pub fn unreached(e: qp2p::net::introducer::Unreached) -> anyhow::Error {
    let exit = if e.identity {
        Exit::Identity
    } else {
        Exit::Connect
    };
    coded(exit, e.to_string())
}

fn of_connect(e: &ConnectError) -> Exit {
    match e {
        ConnectError::IdentityRejected(_) => Exit::Identity,
        // Connected, then told no: the transfer failed, not the connecting.
        ConnectError::Closed { .. } => Exit::Transfer,
        _ => Exit::Connect,
    }
}

/// What to do about an error, in the command line's words, where there is advice to
/// give: a peer that refused our identity (the library says who refused and why), a
/// listener too old for the digest we named.
pub fn advice(err: &anyhow::Error) -> Option<&'static str> {
    for cause in err.chain() {
        if let Some(SendError::OlderPeer(_)) = cause.downcast_ref::<SendError>() {
            return Some("send with --digest sha256, which it takes, or upgrade it");
        }
        let connect = match cause.downcast_ref::<SendError>() {
            Some(SendError::Connection(c)) => Some(c),
            _ => cause.downcast_ref::<ConnectError>(),
        };
        if let Some(ConnectError::IdentityRejected(Rejection::ByPeer { alert })) = connect {
            return match alert {
                43 => None,
                45 => Some("qp2p id shows its validity; check both clocks"),
                48 => Some("it trusts only --ca issuers: ours is a self-signed identity, or one from another CA"),
                _ => Some("ask its owner to allow our fingerprint (qp2p id prints it)"),
            };
        }
    }
    None
}

/// The exit code for an error: the first typed error found in its chain decides.
pub fn exit_code(err: &anyhow::Error) -> Exit {
    for cause in err.chain() {
        if let Some(c) = cause.downcast_ref::<Coded>() {
            return c.exit;
        }
        if let Some(e) = cause.downcast_ref::<ConnectError>() {
            return of_connect(e);
        }
        if let Some(e) = cause.downcast_ref::<SendError>() {
            return match e {
                SendError::Connection(c) => of_connect(c),
                _ => Exit::Transfer,
            };
        }
        if let Some(e) = cause.downcast_ref::<UpnpError>() {
            return match e {
                UpnpError::NoGateway { .. } => Exit::NoGateway,
                _ => Exit::MappingRefused,
            };
        }
        if cause.downcast_ref::<clap::Error>().is_some() {
            return Exit::Usage;
        }
        if let Some(e) = cause.downcast_ref::<std::io::Error>() {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Exit::Success;
            }
        }
    }
    Exit::Other
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_refusal_of_our_identity_comes_with_what_to_do() {
        let by_peer = |alert| -> anyhow::Error {
            SendError::Connection(ConnectError::IdentityRejected(Rejection::ByPeer { alert }))
                .into()
        };
        assert!(advice(&by_peer(45)).unwrap().contains("check both clocks"));
        assert!(advice(&by_peer(48))
            .unwrap()
            .contains("a self-signed identity"));
        assert!(advice(&by_peer(46))
            .unwrap()
            .contains("allow our fingerprint"));
        assert_eq!(advice(&by_peer(43)), None);
        let older = SendError::OlderPeer(qp2p::Algorithm::Blake3).into();
        assert!(advice(&older).unwrap().contains("--digest sha256"));
        let by_us = ConnectError::IdentityRejected(Rejection::Tls("x".into()));
        assert_eq!(advice(&by_us.into()), None);
    }

    #[test]
    fn each_error_maps_to_its_documented_code() {
        let timeout = ConnectError::Timeout {
            addr: "127.0.0.1:1".parse().unwrap(),
            timeout: Duration::from_secs(1),
        };
        let cases: Vec<(anyhow::Error, u8)> = vec![
            (anyhow::anyhow!("plain"), 1),
            (coded(Exit::Usage, "bad flag"), 2),
            (anyhow::Error::new(timeout.clone()).context("sending x"), 3),
            (SendError::Connection(timeout).into(), 3),
            (
                ConnectError::IdentityRejected(Rejection::ByPeer { alert: 42 }).into(),
                4,
            ),
            (
                SendError::Connection(ConnectError::IdentityRejected(Rejection::Tls("x".into())))
                    .into(),
                4,
            ),
            (SendError::Refused(quinn::VarInt::from_u32(5)).into(), 5),
            (SendError::Source(std::io::Error::other("x")).into(), 5),
            (SendError::OlderPeer(qp2p::Algorithm::Blake3).into(), 5),
            (coded(Exit::NoGateway, "x"), 6),
            (coded(Exit::MappingRefused, "x"), 7),
            (coded(Exit::Unreachable, "x"), 8),
            (
                UpnpError::NoGateway {
                    timeout: Duration::from_secs(1),
                    detail: "x".into(),
                }
                .into(),
                6,
            ),
            (
                UpnpError::MappingRefused {
                    external_port: 1,
                    local: "192.168.1.2:1".parse().unwrap(),
                    reason: "x".into(),
                }
                .into(),
                7,
            ),
            (UpnpError::NoExternalIp("x".into()).into(), 7),
            (coded(Exit::Interrupted, "x"), 130),
            (
                anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe)),
                0,
            ),
        ];
        for (err, code) in cases {
            assert_eq!(exit_code(&err).code(), code, "{err:#}");
        }
    }

    /// The man page's EXIT STATUS comes from `Exit::meaning`; README's table must say
    /// the same, row for row.
    #[test]
    fn readme_exit_table_matches_the_man_page() {
        let readme = include_str!("../README.md");
        for exit in Exit::ALL {
            let row = format!("| {} | {} |", exit.code(), exit.meaning());
            assert!(readme.contains(&row), "README lacks the row {row}");
        }
    }
}
