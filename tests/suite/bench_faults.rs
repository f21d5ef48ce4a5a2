//! Measurements under faults, not checks: run by `bench/faults.sh` (release build,
//! `--ignored --nocapture`), they print tables for the closing notes. Each still asserts
//! what it measures arrived intact, so a broken build cannot print a good figure.

use std::net::UdpSocket;
use std::process::Stdio;
use std::time::Duration;

use crate::util::relay::{Dir, Impairment, Relay};
use crate::util::{digest, path_str, TestDir, MIB};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Time to a winner among one live peer and 0, 3 and 10 black-holed ones: it must not
/// grow with the number of dead peers (they are dialed at once, not one by one).
#[test]
#[ignore = "measurement: run with bench/faults.sh"]
fn bench_race_time_to_winner() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let l = t.listen(&out, &[]);
    println!("\nrace-connect: time to a winner (median of 7 runs)");
    println!(
        "{:>12} {:>14} {:>16}",
        "dead peers", "handshake ms", "whole command ms"
    );
    for dead in [0usize, 3, 10] {
        // Black holes: bound sockets that never answer (and never refuse).
        let holes: Vec<UdpSocket> = (0..dead)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let mut handshake = Vec::new();
        let mut whole = Vec::new();
        for _ in 0..7 {
            let mut args: Vec<String> =
                vec!["--json".into(), "--ephemeral".into(), "race-connect".into()];
            for h in &holes {
                args.push(format!("{}@{}", l.fingerprint, h.local_addr().unwrap()));
            }
            args.push(l.ticket.clone());
            let r = t.run(&args);
            r.assert_code(0);
            let winner = r.one("winner");
            assert_eq!(winner["addr"], l.addr.as_str(), "{r}");
            assert_eq!(r.named("loser").len(), dead, "{r}");
            handshake.push(winner["handshake_ms"].as_f64().unwrap());
            whole.push(r.elapsed.as_secs_f64() * 1000.0);
        }
        println!(
            "{:>12} {:>14.2} {:>16.1}",
            dead,
            median(handshake),
            median(whole)
        );
    }
}

/// Goodput of a 256 MiB transfer through the relay (10 ms each way) at 0 %, 1 % and
/// 5 % loss, against the loss-free figure; BBR (the default) and cubic.
#[test]
#[ignore = "measurement: run with bench/faults.sh"]
fn bench_goodput_under_loss() {
    let size = 256 * MIB;
    let t = TestDir::new();
    let (file, sha) = t.random_file("src/big.bin", size);
    println!(
        "\ngoodput of {} MiB through the relay, 10 ms each way",
        size / MIB
    );
    println!(
        "{:>10} {:>8} {:>10} {:>12}",
        "congestion", "loss", "MiB/s", "vs 0 % loss"
    );
    for cc in ["bbr", "cubic"] {
        let mut base = None;
        for loss in [0.0, 0.01, 0.05] {
            if cc == "cubic" && loss > 0.02 {
                // Loss-based control crawls at 5 % (0.07 MiB/s measured): 256 MiB would
                // take an hour. faults.rs measures it on 8 MiB.
                println!(
                    "{cc:>10} {:>7.0}% {:>10} {:>12}",
                    loss * 100.0,
                    "-",
                    "(skipped)"
                );
                continue;
            }
            let out = t.mkdir(&format!("out-{cc}-{loss}"));
            let mut l = t.listen(&out, &["--congestion", cc]);
            let relay = Relay::to(&l.addr);
            relay.set_both(Impairment::lossy(loss, Duration::from_millis(10)));
            let ticket = format!("{}@{}", l.fingerprint, relay.addr());
            let sender = t.spawn_send(
                &["--congestion", cc, &ticket, path_str(&file)],
                Stdio::null(),
            );
            let r = sender.finish(Duration::from_secs(600));
            r.assert_code(0);
            assert_eq!(digest(r.one("sent")), sha.as_str());
            let recv = l.wait_for("received", Duration::from_secs(30));
            assert_eq!(digest(&recv), sha.as_str());
            let rate = size as f64 / MIB as f64 / r.elapsed.as_secs_f64();
            let base_rate = *base.get_or_insert(rate);
            println!(
                "{cc:>10} {:>7.0}% {:>10.1} {:>12.2}",
                loss * 100.0,
                rate,
                rate / base_rate
            );
            let _ = relay.counters(Dir::ToServer);
        }
    }
}
