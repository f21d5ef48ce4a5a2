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

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::namespace::{fresh_prefix, reap_stale, remove_namespace, require_root, sh, InNamespace};
use super::{path_str, Listener, Outcome, TestDir};

/// The introducer's host in wan.
pub const WAN_IP: &str = "203.0.113.10";
/// Router A's and B's public addresses.
pub const EXT_A: &str = "203.0.113.1";
pub const EXT_B: &str = "203.0.113.2";
/// The hosts behind them.
pub const LAN_A: &str = "192.168.1.2";
pub const LAN_B: &str = "192.168.2.2";

/// Where [`Nat::introducer`] listens.
pub const INTRODUCER: &str = "203.0.113.10:7000";

/// How long a listener may take to register.
pub const REGISTER_TIMEOUT: Duration = Duration::from_secs(15);

/// Hard limit for one run through the bed (a send of 64 MiB through a punched path).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(120);

/// The bed most tests want: routers mapping as given, the introducer in wan (with
/// its extra options), and the listener in lan A registered with it. Dropped in
/// field order: the processes, the scratch directory, then the namespaces.
pub struct Registered {
    pub listener: Listener,
    pub introducer: Listener,
    pub dir: TestDir,
    pub nat: Nat,
}

impl Registered {
    pub fn up(a: Mapping, b: Mapping, introducer: &[&str]) -> Registered {
        let nat = Nat::up(a, b);
        let dir = TestDir::new();
        let introducer = nat.introducer(&dir, introducer);
        let listener = nat.listener_in_a(&dir, &introducer);
        Registered {
            listener,
            introducer,
            dir,
            nat,
        }
    }

    /// [`Nat::send_from_b`] to the listener's ticket.
    pub fn send_from_b(&self, file: &Path) -> Outcome {
        self.nat.send_from_b(&self.dir, &self.listener.ticket, file)
    }
}

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
    require_root("the NAT tests", "netns_");
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
        let p = fresh_prefix();
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

    /// The introducer in wan, `--introduce EXTRA`, on [`WAN_IP`]:7000, with a lasting
    /// identity in DIR/intro-id (so that a restarted one is the same introducer).
    pub fn introducer(&self, dir: &TestDir, extra: &[&str]) -> Listener {
        let out = dir.mkdir("intro-out");
        let id = dir.path().join("intro-id");
        let mut args = vec![
            "--json",
            "--identity",
            path_str(&id),
            "listen",
            "--bind",
            INTRODUCER,
            "--introduce",
            "--out",
            path_str(&out),
        ];
        args.extend_from_slice(extra);
        self.listen(&self.wan, dir, &args)
    }

    /// A listener in `ns` on `bind`, storing in DIR/OUT, registered with `introducer`
    /// (waits for `registered`).
    pub fn registered(
        &self,
        ns: &str,
        dir: &TestDir,
        bind: &str,
        out: &str,
        introducer: &Listener,
        extra: &[&str],
    ) -> Listener {
        let mut args = vec!["--via", introducer.ticket.as_str()];
        args.extend_from_slice(extra);
        let mut l = self.listen_at(ns, dir, bind, out, &args);
        l.wait_for("registered", REGISTER_TIMEOUT);
        l
    }

    /// The listener in lan A on [`LAN_A`]:7447, registered with `introducer` at
    /// [`EXT_A`]:7447 (router A keeps the port).
    pub fn listener_in_a(&self, dir: &TestDir, introducer: &Listener) -> Listener {
        let l = self.registered(
            &self.lan_a,
            dir,
            &format!("{LAN_A}:7447"),
            "a-out",
            introducer,
            &[],
        );
        let reg = l
            .seen
            .iter()
            .find(|e| e["event"] == "registered")
            .expect("registered");
        assert_eq!(
            reg["observed"],
            format!("{EXT_A}:7447"),
            "port-preserving NAT\n{reg}"
        );
        l
    }

    /// `qp2p --json --ephemeral send --retry-for 6s TICKET FILE` from lan B.
    pub fn send_from_b(&self, dir: &TestDir, ticket: &str, file: &Path) -> Outcome {
        self.send(
            &self.lan_b,
            dir,
            &["--retry-for", "6s"],
            ticket,
            file,
            SEND_TIMEOUT,
        )
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

impl InNamespace for Nat {}

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
