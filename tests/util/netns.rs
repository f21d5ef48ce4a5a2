//! A real router for the UPnP tests, built from network namespaces (needs root and the
//! Debian packages `nftables miniupnpd-nftables miniupnpc`; see README).
//!
//! ```text
//! wan     wan0  203.0.113.2/24    the "internet": qp2p listeners (probers), STUN on :3478
//!   | veth
//! router  rwan0 203.0.113.1/24    nftables: masquerade lan -> wan, input from wan dropped,
//!         rlan0 192.168.77.1/24   forward from wan only through miniupnpd's chain; miniupnpd
//!   | veth
//! lan     lan0  192.168.77.2/24   default via 192.168.77.1: qp2p upnp-check, listen --upnp
//! ```
//!
//! Facts this relies on (../shared/testbed/NOTES.md has the whole story):
//! - miniupnpd 2.3.1 calls 203.0.113.1 "reserved" and refuses to port-forward unless
//!   STUN tells it the address is public: a tiny STUN responder runs in `wan` (started
//!   first: miniupnpd exits when STUN fails) and miniupnpd is configured to use it.
//! - miniupnpd's nftables build does not create its own chains: the ruleset below
//!   does (`miniupnpd`, `prerouting_miniupnpd`, `postrouting_miniupnpd` in `inet
//!   filter`).
//! - `upnpc` needs `-i` here (the same "reserved" list); `-u URL` skips its 2 s
//!   discovery.
//!
//! Every bed has its own names (`qp2pt<pid>n<k>wan`, …), so parallel tests and parallel
//! runs coexist. Nothing is added to the root namespace: the veths are created directly
//! inside the namespaces, and every address lives there. [`Bed`] removes everything on
//! drop, also when a test panics: the daemons, every process left in the namespaces,
//! the namespaces (with their links and nftables rules) and the state directory. Beds
//! whose test process died without dropping them (SIGKILL) are removed by the next one.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::namespace::{fresh_prefix, reap_stale, remove_namespace, require_root, sh, InNamespace};
use super::{Listener, TestDir};

/// The `wan` peer's address.
pub const WAN_IP: &str = "203.0.113.2";
/// The router's external address.
pub const EXT_IP: &str = "203.0.113.1";
/// The `lan` host's address.
pub const LAN_IP: &str = "192.168.77.2";
/// miniupnpd's device description.
pub const ROOT_DESC: &str = "http://192.168.77.1:5000/rootDesc.xml";

/// A tiny STUN (RFC 5389) binding responder: every binding request gets
/// XOR-MAPPED-ADDRESS (and MAPPED-ADDRESS) = its source; CHANGE-REQUEST is ignored.
const STUN_PY: &str = r#"
import socket, struct, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((host, port))
print("ready", flush=True)
COOKIE = 0x2112A442
while True:
    data, (ip, sport) = s.recvfrom(2048)
    if len(data) < 20:
        continue
    mtype, mlen, cookie = struct.unpack("!HHI", data[:8])
    if mtype != 0x0001:
        continue
    raw = socket.inet_aton(ip)
    xor = struct.pack("!HHBBHI", 0x0020, 8, 0, 1, sport ^ (COOKIE >> 16),
                      struct.unpack("!I", raw)[0] ^ COOKIE)
    mapped = struct.pack("!HHBBH4s", 0x0001, 8, 0, 1, sport, raw)
    body = xor + mapped
    s.sendto(struct.pack("!HHI", 0x0101, len(body), cookie) + data[8:20] + body, (ip, sport))
"#;

/// How the router is set up.
#[derive(Debug, Clone)]
pub struct BedConfig {
    /// Run miniupnpd (without it there is no gateway to find).
    pub miniupnpd: bool,
    /// miniupnpd's `min_lifetime`: shorter leases asked for are raised to it.
    pub min_lifetime: u32,
    /// Hook miniupnpd's DNAT chain into prerouting. Without it miniupnpd accepts
    /// mappings but the NAT never forwards anything: no mapping exists in practice.
    pub dnat: bool,
}

impl Default for BedConfig {
    fn default() -> Self {
        Self {
            miniupnpd: true,
            min_lifetime: 120,
            dnat: true,
        }
    }
}

/// One mapping as `upnpc -l` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// `UDP` or `TCP`.
    pub protocol: String,
    /// The external port.
    pub external_port: u16,
    /// `IP:PORT` it forwards to.
    pub internal: String,
    /// Seconds left on the lease.
    pub lease: u64,
}

/// wan, router and lan namespaces with NAT, STUN and (optionally) miniupnpd.
pub struct Bed {
    /// The namespace names.
    pub wan: String,
    pub router: String,
    pub lan: String,
    state: tempfile::TempDir,
    daemons: Vec<Child>,
    miniupnpd: Option<Child>,
    min_lifetime: u32,
}

fn require_root_and_tools() {
    require_root("the UPnP tests", "upnp netns_");
    for tool in [
        "/usr/sbin/miniupnpd",
        "/usr/bin/upnpc",
        "/usr/sbin/nft",
        "/usr/bin/python3",
    ] {
        assert!(
            std::path::Path::new(tool).exists(),
            "{tool} is missing: apt-get install -y --no-install-recommends nftables \
             miniupnpd-nftables miniupnpc python3"
        );
    }
}

impl Bed {
    /// Builds the bed; panics (after cleaning up) if any step fails.
    pub fn up(config: BedConfig) -> Bed {
        require_root_and_tools();
        reap_stale();
        let prefix = fresh_prefix();
        let mut bed = Bed {
            wan: format!("{prefix}wan"),
            router: format!("{prefix}rtr"),
            lan: format!("{prefix}lan"),
            state: tempfile::Builder::new()
                .prefix("qp2p-netns-")
                .tempdir()
                .expect("state dir"),
            daemons: Vec::new(),
            miniupnpd: None,
            min_lifetime: config.min_lifetime,
        };
        // From here on a panic drops `bed`, which removes whatever exists.
        let (w, r, l) = (bed.wan.clone(), bed.router.clone(), bed.lan.clone());
        for ns in [&w, &r, &l] {
            sh("ip", &["netns", "add", ns]);
            sh("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        sh(
            "ip",
            &[
                "link", "add", "wan0", "netns", &w, "type", "veth", "peer", "name", "rwan0",
                "netns", &r,
            ],
        );
        sh(
            "ip",
            &[
                "link", "add", "lan0", "netns", &l, "type", "veth", "peer", "name", "rlan0",
                "netns", &r,
            ],
        );
        for (ns, dev, addr) in [
            (&w, "wan0", "203.0.113.2/24"),
            (&r, "rwan0", "203.0.113.1/24"),
            (&r, "rlan0", "192.168.77.1/24"),
            (&l, "lan0", "192.168.77.2/24"),
        ] {
            sh("ip", &["-n", ns, "addr", "add", addr, "dev", dev]);
            sh("ip", &["-n", ns, "link", "set", dev, "up"]);
        }
        sh(
            "ip",
            &["-n", &l, "route", "add", "default", "via", "192.168.77.1"],
        );
        sh(
            "ip",
            &[
                "netns",
                "exec",
                &r,
                "sh",
                "-c",
                "echo 1 > /proc/sys/net/ipv4/ip_forward",
            ],
        );
        let ruleset = bed.path("router.nft");
        fs::write(&ruleset, nft_ruleset(config.dnat)).expect("write ruleset");
        sh("ip", &["netns", "exec", &r, "nft", "-f", &ruleset]);

        // STUN first: miniupnpd gives up at start when STUN fails.
        let stun = bed.path("stun.py");
        fs::write(&stun, STUN_PY).expect("write stun.py");
        bed.daemon(
            &w,
            "/usr/bin/python3",
            &["-u", &stun, WAN_IP, "3478"],
            "stun.log",
            "ready",
        );
        if config.miniupnpd {
            bed.start_miniupnpd();
        }
        bed
    }

    fn path(&self, name: &str) -> String {
        self.state.path().join(name).to_string_lossy().into_owned()
    }

    /// Starts a daemon in `ns`, its output in `log`, and waits until `ready` is in it.
    fn daemon(&mut self, ns: &str, program: &str, args: &[&str], log: &str, ready: &str) {
        let child = self.spawn_daemon(ns, program, args, log, ready);
        self.daemons.push(child);
    }

    fn spawn_daemon(
        &self,
        ns: &str,
        program: &str,
        args: &[&str],
        log: &str,
        ready: &str,
    ) -> Child {
        let log_path = PathBuf::from(self.path(log));
        let file = fs::File::create(&log_path).expect("daemon log");
        let err = file.try_clone().expect("daemon log");
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = fs::read_to_string(&log_path).unwrap_or_default();
            if text.contains(ready) {
                return child;
            }
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{program} did not start ({exited:?}):\n{text}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts miniupnpd in the router (the configuration of NOTES.md).
    pub fn start_miniupnpd(&mut self) {
        assert!(self.miniupnpd.is_none(), "miniupnpd is running already");
        let min_lifetime = self.min_lifetime;
        let conf = self.path("miniupnpd.conf");
        let text = format!(
            "ext_ifname=rwan0\nlistening_ip=rlan0\nhttp_port=5000\n\
             ext_perform_stun=yes\next_stun_host={WAN_IP}\next_stun_port=3478\n\
             ipv6_disable=yes\nenable_upnp=yes\nenable_natpmp=yes\nsecure_mode=yes\n\
             system_uptime=no\nnotify_interval=30\nclean_ruleset_interval=600\n\
             lease_file={}\nuuid=6f1c2a3e-8b7d-4c5e-9f10-0a1b2c3d4e5f\n\
             friendly_name=qp2p testbed IGD\nmin_lifetime={min_lifetime}\nmax_lifetime=86400\n\
             allow 1024-65535 192.168.77.0/24 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n",
            self.path("upnp.leases")
        );
        fs::write(&conf, text).expect("write miniupnpd.conf");
        let pidfile = self.path("miniupnpd.pid");
        let child = self.spawn_daemon(
            &self.router,
            "/usr/sbin/miniupnpd",
            &["-d", "-f", &conf, "-P", &pidfile],
            "miniupnpd.log",
            "HTTP listening on port",
        );
        self.miniupnpd = Some(child);
    }

    /// Stops miniupnpd (SIGTERM: it removes its rules, as a rebooting router loses
    /// them) and waits for it to exit.
    pub fn stop_miniupnpd(&mut self) {
        if let Some(mut child) = self.miniupnpd.take() {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // A rebooted router remembers nothing.
        let _ = fs::remove_file(self.path("upnp.leases"));
    }

    /// Sets the MTU of every veth end: `lan` for lan0 and rlan0, `wan` for rwan0 and
    /// wan0.
    pub fn set_mtu(&self, lan: u32, wan: u32) {
        for (ns, dev, mtu) in [
            (&self.lan, "lan0", lan),
            (&self.router, "rlan0", lan),
            (&self.router, "rwan0", wan),
            (&self.wan, "wan0", wan),
        ] {
            sh(
                "ip",
                &["-n", ns, "link", "set", "dev", dev, "mtu", &mtu.to_string()],
            );
        }
    }

    /// A `qp2p --json --ephemeral listen` in wan on [`WAN_IP`] (any port), storing in
    /// `DIR/wan-out`; it also answers probes and serves `bench --peer`.
    pub fn listen_in_wan(&self, dir: &TestDir) -> Listener {
        self.listen_at(&self.wan, dir, &format!("{WAN_IP}:0"), "wan-out", &[])
    }

    /// The mappings miniupnpd has, as `upnpc -i -l` in lan lists them.
    pub fn mappings(&self) -> Vec<Listed> {
        let out = Command::new("ip")
            .args([
                "netns", "exec", &self.lan, "upnpc", "-i", "-u", ROOT_DESC, "-l",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run upnpc");
        parse_upnpc_list(&String::from_utf8_lossy(&out.stdout))
    }

    /// The mapping of UDP `port`, if listed.
    pub fn mapping(&self, port: u16) -> Option<Listed> {
        self.mappings()
            .into_iter()
            .find(|m| m.protocol == "UDP" && m.external_port == port)
    }

    /// Runs `nft COMMAND` in the router (e.g. `insert rule inet filter forward …`).
    pub fn router_nft(&self, command: &str) {
        sh("ip", &["netns", "exec", &self.router, "nft", command]);
    }

    /// The router's logs and ruleset, for failure messages.
    pub fn describe(&self) -> String {
        let log = fs::read_to_string(self.path("miniupnpd.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        let rules = Command::new("ip")
            .args(["netns", "exec", &self.router, "nft", "list", "ruleset"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        format!(
            "--- miniupnpd log (last lines, newest first) ---\n{}\n--- router ruleset ---\n{rules}",
            tail.join("\n")
        )
    }
}

impl InNamespace for Bed {}

impl Drop for Bed {
    fn drop(&mut self) {
        for child in self.miniupnpd.iter_mut().chain(&mut self.daemons) {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in [&self.lan, &self.router, &self.wan] {
            remove_namespace(ns);
        }
    }
}

/// The router's nftables ruleset; `dnat` hooks miniupnpd's DNAT chain.
fn nft_ruleset(dnat: bool) -> String {
    let prerouting = if dnat {
        "iifname \"rwan0\" jump prerouting_miniupnpd"
    } else {
        "# miniupnpd's DNAT chain is deliberately not hooked"
    };
    format!(
        r#"table inet filter {{
  chain input {{
    type filter hook input priority 0; policy accept;
    iifname "rwan0" ct state established,related accept
    iifname "rwan0" drop
  }}
  chain forward {{
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname "rlan0" oifname "rwan0" accept
    iifname "rwan0" oifname "rlan0" jump miniupnpd
  }}
  chain miniupnpd {{
  }}
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    {prerouting}
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname "rwan0" jump postrouting_miniupnpd
    oifname "rwan0" masquerade
  }}
  chain prerouting_miniupnpd {{
  }}
  chain postrouting_miniupnpd {{
  }}
}}
"#
    )
}

/// Parses `upnpc -l` lines like ` 0 UDP  7447->192.168.77.2:7447  'qp2p' '' 3598`.
fn parse_upnpc_list(text: &str) -> Vec<Listed> {
    text.lines()
        .filter_map(|line| {
            let t: Vec<&str> = line.split_whitespace().collect();
            if t.len() < 4 || t[0].parse::<u32>().is_err() || !matches!(t[1], "UDP" | "TCP") {
                return None;
            }
            let (ext, internal) = t[2].split_once("->")?;
            Some(Listed {
                protocol: t[1].to_string(),
                external_port: ext.parse().ok()?,
                internal: internal.to_string(),
                lease: t.last()?.parse().ok()?,
            })
        })
        .collect()
}

#[test]
fn upnpc_lists_are_parsed() {
    let text = "i protocol exPort->inAddr:inPort description remoteHost leaseTime\n \
                0 UDP  7447->192.168.77.2:7447  'qp2p' '' 28\n \
                1 TCP 40000->192.168.77.2:40001 'test' '' 3598\n";
    let l = parse_upnpc_list(text);
    assert_eq!(l.len(), 2);
    assert_eq!(l[0].external_port, 7447);
    assert_eq!(l[0].internal, "192.168.77.2:7447");
    assert_eq!(l[0].lease, 28);
    assert_eq!(l[1].protocol, "TCP");
}
