//! `qp2p bench`: in-process with no set-up, and against a running listener, which must
//! throw the data away (nothing lands in DIR) and admit the bench's connections.

use crate::util::{list_all, TestDir};

fn check_scenarios(r: &crate::util::Outcome) {
    r.assert_code(0);
    let rows = r.named("bench");
    for scenario in ["throughput", "messages", "latency", "handshakes"] {
        assert!(
            rows.iter().any(|row| row["scenario"] == scenario),
            "no {scenario} row\n{r}"
        );
    }
    for row in &rows {
        for key in [
            "gbit_s",
            "pooled_per_s",
            "unpooled_per_s",
            "p50_us",
            "sequential_per_s",
            "parallel_per_s",
        ] {
            if let Some(v) = row.get(key) {
                assert!(v.as_f64().unwrap_or(0.0) > 0.0, "{key} in {row}\n{r}");
            }
        }
    }
}

#[test]
fn bench_runs_in_process_with_no_set_up() {
    let t = TestDir::new();
    let r = t.run(&["--json", "bench", "--size", "8MiB", "--count", "200"]);
    check_scenarios(&r);
    let modes: Vec<_> = r
        .named("bench")
        .iter()
        .filter(|row| row["scenario"] == "throughput")
        .map(|row| row["mode"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(modes, ["raw", "framed", "hashed"], "{r}");
    let hashed = r
        .named("bench")
        .into_iter()
        .find(|row| row["mode"] == "hashed")
        .unwrap();
    assert_eq!(hashed["digest"], "blake3", "the default digest: {r}");
}

/// Regression: with the listener's default per-address limit (16), the bench's 32
/// handshakes in flight were refused.
#[test]
fn bench_against_a_listener_writes_nothing_and_is_admitted() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let l = t.listen(&out, &[]);
    let r = t.run(&[
        "--json",
        "--ephemeral",
        "bench",
        "--peer",
        l.ticket.as_str(),
        "--size",
        "8MiB",
        "--count",
        "200",
    ]);
    check_scenarios(&r);
    assert!(
        list_all(&out).is_empty(),
        "bench data was written: {:?}",
        list_all(&out)
    );
}

/// More new connections at once than the listener admits from one address: the bench
/// fails with a message that names the limit and both ways out.
#[test]
fn bench_past_the_listeners_per_address_limit_says_which_limit() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let l = t.listen(&out, &["--max-connections-per-ip", "2"]);
    let r = t.run(&[
        "--ephemeral",
        "bench",
        "--peer",
        l.ticket.as_str(),
        "--scenario",
        "handshakes",
        "--parallel",
        "8",
        "--count",
        "32",
    ]);
    r.assert_no_panic();
    assert_ne!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr.contains("--max-connections-per-ip") && r.stderr.contains("lower --parallel"),
        "{}",
        r.stderr
    );
}
