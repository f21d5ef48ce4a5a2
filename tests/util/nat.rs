//! Two home routers and the internet between them, for the introducer and hole-punching
//! tests (needs root and `nft`; see ../shared/testbed/NOTES.md, "Two NATs and a public
//! host").
//!
//! ```text
//! wan    br0   203.0.113.10/24   the "internet": a bridge, and the introducer's host
//!   | veth (bridged)       | veth (bridged)
//! rtra   203.0.113.1/24    rtrb   203.0.113.2/24     nftables: masquerade lan -> wan
//!        192.168.1.1/24           192.168.2.1/24     (port-preserving or `random`),
//!   | veth                   | veth                  inbound only established/related
//! lana   192.168.1.2/24    lanb   192.168.2.2/24     default via their router
//! ```
//!
//! `masquerade` keeps the source port where it can and maps every destination to the
//! same port (endpoint-independent mapping); with the forward chain's policy drop and
//! `ct state established,related accept`, inbound packets pass only from the exact
//! address and port the LAN socket sent to: the common home router. `masquerade
//! random` maps each destination to a new port: a symmetric NAT.
//!
//! Counters on the wan host's input and output hooks count only what the introducer's
//! host sends and receives, not what the bridge forwards between the routers.
//!
//! Names are unique per test (`qp2pt<pid>n<k>…`, the prefix of `netns`, so stale beds
//! of a killed test run are reaped the same way). Nothing touches the root namespace:
//! the veths are created inside the namespaces. [`Nat`] removes every process in its
//! namespaces and the namespaces (with their links and rules) on drop, also when a
//! test panics.

use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;

use super::netns::{reap_stale, remove_namespace, sh, NAME_PREFIX, NEXT};
use super::{Listener, Outcome, Proc, TestDir, BIN};

/// The introducer's host in wan.
pub const WAN_IP: &str = "203.0.113.10";
/// Router A's and B's public addresses.
pub const EXT_A: &str = "203.0.113.1";
pub const EXT_B: &str = "203.0.113.2";
/// The hosts behind them.
pub const LAN_A: &str = "192.168.1.2";
pub const LAN_B: &str = "192.168.2.2";

/// How a router maps ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// `masquerade`: the source port kept where free, the same for every destination.
    Preserving,
    /// `masquerade random`: a new port for each destination (symmetric NAT).
    Symmetric,
}

/// The bed: wan, two routers, two LANs.
pub struct Nat {
    pub wan: String,
    pub rtr_a: String,
    pub rtr_b: String,
    pub lan_a: String,
    pub lan_b: String,
}

fn require_root_and_nft() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the NAT tests need root (network namespaces); run `cargo test --test tests -- --ignored netns_` as root"
    );
    assert!(
        std::path::Path::new("/usr/sbin/nft").exists(),
        "nft is missing: apt-get install -y --no-install-recommends nftables"
    );
}

impl Nat {
    /// Builds the bed with router A (the listener's) and B (the sender's) mapping as
    /// given; panics (after cleaning up) if any step fails.
    pub fn up(a: Mapping, b: Mapping) -> Nat {
        require_root_and_nft();
        reap_stale();
        let p = format!(
            "{NAME_PREFIX}{}n{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let nat = Nat {
            wan: format!("{p}wan"),
            rtr_a: format!("{p}ra"),
            rtr_b: format!("{p}rb"),
            lan_a: format!("{p}la"),
            lan_b: format!("{p}lb"),
        };
        // From here on a panic drops `nat`, which removes whatever exists.
        for ns in nat.all() {
            sh("ip", &["netns", "add", ns]);
            sh("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        let w = &nat.wan;
        sh("ip", &["-n", w, "link", "add", "br0", "type", "bridge"]);
        sh(
            "ip",
            &[
                "-n",
                w,
                "addr",
                "add",
                &format!("{WAN_IP}/24"),
                "dev",
                "br0",
            ],
        );
        sh("ip", &["-n", w, "link", "set", "br0", "up"]);
        for (rtr, lan, wdev, ext, gw, host, mapping) in [
            (&nat.rtr_a, &nat.lan_a, "wa", EXT_A, "192.168.1.1", LAN_A, a),
            (&nat.rtr_b, &nat.lan_b, "wb", EXT_B, "192.168.2.1", LAN_B, b),
        ] {
            sh(
                "ip",
                &[
                    "link", "add", wdev, "netns", w, "type", "veth", "peer", "name", "rwan0",
                    "netns", rtr,
                ],
            );
            sh("ip", &["-n", w, "link", "set", wdev, "master", "br0"]);
            sh("ip", &["-n", w, "link", "set", wdev, "up"]);
            sh(
                "ip",
                &[
                    "link", "add", "lan0", "netns", lan, "type", "veth", "peer", "name", "rlan0",
                    "netns", rtr,
                ],
            );
            for (ns, dev, addr) in [
                (rtr, "rwan0", format!("{ext}/24")),
                (rtr, "rlan0", format!("{gw}/24")),
                (lan, "lan0", format!("{host}/24")),
            ] {
                sh("ip", &["-n", ns, "addr", "add", &addr, "dev", dev]);
                sh("ip", &["-n", ns, "link", "set", dev, "up"]);
            }
            sh("ip", &["-n", lan, "route", "add", "default", "via", gw]);
            sh(
                "ip",
                &[
                    "netns",
                    "exec",
                    rtr,
                    "sh",
                    "-c",
                    "echo 1 > /proc/sys/net/ipv4/ip_forward",
                ],
            );
            nft(rtr, &router_ruleset(mapping));
        }
        nft(
            w,
            "table inet acct {\n\
               chain input {\n type filter hook input priority 0; policy accept;\n counter\n }\n\
               chain output {\n type filter hook output priority 0; policy accept;\n counter\n }\n\
             }\n",
        );
        nat
    }

    fn all(&self) -> [&String; 5] {
        [
            &self.wan,
            &self.rtr_a,
            &self.rtr_b,
            &self.lan_a,
            &self.lan_b,
        ]
    }

    /// `ip netns exec NS qp2p` with the clean environment of [`TestDir::cmd`].
    pub fn qp2p(&self, ns: &str, dir: &TestDir) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, BIN]);
        cmd.env_remove("RUST_LOG");
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("QP2P_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("HOME", dir.home());
        cmd.env("XDG_CONFIG_HOME", dir.home().join("config"));
        cmd.current_dir(dir.home());
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Starts `qp2p ARGS` in `ns`.
    pub fn spawn(&self, ns: &str, dir: &TestDir, args: &[&str]) -> Proc {
        let mut cmd = self.qp2p(ns, dir);
        cmd.args(args);
        Proc::spawn(cmd)
    }

    /// Runs `qp2p ARGS` in `ns` to completion, killed after `timeout`.
    pub fn run(
        &self,
        ns: &str,
        dir: &TestDir,
        args: &[&str],
        timeout: std::time::Duration,
    ) -> Outcome {
        self.spawn(ns, dir, args).finish(timeout)
    }

    /// Starts a `--json listen` in `ns` and waits for `listening`.
    pub fn listen(&self, ns: &str, dir: &TestDir, args: &[&str]) -> Listener {
        Listener::start(self.spawn(ns, dir, args))
    }

    /// Bytes the wan host (the introducer's) received and sent since the bed was made
    /// (nft counters on its input and output hooks).
    pub fn wan_host_bytes(&self) -> (u64, u64) {
        let text = sh(
            "ip",
            &[
                "netns", "exec", &self.wan, "nft", "list", "table", "inet", "acct",
            ],
        );
        let mut counts = text.lines().filter_map(|line| {
            let t: Vec<&str> = line.split_whitespace().collect();
            let i = t.iter().position(|w| *w == "bytes")?;
            t.get(i + 1)?.parse::<u64>().ok()
        });
        let input = counts
            .next()
            .unwrap_or_else(|| panic!("no counter in\n{text}"));
        let output = counts
            .next()
            .unwrap_or_else(|| panic!("no counter in\n{text}"));
        (input, output)
    }

    /// Makes router `ns` forget idle UDP bindings after `seconds`, like many home
    /// routers (30 s).
    pub fn udp_timeout(&self, ns: &str, seconds: u32) {
        for key in [
            "nf_conntrack_udp_timeout",
            "nf_conntrack_udp_timeout_stream",
        ] {
            sh(
                "ip",
                &[
                    "netns",
                    "exec",
                    ns,
                    "sh",
                    "-c",
                    &format!("echo {seconds} > /proc/sys/net/netfilter/{key}"),
                ],
            );
        }
    }

    /// Both routers' rulesets, for failure messages.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for ns in [&self.rtr_a, &self.rtr_b] {
            let rules = Command::new("ip")
                .args(["netns", "exec", ns, "nft", "list", "ruleset"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            out.push_str(&format!("--- {ns} ---\n{rules}\n"));
        }
        out
    }
}

impl Drop for Nat {
    fn drop(&mut self) {
        for ns in self.all() {
            remove_namespace(ns);
        }
    }
}

/// Loads `ruleset` into `ns`'s nftables.
fn nft(ns: &str, ruleset: &str) {
    let file = tempfile::NamedTempFile::new().expect("ruleset file");
    std::fs::write(file.path(), ruleset).expect("write ruleset");
    sh(
        "ip",
        &[
            "netns",
            "exec",
            ns,
            "nft",
            "-f",
            file.path().to_str().unwrap(),
        ],
    );
}

/// A home router: masquerade out of rwan0, inbound (to it and through it) only what
/// belongs to a flow from inside.
fn router_ruleset(mapping: Mapping) -> String {
    let masquerade = match mapping {
        Mapping::Preserving => "masquerade",
        Mapping::Symmetric => "masquerade random",
    };
    format!(
        r#"table inet nat {{
  chain input {{
    type filter hook input priority 0; policy accept;
    iifname "rwan0" ct state established,related accept
    iifname "rwan0" drop
  }}
  chain forward {{
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname "rlan0" oifname "rwan0" accept
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname "rwan0" {masquerade}
  }}
}}
"#
    )
}
