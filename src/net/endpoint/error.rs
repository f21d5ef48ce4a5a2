//! Why setting up the endpoint or a connection failed, in words: identity rejections
//! told apart from network trouble, the peer's alerts and closes explained.
//!
//! What could go wrong, and how it is prevented:
//! - *Identity rejections mistaken for network trouble*: a TLS alert about certificates,
//!   sent or received, becomes [`ConnectError::IdentityRejected`], which is never retried.
//! - *A bare handshake error instead of a reason*: a [`Rejection`] says which side said
//!   no and why: when we refused the peer, the verifier's
//!   [`tls::Refusal`](super::super::tls::Refusal) ("peer certificate rejected: expired
//!   (not after …)"); when the peer refused us, its alert, named and explained. What to
//!   do about it is the caller's to say (the command line names its own flags).

use std::net::SocketAddr;
use std::time::Duration;

use quinn::ConnectionError;

use super::super::tls::{Fingerprint, Refusal, TlsError};

/// Failure to set up the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The UDP socket could not be opened or bound.
    #[error("could not bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
    /// TLS could not be configured.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A transport option is out of range.
    #[error("{0}")]
    Option(String),
}

/// Why a connection attempt failed. [`Retryable`](super::super::retry::Retryable) tells the
/// retry loop which of these are worth another attempt.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    /// No handshake within the connect timeout (often: nothing listening).
    #[error("no answer from {addr} within {}", super::super::retry::rounded(*timeout))]
    Timeout {
        /// The peer.
        addr: SocketAddr,
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// One side rejected the other's certificate: which, and why.
    #[error("peer identity rejected: {0}")]
    IdentityRejected(Rejection),
    /// The peer refused the connection (closed it with an application code, or spoke
    /// another protocol).
    #[error("refused by peer: {0}")]
    Refused(String),
    /// Every attempt within the retry budget failed; `last` says how the last one did.
    #[error("{}", describe_gave_up(*addr, *after, *attempts, last))]
    GaveUp {
        /// The peer.
        addr: SocketAddr,
        /// How long the attempts took in all.
        after: Duration,
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's error.
        last: Box<ConnectError>,
    },
    /// The peer closed the connection on purpose, with one of our close codes
    /// (`framing::close`): it stopped (Ctrl-C) or takes no more messages. Final: the
    /// peer said so, retrying would meet the same answer.
    #[error("{}", describe_close(*.code, .reason))]
    Closed {
        /// The close code (`framing::close`).
        code: quinn::VarInt,
        /// The peer's reason, as it sent it (may hold anything: escape before showing).
        reason: String,
    },
    /// The connection failed for a transient reason.
    #[error("connection failed: {0}")]
    Lost(ConnectionError),
    /// quinn refused to start the connection (bad address, endpoint stopping).
    #[error("cannot connect: {0}")]
    Invalid(String),
}

impl super::super::retry::Retryable for ConnectError {
    fn is_retryable(&self) -> bool {
        matches!(self, ConnectError::Timeout { .. } | ConnectError::Lost(_))
    }
}

/// Why a handshake failed over identity, and which side said no.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// We refused the certificate the peer at `addr` showed.
    ByUs {
        /// The peer.
        addr: SocketAddr,
        /// The first of our rules it failed.
        refusal: Refusal,
        /// The fingerprints the rules pinned (for [`Refusal::NotPinned`]).
        expected: Vec<Fingerprint>,
    },
    /// The peer refused our certificate with this TLS alert (42 bad_certificate,
    /// 43 unsupported_certificate, 45 certificate_expired, 46 certificate_unknown,
    /// 48 unknown_ca, 49 access_denied, 116 certificate_required).
    ByPeer {
        /// The alert's number.
        alert: u8,
    },
    /// Our TLS stack ended the handshake over the certificate for a reason our verifier
    /// did not record; its own words.
    Tls(String),
}

impl Rejection {
    /// The name of a certificate alert.
    pub fn alert_name(alert: u8) -> &'static str {
        match alert {
            42 => "bad_certificate",
            43 => "unsupported_certificate",
            44 => "certificate_revoked",
            45 => "certificate_expired",
            46 => "certificate_unknown",
            47 => "illegal_parameter",
            48 => "unknown_ca",
            49 => "access_denied",
            116 => "certificate_required",
            _ => "certificate",
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::ByUs {
                addr,
                refusal: Refusal::NotPinned(seen),
                expected,
            } => {
                let expected: Vec<String> = expected.iter().map(|f| f.to_string()).collect();
                write!(
                    f,
                    "{addr} showed fingerprint {seen}, expected {}; nothing was sent",
                    expected.join(" or ")
                )
            }
            Rejection::ByUs { addr, refusal, .. } => {
                write!(f, "{addr}: {refusal}; nothing was sent")
            }
            Rejection::ByPeer { alert } => {
                let why = match alert {
                    43 => {
                        "our certificate's key usage or extended key usage does not allow this use"
                    }
                    45 => "it finds our certificate expired or not yet valid",
                    48 => "our certificate is not issued by a CA it trusts",
                    _ => "it does not accept our certificate",
                };
                write!(
                    f,
                    "the peer refused our identity (TLS alert {alert} {}): {why}",
                    Rejection::alert_name(*alert)
                )
            }
            Rejection::Tls(detail) => f.write_str(detail),
        }
    }
}

/// TLS alerts that mean "I do not accept your certificate".
fn is_certificate_alert(code: u64) -> bool {
    // bad_certificate(42) .. unknown_ca(48), access_denied(49), certificate_required(116)
    code & !0xff == 0x100 && matches!(code & 0xff, 42..=49 | 116)
}

/// Classifies a connection error: identity rejections, refusals, or transient trouble.
pub fn classify(e: ConnectionError) -> ConnectError {
    match &e {
        ConnectionError::TransportError(t) if is_certificate_alert(t.code.into()) => {
            ConnectError::IdentityRejected(Rejection::Tls(t.reason.clone()))
        }
        ConnectionError::ConnectionClosed(c) if is_certificate_alert(c.error_code.into()) => {
            ConnectError::IdentityRejected(Rejection::ByPeer {
                alert: (u64::from(c.error_code) & 0xff) as u8,
            })
        }
        // A listener at its connection limit refuses before the handshake: busy now,
        // maybe not in a moment, so worth another attempt.
        ConnectionError::ConnectionClosed(c)
            if c.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED =>
        {
            ConnectError::Lost(e)
        }
        ConnectionError::ConnectionClosed(c) => {
            ConnectError::Refused(format!("{c}").trim().to_string())
        }
        ConnectionError::TransportError(t) => ConnectError::Refused(t.to_string()),
        // Closed by a listener's limit to make room (it had no stream open): the same
        // "busy", worth another attempt on a new connection.
        ConnectionError::ApplicationClosed(c)
            if c.error_code == super::super::framing::close::REFUSED =>
        {
            ConnectError::Lost(e)
        }
        ConnectionError::ApplicationClosed(c) => {
            let reason = String::from_utf8_lossy(&c.reason).into_owned();
            use super::super::framing::close;
            if c.error_code == close::SHUTDOWN || c.error_code == close::DONE {
                ConnectError::Closed {
                    code: c.error_code,
                    reason,
                }
            } else {
                ConnectError::Refused(reason)
            }
        }
        ConnectionError::VersionMismatch => ConnectError::Refused(e.to_string()),
        _ => ConnectError::Lost(e),
    }
}

fn describe_gave_up(
    addr: SocketAddr,
    after: Duration,
    attempts: u32,
    last: &ConnectError,
) -> String {
    let tries = if attempts == 1 { "attempt" } else { "attempts" };
    let after = super::super::retry::rounded(after);
    match last {
        ConnectError::Timeout { .. } => {
            format!("no answer from {addr} after {after}, {attempts} {tries}")
        }
        last => format!("could not connect to {addr} after {after}, {attempts} {tries}: {last}"),
    }
}

/// What a peer's close means, in words: the reason it gave is quoted, escaped.
fn describe_close(code: quinn::VarInt, reason: &str) -> String {
    use super::super::framing::close;
    let reason = reason.escape_debug();
    if code == close::DONE {
        format!("the peer takes no more messages (it closed the connection: {reason})")
    } else if code == close::SHUTDOWN {
        format!("the peer stopped ({reason})")
    } else {
        format!("the peer closed the connection with code {code} ({reason})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_alerts_are_recognised() {
        assert!(is_certificate_alert(0x100 + 42));
        assert!(is_certificate_alert(0x100 + 49));
        assert!(is_certificate_alert(0x100 + 116));
        assert!(!is_certificate_alert(0x100 + 40), "handshake_failure");
        assert!(!is_certificate_alert(42), "not a crypto code");
    }

    #[test]
    fn a_refusal_by_the_peer_names_its_alert() {
        let said = |alert| Rejection::ByPeer { alert }.to_string();
        let expired = said(45);
        assert!(
            expired.contains("TLS alert 45 certificate_expired"),
            "{expired}"
        );
        assert!(expired.contains("expired or not yet valid"), "{expired}");
        assert!(said(48).contains("unknown_ca"));
        assert!(said(46).contains("certificate_unknown"));
        assert!(said(43).contains("key usage"));
    }
}
