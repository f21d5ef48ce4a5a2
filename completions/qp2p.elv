
use builtin;
use str;

set edit:completion:arg-completer[qp2p] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'qp2p'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'qp2p'= {
            cand --identity 'Identity directory (key.pem, cert.pem) [default: $QP2P_HOME, else ~/.config/qp2p]'
            cand --cert 'Use this certificate (PEM; leaf first, then any intermediates), issued by a CA for the key in --key, as identity [default: the identity directory''s cert.pem]'
            cand --key 'The private key (PEM, mode 0600) for --cert [default: none; --cert needs it]'
            cand --json 'Print one JSON object per line on stdout for every event (errors included)'
            cand -q 'Print errors only'
            cand --quiet 'Print errors only'
            cand -v 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)'
            cand --verbose 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)'
            cand --ephemeral 'Use a fresh identity that lives in memory for this run only (wins over --identity and QP2P_HOME)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand listen 'Receive files (or a stream) from senders'
            cand send 'Send files, directories or stdin to a listener'
            cand race-connect 'Dial several peers at once; the first completed handshake wins'
            cand upnp-check 'Check that a UPnP port mapping makes this host reachable from outside'
            cand bench 'Measure throughput, message rate, latency and handshakes'
            cand id 'Print this host''s fingerprint (creating the identity on first use)'
            cand completions 'Print a shell completion script'
            cand man 'Print the manual page (roff), or write every page into a directory'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'qp2p;listen'= {
            cand --bind 'Address and UDP port to listen on: IP:PORT, `[v6]:PORT`, a host name, `:PORT` (all addresses), an address without a port (port 7447); `[::]` is dual-stack, port 0 picks a free one'
            cand --out 'Directory files are stored in'
            cand --count 'Take exactly N messages (from any senders), then exit; one more is refused at once [default: run until stopped]'
            cand --allow 'Admit only senders with this fingerprint (repeatable) [default: admit anyone]'
            cand --allow-file 'Admit only senders whose fingerprint is in FILE (one per line, # comments) [default: admit anyone]'
            cand --max-size 'Refuse messages larger than SIZE (e.g. 512MiB) [default: no limit]'
            cand --partial-ttl 'Keep what arrived of a file whose transfer broke off for DUR after its last byte, hidden in DIR/.qp2p-partial, so that the sender''s next try sends only the rest; 0 keeps nothing (no resume). Older ones are removed at start and while listening'
            cand --lease 'Lease asked for the UPnP mapping; it is renewed at half of it'
            cand --via 'Register with the introducer at TICKET (repeatable) from the listening socket, keep the NAT binding open and register again when the connection is lost; the ticket printed then names every way to this listener [default: no introducer, reachable only at its own addresses]'
            cand --relay-sessions 'Relay sessions at once; more are refused (and logged)'
            cand --relay-bytes 'Bytes a relay session may carry (both directions); past it the session is cut and the sender told why'
            cand --relay-time 'How long a relay session may last'
            cand --max-connections 'Serve at most N connections at once; more are refused before the handshake'
            cand --max-connections-per-ip 'Serve at most N connections at once from one IP address'
            cand --max-streams 'Let one connection have at most N streams (messages) open at once in each direction; a sender wanting more waits'
            cand --header-timeout 'Reset a stream whose header has not arrived within DUR'
            cand --handshake-timeout 'Drop a connection whose handshake has not completed within DUR'
            cand --ca 'Accept only peers whose certificate a CA in FILE issued (PEM, one or more CA certificates; repeatable). Combines with tickets, --expect and --allow: each one given must hold [default: no CA check]'
            cand --idle-timeout 'Close a connection after this long without a packet from the peer'
            cand --keep-alive 'Send a keep-alive after this long without traffic (0 = never)'
            cand --connect-timeout 'Give up one handshake attempt after this long'
            cand --retry-for 'Total time for retrying one operation (0 = no retry)'
            cand --retry-initial 'First retry delay; each next one is 1.5 times longer, ±30 % jitter'
            cand --retry-max 'Longest retry delay'
            cand --congestion 'Congestion controller'
            cand --identity 'Identity directory (key.pem, cert.pem) [default: $QP2P_HOME, else ~/.config/qp2p]'
            cand --cert 'Use this certificate (PEM; leaf first, then any intermediates), issued by a CA for the key in --key, as identity [default: the identity directory''s cert.pem]'
            cand --key 'The private key (PEM, mode 0600) for --cert [default: none; --cert needs it]'
            cand --stdout 'Write payloads to stdout, one whole message after another'
            cand --once 'Take one `send` run, then exit: every message of the first sender''s connection (a whole directory), until it closes; with --stdout, exactly one message. Others are refused at once'
            cand --overwrite 'Replace existing files instead of storing under a new name (name.1.ext)'
            cand --upnp 'Map the listening port on the UPnP gateway for the whole run (renewed before the lease ends, removed on exit); without a gateway, a warning'
            cand --no-probe 'Do not answer reachability probes (`qp2p upnp-check --probe`)'
            cand --introduce 'Also serve as an introducer: listeners behind NAT register here (`--via`) and senders ask for introductions; it learns addresses and fingerprints, never content. --allow/--ca limit who may register or ask'
            cand --relay 'With --introduce, also relay: forward the datagrams of two peers whose punch failed (they stay end to end encrypted), within --relay-sessions, --relay-bytes and --relay-time'
            cand --json 'Print one JSON object per line on stdout for every event (errors included)'
            cand -q 'Print errors only'
            cand --quiet 'Print errors only'
            cand -v 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)'
            cand --verbose 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)'
            cand --ephemeral 'Use a fresh identity that lives in memory for this run only (wins over --identity and QP2P_HOME)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'qp2p;send'= {
            cand --expect 'Refuse the listener unless its fingerprint is FP [default: the ticket''s fingerprint; none for a bare address]'
            cand --name 'Name the receiver stores the data under (one PATH or stdin only) [default: the file''s name, "stdin" for stdin]'
            cand --digest 'The digest both ends compute, compare and report'
            cand --text 'Send TEXT (at most 64 KiB) for the person at the listener to read: shown there, not stored [default: send files or stdin]'
            cand --ca 'Accept only peers whose certificate a CA in FILE issued (PEM, one or more CA certificates; repeatable). Combines with tickets, --expect and --allow: each one given must hold [default: no CA check]'
            cand --idle-timeout 'Close a connection after this long without a packet from the peer'
            cand --keep-alive 'Send a keep-alive after this long without traffic (0 = never)'
            cand --connect-timeout 'Give up one handshake attempt after this long'
            cand --retry-for 'Total time for retrying one operation (0 = no retry)'
            cand --retry-initial 'First retry delay; each next one is 1.5 times longer, ±30 % jitter'
            cand --retry-max 'Longest retry delay'
            cand --congestion 'Congestion controller'
            cand --identity 'Identity directory (key.pem, cert.pem) [default: $QP2P_HOME, else ~/.config/qp2p]'
            cand --cert 'Use this certificate (PEM; leaf first, then any intermediates), issued by a CA for the key in --key, as identity [default: the identity directory''s cert.pem]'
            cand --key 'The private key (PEM, mode 0600) for --cert [default: none; --cert needs it]'
            cand --uni 'Use a unidirectional stream: done when the transport delivered the data, without the receiver''s ack of bytes and hash'
            cand --skip-same 'Skip a file the listener already holds with the same content under the same name (each file is hashed before it is sent) [default: the listener stores another copy as name.1.ext]'
            cand --no-resume 'Send each file whole on every try: no resume offer, so the listener keeps nothing of a try that broke off [default: a file of 1 MiB or more continues where the listener''s copy of a broken-off try ends]'
            cand --json 'Print one JSON object per line on stdout for every event (errors included)'
            cand -q 'Print errors only'
            cand --quiet 'Print errors only'
            cand -v 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)'
            cand --verbose 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)'
            cand --ephemeral 'Use a fresh identity that lives in memory for this run only (wins over --identity and QP2P_HOME)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'qp2p;race-connect'= {
            cand --send 'After winning, send these files or directories (`-` for stdin) to the winner [default: send nothing]'
            cand --digest 'The digest both ends compute, compare and report for what --send sends'
            cand --expect 'Refuse peers given without a ticket unless their fingerprint is FP [default: peers without a ticket are not authenticated]'
            cand --timeout 'Give up the whole race after this long [default: the retry budget]'
            cand --ca 'Accept only peers whose certificate a CA in FILE issued (PEM, one or more CA certificates; repeatable). Combines with tickets, --expect and --allow: each one given must hold [default: no CA check]'
            cand --idle-timeout 'Close a connection after this long without a packet from the peer'
            cand --keep-alive 'Send a keep-alive after this long without traffic (0 = never)'
            cand --connect-timeout 'Give up one handshake attempt after this long'
            cand --retry-for 'Total time for retrying one operation (0 = no retry)'
            cand --retry-initial 'First retry delay; each next one is 1.5 times longer, ±30 % jitter'
            cand --retry-max 'Longest retry delay'
            cand --congestion 'Congestion controller'
            cand --identity 'Identity directory (key.pem, cert.pem) [default: $QP2P_HOME, else ~/.config/qp2p]'
            cand --cert 'Use this certificate (PEM; leaf first, then any intermediates), issued by a CA for the key in --key, as identity [default: the identity directory''s cert.pem]'
            cand --key 'The private key (PEM, mode 0600) for --cert [default: none; --cert needs it]'
            cand --json 'Print one JSON object per line on stdout for every event (errors included)'
            cand -q 'Print errors only'
            cand --quiet 'Print errors only'
            cand -v 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)'
            cand --verbose 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)'
            cand --ephemeral 'Use a fresh identity that lives in memory for this run only (wins over --identity and QP2P_HOME)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'qp2p;upnp-check'= {
            cand --port 'Local UDP port to map; the same external port is asked for [default: a free port]'
            cand --lease 'Lease asked for the mapping (it ends by itself after that)'
            cand --probe 'A `qp2p listen` outside this network that connects back to check reachability: HOST:PORT or a ticket (repeatable; every one must succeed) [default: none, reachability not verified]'
            cand --timeout 'How long to search for the gateway, and to wait for each probe'
            cand --idle-timeout 'Close a connection after this long without a packet from the peer'
            cand --keep-alive 'Send a keep-alive after this long without traffic (0 = never)'
            cand --connect-timeout 'Give up one handshake attempt after this long'
            cand --retry-for 'Total time for retrying one operation (0 = no retry)'
            cand --retry-initial 'First retry delay; each next one is 1.5 times longer, ±30 % jitter'
            cand --retry-max 'Longest retry delay'
            cand --congestion 'Congestion controller'
            cand --identity 'Identity directory (key.pem, cert.pem) [default: $QP2P_HOME, else ~/.config/qp2p]'
            cand --cert 'Use this certificate (PEM; leaf first, then any intermediates), issued by a CA for the key in --key, as identity [default: the identity directory''s cert.pem]'
            cand --key 'The private key (PEM, mode 0600) for --cert [default: none; --cert needs it]'
            cand --keep 'Leave the mapping in place when done (it ends with its lease)'
            cand --json 'Print one JSON object per line on stdout for every event (errors included)'
            cand -q 'Print errors only'
            cand --quiet 'Print errors only'
            cand -v 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)'
            cand --verbose 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)'
            cand --ephemeral 'Use a fresh identity that lives in memory for this run only (wins over --identity and QP2P_HOME)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'qp2p;bench'= {
            cand --peer 'Measure against this running `qp2p listen` [default: both ends in this process, on loopback]'
            cand --scenario 'What to measure'
            cand --size 'Bytes moved by each throughput run'
            cand --message-size 'Size of one message (messages) and of one answer (latency)'
            cand --count 'Messages, round trips or handshakes per run [default: 50000 messages, 10000 round trips, 1000 handshakes; a tenth for unpooled messages]'
            cand --duration 'Upper bound on each run'
            cand --parallel 'Streams for throughput, messages and handshakes in flight [default: 1 stream, 32 in flight; new connections 8 at once with --peer, since a listener admits 16 per address]'
            cand --ca 'Accept only peers whose certificate a CA in FILE issued (PEM, one or more CA certificates; repeatable). Combines with tickets, --expect and --allow: each one given must hold [default: no CA check]'
            cand --idle-timeout 'Close a connection after this long without a packet from the peer'
            cand --keep-alive 'Send a keep-alive after this long without traffic (0 = never)'
            cand --connect-timeout 'Give up one handshake attempt after this long'
            cand --retry-for 'Total time for retrying one operation (0 = no retry)'
            cand --retry-initial 'First retry delay; each next one is 1.5 times longer, ±30 % jitter'
            cand --retry-max 'Longest retry delay'
            cand --congestion 'Congestion controller'
            cand --identity 'Identity directory (key.pem, cert.pem) [default: $QP2P_HOME, else ~/.config/qp2p]'
            cand --cert 'Use this certificate (PEM; leaf first, then any intermediates), issued by a CA for the key in --key, as identity [default: the identity directory''s cert.pem]'
            cand --key 'The private key (PEM, mode 0600) for --cert [default: none; --cert needs it]'
            cand --raw 'Throughput of raw quinn streams only (no header, ack, hashing)'
            cand --json 'Print one JSON object per line on stdout for every event (errors included)'
            cand -q 'Print errors only'
            cand --quiet 'Print errors only'
            cand -v 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)'
            cand --verbose 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)'
            cand --ephemeral 'Use a fresh identity that lives in memory for this run only (wins over --identity and QP2P_HOME)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'qp2p;id'= {
            cand --cn 'Common name (CN) the request asks for [default: this host''s name]'
            cand --identity 'Identity directory (key.pem, cert.pem) [default: $QP2P_HOME, else ~/.config/qp2p]'
            cand --cert 'Use this certificate (PEM; leaf first, then any intermediates), issued by a CA for the key in --key, as identity [default: the identity directory''s cert.pem]'
            cand --key 'The private key (PEM, mode 0600) for --cert [default: none; --cert needs it]'
            cand --csr 'Print a PEM certificate signing request for this identity''s key on stdout instead, for a CA to sign (then use --cert with --key, or cert.pem)'
            cand --json 'Print one JSON object per line on stdout for every event (errors included)'
            cand -q 'Print errors only'
            cand --quiet 'Print errors only'
            cand -v 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)'
            cand --verbose 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)'
            cand --ephemeral 'Use a fresh identity that lives in memory for this run only (wins over --identity and QP2P_HOME)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'qp2p;completions'= {
            cand --identity 'Identity directory (key.pem, cert.pem) [default: $QP2P_HOME, else ~/.config/qp2p]'
            cand --cert 'Use this certificate (PEM; leaf first, then any intermediates), issued by a CA for the key in --key, as identity [default: the identity directory''s cert.pem]'
            cand --key 'The private key (PEM, mode 0600) for --cert [default: none; --cert needs it]'
            cand --json 'Print one JSON object per line on stdout for every event (errors included)'
            cand -q 'Print errors only'
            cand --quiet 'Print errors only'
            cand -v 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)'
            cand --verbose 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)'
            cand --ephemeral 'Use a fresh identity that lives in memory for this run only (wins over --identity and QP2P_HOME)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'qp2p;man'= {
            cand --dir 'Write every page into DIR instead of printing one [default: print to stdout]'
            cand --identity 'Identity directory (key.pem, cert.pem) [default: $QP2P_HOME, else ~/.config/qp2p]'
            cand --cert 'Use this certificate (PEM; leaf first, then any intermediates), issued by a CA for the key in --key, as identity [default: the identity directory''s cert.pem]'
            cand --key 'The private key (PEM, mode 0600) for --cert [default: none; --cert needs it]'
            cand --json 'Print one JSON object per line on stdout for every event (errors included)'
            cand -q 'Print errors only'
            cand --quiet 'Print errors only'
            cand -v 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)'
            cand --verbose 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)'
            cand --ephemeral 'Use a fresh identity that lives in memory for this run only (wins over --identity and QP2P_HOME)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'qp2p;help'= {
            cand listen 'Receive files (or a stream) from senders'
            cand send 'Send files, directories or stdin to a listener'
            cand race-connect 'Dial several peers at once; the first completed handshake wins'
            cand upnp-check 'Check that a UPnP port mapping makes this host reachable from outside'
            cand bench 'Measure throughput, message rate, latency and handshakes'
            cand id 'Print this host''s fingerprint (creating the identity on first use)'
            cand completions 'Print a shell completion script'
            cand man 'Print the manual page (roff), or write every page into a directory'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'qp2p;help;listen'= {
        }
        &'qp2p;help;send'= {
        }
        &'qp2p;help;race-connect'= {
        }
        &'qp2p;help;upnp-check'= {
        }
        &'qp2p;help;bench'= {
        }
        &'qp2p;help;id'= {
        }
        &'qp2p;help;completions'= {
        }
        &'qp2p;help;man'= {
        }
        &'qp2p;help;help'= {
        }
    ]
    $completions[$command]
}
