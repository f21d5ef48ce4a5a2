//! Hardening: what hostile peers, bad input and full disks can do to `qp2p`, and what
//! they cannot. Hostile peers are small clients built on the net module; everything runs
//! on loopback (other peer addresses are other addresses of 127.0.0.0/8), each test is
//! bounded in count and time, and every process and mount is undone by a guard.
//!
//! One file a family of attack: [`peers`] (hostile peers: slow-loris, floods, forged
//! and stalled handshakes, the allow list, lying lengths), [`disk`] (a full disk),
//! [`input`] (bad paths and files, bad identities, a closed stdout). The helpers they
//! share are here.

mod disk;
mod input;
mod peers;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use qp2p::net::framing::{ErrorCode, Header, Kind, MessageId};
use qp2p::net::transfer::{send_message, Mode, Source};
use qp2p::{ConnectError, Endpoint, Identity, TransportOptions, TrustRules};

use crate::util::{
    blake3_file, digest, list_all, list_files, path_str, random_bytes, reset_code, sha256,
    Listener, TestDir, EVENT_TIMEOUT, MIB, RUN_TIMEOUT,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A client endpoint with a fresh identity on `ip` (any port). Handshakes may queue
/// behind hundreds of others here, so one attempt may take long.
fn client_on(ip: &str) -> Endpoint {
    let id = Arc::new(Identity::ephemeral().unwrap());
    let options = TransportOptions {
        connect_timeout: Duration::from_secs(20),
        ..TransportOptions::default()
    };
    Endpoint::bind(SocketAddr::new(ip.parse().unwrap(), 0), id, options, None).unwrap()
}

fn addr_of(l: &Listener) -> SocketAddr {
    l.addr.parse().unwrap()
}

fn pinned(l: &Listener) -> TrustRules {
    TrustRules::pinned_to(l.fingerprint.parse().unwrap())
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// The most memory a listener may use under attack (it uses ~10 MiB idle).
const RSS_LIMIT_KIB: u64 = 64 * 1024;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn mkfifo(path: &Path) -> PathBuf {
    let c = std::ffi::CString::new(path_str(path)).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    assert_eq!(rc, 0, "mkfifo {}", path.display());
    path.to_path_buf()
}

/// Free bytes on the filesystem of `path`.
fn free_bytes(path: &Path) -> u64 {
    let c = std::ffi::CString::new(path_str(path)).unwrap();
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: valid path, and `st` is writable memory that statvfs fills on success.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    assert_eq!(rc, 0, "statvfs {}", path.display());
    // SAFETY: statvfs returned 0.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    let free = st.f_bavail as u64 * st.f_frsize as u64;
    free
}

fn header(name: &str, length: Option<u64>) -> Header {
    Header {
        kind: Kind::Message,
        id: MessageId::random(),
        length,
        name: name.to_string(),
        digest: None,
        skip_same: None,
        resume: None,
    }
}
