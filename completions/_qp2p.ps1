
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'qp2p' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'qp2p'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'qp2p' {
            [CompletionResult]::new('--identity', '--identity', [CompletionResultType]::ParameterName, 'Identity directory (key.pem, cert.pem) [default: $QP2P_HOME, else ~/.config/qp2p]')
            [CompletionResult]::new('--cert', '--cert', [CompletionResultType]::ParameterName, 'Use this certificate (PEM; leaf first, then any intermediates), issued by a CA for the key in --key, as identity [default: the identity directory''s cert.pem]')
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'The private key (PEM, mode 0600) for --cert [default: none; --cert needs it]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object per line on stdout for every event (errors included)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print errors only')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print errors only')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)')
            [CompletionResult]::new('--ephemeral', '--ephemeral', [CompletionResultType]::ParameterName, 'Use a fresh identity that lives in memory for this run only (wins over --identity and QP2P_HOME)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('listen', 'listen', [CompletionResultType]::ParameterValue, 'Receive files (or a stream) from senders')
            [CompletionResult]::new('send', 'send', [CompletionResultType]::ParameterValue, 'Send files, directories or stdin to a listener')
            [CompletionResult]::new('race-connect', 'race-connect', [CompletionResultType]::ParameterValue, 'Dial several peers at once; the first completed handshake wins')
            [CompletionResult]::new('upnp-check', 'upnp-check', [CompletionResultType]::ParameterValue, 'Check that a UPnP port mapping makes this host reachable from outside')
            [CompletionResult]::new('bench', 'bench', [CompletionResultType]::ParameterValue, 'Measure throughput, message rate, latency and handshakes')
            [CompletionResult]::new('id', 'id', [CompletionResultType]::ParameterValue, 'Print this host''s fingerprint (creating the identity on first use)')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Print the manual page (roff), or write every page into a directory')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'qp2p;listen' {
            [CompletionResult]::new('--bind', '--bind', [CompletionResultType]::ParameterName, 'Address and UDP port to listen on: IP:PORT, `[v6]:PORT`, a host name, `:PORT` (all addresses), an address without a port (port 7447); `[::]` is dual-stack, port 0 picks a free one')
            [CompletionResult]::new('--out', '--out', [CompletionResultType]::ParameterName, 'Directory files are stored in')
            [CompletionResult]::new('--count', '--count', [CompletionResultType]::ParameterName, 'Take exactly N messages (from any senders), then exit; one more is refused at once [default: run until stopped]')
            [CompletionResult]::new('--allow', '--allow', [CompletionResultType]::ParameterName, 'Admit only senders with this fingerprint (repeatable) [default: admit anyone]')
            [CompletionResult]::new('--allow-file', '--allow-file', [CompletionResultType]::ParameterName, 'Admit only senders whose fingerprint is in FILE (one per line, # comments) [default: admit anyone]')
            [CompletionResult]::new('--max-size', '--max-size', [CompletionResultType]::ParameterName, 'Refuse messages larger than SIZE (e.g. 512MiB) [default: no limit]')
            [CompletionResult]::new('--partial-ttl', '--partial-ttl', [CompletionResultType]::ParameterName, 'Keep what arrived of a file whose transfer broke off for DUR after its last byte, hidden in DIR/.qp2p-partial, so that the sender''s next try sends only the rest; 0 keeps nothing (no resume). Older ones are removed at start and while listening')
            [CompletionResult]::new('--lease', '--lease', [CompletionResultType]::ParameterName, 'Lease asked for the UPnP mapping; it is renewed at half of it')
            [CompletionResult]::new('--via', '--via', [CompletionResultType]::ParameterName, 'Register with the introducer at TICKET (repeatable) from the listening socket, keep the NAT binding open and register again when the connection is lost; the ticket printed then names every way to this listener [default: no introducer, reachable only at its own addresses]')
            [CompletionResult]::new('--relay-sessions', '--relay-sessions', [CompletionResultType]::ParameterName, 'Relay sessions at once; more are refused (and logged)')
            [CompletionResult]::new('--relay-bytes', '--relay-bytes', [CompletionResultType]::ParameterName, 'Bytes a relay session may carry (both directions); past it the session is cut and the sender told why')
            [CompletionResult]::new('--relay-time', '--relay-time', [CompletionResultType]::ParameterName, 'How long a relay session may last')
            [CompletionResult]::new('--max-connections', '--max-connections', [CompletionResultType]::ParameterName, 'Serve at most N connections at once; more are refused before the handshake')
            [CompletionResult]::new('--max-connections-per-ip', '--max-connections-per-ip', [CompletionResultType]::ParameterName, 'Serve at most N connections at once from one IP address')
            [CompletionResult]::new('--max-streams', '--max-streams', [CompletionResultType]::ParameterName, 'Let one connection have at most N streams (messages) open at once in each direction; a sender wanting more waits')
            [CompletionResult]::new('--header-timeout', '--header-timeout', [CompletionResultType]::ParameterName, 'Reset a stream whose header has not arrived within DUR')
            [CompletionResult]::new('--handshake-timeout', '--handshake-timeout', [CompletionResultType]::ParameterName, 'Drop a connection whose handshake has not completed within DUR')
            [CompletionResult]::new('--ca', '--ca', [CompletionResultType]::ParameterName, 'Accept only peers whose certificate a CA in FILE issued (PEM, one or more CA certificates; repeatable). Combines with tickets, --expect and --allow: each one given must hold [default: no CA check]')
            [CompletionResult]::new('--idle-timeout', '--idle-timeout', [CompletionResultType]::ParameterName, 'Close a connection after this long without a packet from the peer')
            [CompletionResult]::new('--keep-alive', '--keep-alive', [CompletionResultType]::ParameterName, 'Send a keep-alive after this long without traffic (0 = never)')
            [CompletionResult]::new('--connect-timeout', '--connect-timeout', [CompletionResultType]::ParameterName, 'Give up one handshake attempt after this long')
            [CompletionResult]::new('--retry-for', '--retry-for', [CompletionResultType]::ParameterName, 'Total time for retrying one operation (0 = no retry)')
            [CompletionResult]::new('--retry-initial', '--retry-initial', [CompletionResultType]::ParameterName, 'First retry delay; each next one is 1.5 times longer, ±30 % jitter')
            [CompletionResult]::new('--retry-max', '--retry-max', [CompletionResultType]::ParameterName, 'Longest retry delay')
            [CompletionResult]::new('--congestion', '--congestion', [CompletionResultType]::ParameterName, 'Congestion controller')
            [CompletionResult]::new('--identity', '--identity', [CompletionResultType]::ParameterName, 'Identity directory (key.pem, cert.pem) [default: $QP2P_HOME, else ~/.config/qp2p]')
            [CompletionResult]::new('--cert', '--cert', [CompletionResultType]::ParameterName, 'Use this certificate (PEM; leaf first, then any intermediates), issued by a CA for the key in --key, as identity [default: the identity directory''s cert.pem]')
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'The private key (PEM, mode 0600) for --cert [default: none; --cert needs it]')
            [CompletionResult]::new('--stdout', '--stdout', [CompletionResultType]::ParameterName, 'Write payloads to stdout, one whole message after another')
            [CompletionResult]::new('--once', '--once', [CompletionResultType]::ParameterName, 'Take one `send` run, then exit: every message of the first sender''s connection (a whole directory), until it closes; with --stdout, exactly one message. Others are refused at once')
            [CompletionResult]::new('--overwrite', '--overwrite', [CompletionResultType]::ParameterName, 'Replace existing files instead of storing under a new name (name.1.ext)')
            [CompletionResult]::new('--upnp', '--upnp', [CompletionResultType]::ParameterName, 'Map the listening port on the UPnP gateway for the whole run (renewed before the lease ends, removed on exit); without a gateway, a warning')
            [CompletionResult]::new('--no-probe', '--no-probe', [CompletionResultType]::ParameterName, 'Do not answer reachability probes (`qp2p upnp-check --probe`)')
            [CompletionResult]::new('--introduce', '--introduce', [CompletionResultType]::ParameterName, 'Also serve as an introducer: listeners behind NAT register here (`--via`) and senders ask for introductions; it learns addresses and fingerprints, never content. --allow/--ca limit who may register or ask')
            [CompletionResult]::new('--relay', '--relay', [CompletionResultType]::ParameterName, 'With --introduce, also relay: forward the datagrams of two peers whose punch failed (they stay end to end encrypted), within --relay-sessions, --relay-bytes and --relay-time')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object per line on stdout for every event (errors included)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print errors only')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print errors only')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)')
            [CompletionResult]::new('--ephemeral', '--ephemeral', [CompletionResultType]::ParameterName, 'Use a fresh identity that lives in memory for this run only (wins over --identity and QP2P_HOME)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'qp2p;send' {
            [CompletionResult]::new('--expect', '--expect', [CompletionResultType]::ParameterName, 'Refuse the listener unless its fingerprint is FP [default: the ticket''s fingerprint; none for a bare address]')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'Name the receiver stores the data under (one PATH or stdin only) [default: the file''s name, "stdin" for stdin]')
            [CompletionResult]::new('--digest', '--digest', [CompletionResultType]::ParameterName, 'The digest both ends compute, compare and report')
            [CompletionResult]::new('--text', '--text', [CompletionResultType]::ParameterName, 'Send TEXT (at most 64 KiB) for the person at the listener to read: shown there, not stored [default: send files or stdin]')
            [CompletionResult]::new('--ca', '--ca', [CompletionResultType]::ParameterName, 'Accept only peers whose certificate a CA in FILE issued (PEM, one or more CA certificates; repeatable). Combines with tickets, --expect and --allow: each one given must hold [default: no CA check]')
            [CompletionResult]::new('--idle-timeout', '--idle-timeout', [CompletionResultType]::ParameterName, 'Close a connection after this long without a packet from the peer')
            [CompletionResult]::new('--keep-alive', '--keep-alive', [CompletionResultType]::ParameterName, 'Send a keep-alive after this long without traffic (0 = never)')
            [CompletionResult]::new('--connect-timeout', '--connect-timeout', [CompletionResultType]::ParameterName, 'Give up one handshake attempt after this long')
            [CompletionResult]::new('--retry-for', '--retry-for', [CompletionResultType]::ParameterName, 'Total time for retrying one operation (0 = no retry)')
            [CompletionResult]::new('--retry-initial', '--retry-initial', [CompletionResultType]::ParameterName, 'First retry delay; each next one is 1.5 times longer, ±30 % jitter')
            [CompletionResult]::new('--retry-max', '--retry-max', [CompletionResultType]::ParameterName, 'Longest retry delay')
            [CompletionResult]::new('--congestion', '--congestion', [CompletionResultType]::ParameterName, 'Congestion controller')
            [CompletionResult]::new('--identity', '--identity', [CompletionResultType]::ParameterName, 'Identity directory (key.pem, cert.pem) [default: $QP2P_HOME, else ~/.config/qp2p]')
            [CompletionResult]::new('--cert', '--cert', [CompletionResultType]::ParameterName, 'Use this certificate (PEM; leaf first, then any intermediates), issued by a CA for the key in --key, as identity [default: the identity directory''s cert.pem]')
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'The private key (PEM, mode 0600) for --cert [default: none; --cert needs it]')
            [CompletionResult]::new('--uni', '--uni', [CompletionResultType]::ParameterName, 'Use a unidirectional stream: done when the transport delivered the data, without the receiver''s ack of bytes and hash')
            [CompletionResult]::new('--skip-same', '--skip-same', [CompletionResultType]::ParameterName, 'Skip a file the listener already holds with the same content under the same name (each file is hashed before it is sent) [default: the listener stores another copy as name.1.ext]')
            [CompletionResult]::new('--no-resume', '--no-resume', [CompletionResultType]::ParameterName, 'Send each file whole on every try: no resume offer, so the listener keeps nothing of a try that broke off [default: a file of 1 MiB or more continues where the listener''s copy of a broken-off try ends]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object per line on stdout for every event (errors included)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print errors only')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print errors only')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)')
            [CompletionResult]::new('--ephemeral', '--ephemeral', [CompletionResultType]::ParameterName, 'Use a fresh identity that lives in memory for this run only (wins over --identity and QP2P_HOME)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'qp2p;race-connect' {
            [CompletionResult]::new('--send', '--send', [CompletionResultType]::ParameterName, 'After winning, send these files or directories (`-` for stdin) to the winner [default: send nothing]')
            [CompletionResult]::new('--digest', '--digest', [CompletionResultType]::ParameterName, 'The digest both ends compute, compare and report for what --send sends')
            [CompletionResult]::new('--expect', '--expect', [CompletionResultType]::ParameterName, 'Refuse peers given without a ticket unless their fingerprint is FP [default: peers without a ticket are not authenticated]')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up the whole race after this long [default: the retry budget]')
            [CompletionResult]::new('--ca', '--ca', [CompletionResultType]::ParameterName, 'Accept only peers whose certificate a CA in FILE issued (PEM, one or more CA certificates; repeatable). Combines with tickets, --expect and --allow: each one given must hold [default: no CA check]')
            [CompletionResult]::new('--idle-timeout', '--idle-timeout', [CompletionResultType]::ParameterName, 'Close a connection after this long without a packet from the peer')
            [CompletionResult]::new('--keep-alive', '--keep-alive', [CompletionResultType]::ParameterName, 'Send a keep-alive after this long without traffic (0 = never)')
            [CompletionResult]::new('--connect-timeout', '--connect-timeout', [CompletionResultType]::ParameterName, 'Give up one handshake attempt after this long')
            [CompletionResult]::new('--retry-for', '--retry-for', [CompletionResultType]::ParameterName, 'Total time for retrying one operation (0 = no retry)')
            [CompletionResult]::new('--retry-initial', '--retry-initial', [CompletionResultType]::ParameterName, 'First retry delay; each next one is 1.5 times longer, ±30 % jitter')
            [CompletionResult]::new('--retry-max', '--retry-max', [CompletionResultType]::ParameterName, 'Longest retry delay')
            [CompletionResult]::new('--congestion', '--congestion', [CompletionResultType]::ParameterName, 'Congestion controller')
            [CompletionResult]::new('--identity', '--identity', [CompletionResultType]::ParameterName, 'Identity directory (key.pem, cert.pem) [default: $QP2P_HOME, else ~/.config/qp2p]')
            [CompletionResult]::new('--cert', '--cert', [CompletionResultType]::ParameterName, 'Use this certificate (PEM; leaf first, then any intermediates), issued by a CA for the key in --key, as identity [default: the identity directory''s cert.pem]')
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'The private key (PEM, mode 0600) for --cert [default: none; --cert needs it]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object per line on stdout for every event (errors included)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print errors only')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print errors only')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)')
            [CompletionResult]::new('--ephemeral', '--ephemeral', [CompletionResultType]::ParameterName, 'Use a fresh identity that lives in memory for this run only (wins over --identity and QP2P_HOME)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'qp2p;upnp-check' {
            [CompletionResult]::new('--port', '--port', [CompletionResultType]::ParameterName, 'Local UDP port to map; the same external port is asked for [default: a free port]')
            [CompletionResult]::new('--lease', '--lease', [CompletionResultType]::ParameterName, 'Lease asked for the mapping (it ends by itself after that)')
            [CompletionResult]::new('--probe', '--probe', [CompletionResultType]::ParameterName, 'A `qp2p listen` outside this network that connects back to check reachability: HOST:PORT or a ticket (repeatable; every one must succeed) [default: none, reachability not verified]')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'How long to search for the gateway, and to wait for each probe')
            [CompletionResult]::new('--idle-timeout', '--idle-timeout', [CompletionResultType]::ParameterName, 'Close a connection after this long without a packet from the peer')
            [CompletionResult]::new('--keep-alive', '--keep-alive', [CompletionResultType]::ParameterName, 'Send a keep-alive after this long without traffic (0 = never)')
            [CompletionResult]::new('--connect-timeout', '--connect-timeout', [CompletionResultType]::ParameterName, 'Give up one handshake attempt after this long')
            [CompletionResult]::new('--retry-for', '--retry-for', [CompletionResultType]::ParameterName, 'Total time for retrying one operation (0 = no retry)')
            [CompletionResult]::new('--retry-initial', '--retry-initial', [CompletionResultType]::ParameterName, 'First retry delay; each next one is 1.5 times longer, ±30 % jitter')
            [CompletionResult]::new('--retry-max', '--retry-max', [CompletionResultType]::ParameterName, 'Longest retry delay')
            [CompletionResult]::new('--congestion', '--congestion', [CompletionResultType]::ParameterName, 'Congestion controller')
            [CompletionResult]::new('--identity', '--identity', [CompletionResultType]::ParameterName, 'Identity directory (key.pem, cert.pem) [default: $QP2P_HOME, else ~/.config/qp2p]')
            [CompletionResult]::new('--cert', '--cert', [CompletionResultType]::ParameterName, 'Use this certificate (PEM; leaf first, then any intermediates), issued by a CA for the key in --key, as identity [default: the identity directory''s cert.pem]')
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'The private key (PEM, mode 0600) for --cert [default: none; --cert needs it]')
            [CompletionResult]::new('--keep', '--keep', [CompletionResultType]::ParameterName, 'Leave the mapping in place when done (it ends with its lease)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object per line on stdout for every event (errors included)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print errors only')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print errors only')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)')
            [CompletionResult]::new('--ephemeral', '--ephemeral', [CompletionResultType]::ParameterName, 'Use a fresh identity that lives in memory for this run only (wins over --identity and QP2P_HOME)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'qp2p;bench' {
            [CompletionResult]::new('--peer', '--peer', [CompletionResultType]::ParameterName, 'Measure against this running `qp2p listen` [default: both ends in this process, on loopback]')
            [CompletionResult]::new('--scenario', '--scenario', [CompletionResultType]::ParameterName, 'What to measure')
            [CompletionResult]::new('--size', '--size', [CompletionResultType]::ParameterName, 'Bytes moved by each throughput run')
            [CompletionResult]::new('--message-size', '--message-size', [CompletionResultType]::ParameterName, 'Size of one message (messages) and of one answer (latency)')
            [CompletionResult]::new('--count', '--count', [CompletionResultType]::ParameterName, 'Messages, round trips or handshakes per run [default: 50000 messages, 10000 round trips, 1000 handshakes; a tenth for unpooled messages]')
            [CompletionResult]::new('--duration', '--duration', [CompletionResultType]::ParameterName, 'Upper bound on each run')
            [CompletionResult]::new('--parallel', '--parallel', [CompletionResultType]::ParameterName, 'Streams for throughput, messages and handshakes in flight [default: 1 stream, 32 in flight; new connections 8 at once with --peer, since a listener admits 16 per address]')
            [CompletionResult]::new('--ca', '--ca', [CompletionResultType]::ParameterName, 'Accept only peers whose certificate a CA in FILE issued (PEM, one or more CA certificates; repeatable). Combines with tickets, --expect and --allow: each one given must hold [default: no CA check]')
            [CompletionResult]::new('--idle-timeout', '--idle-timeout', [CompletionResultType]::ParameterName, 'Close a connection after this long without a packet from the peer')
            [CompletionResult]::new('--keep-alive', '--keep-alive', [CompletionResultType]::ParameterName, 'Send a keep-alive after this long without traffic (0 = never)')
            [CompletionResult]::new('--connect-timeout', '--connect-timeout', [CompletionResultType]::ParameterName, 'Give up one handshake attempt after this long')
            [CompletionResult]::new('--retry-for', '--retry-for', [CompletionResultType]::ParameterName, 'Total time for retrying one operation (0 = no retry)')
            [CompletionResult]::new('--retry-initial', '--retry-initial', [CompletionResultType]::ParameterName, 'First retry delay; each next one is 1.5 times longer, ±30 % jitter')
            [CompletionResult]::new('--retry-max', '--retry-max', [CompletionResultType]::ParameterName, 'Longest retry delay')
            [CompletionResult]::new('--congestion', '--congestion', [CompletionResultType]::ParameterName, 'Congestion controller')
            [CompletionResult]::new('--identity', '--identity', [CompletionResultType]::ParameterName, 'Identity directory (key.pem, cert.pem) [default: $QP2P_HOME, else ~/.config/qp2p]')
            [CompletionResult]::new('--cert', '--cert', [CompletionResultType]::ParameterName, 'Use this certificate (PEM; leaf first, then any intermediates), issued by a CA for the key in --key, as identity [default: the identity directory''s cert.pem]')
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'The private key (PEM, mode 0600) for --cert [default: none; --cert needs it]')
            [CompletionResult]::new('--raw', '--raw', [CompletionResultType]::ParameterName, 'Throughput of raw quinn streams only (no header, ack, hashing)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object per line on stdout for every event (errors included)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print errors only')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print errors only')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)')
            [CompletionResult]::new('--ephemeral', '--ephemeral', [CompletionResultType]::ParameterName, 'Use a fresh identity that lives in memory for this run only (wins over --identity and QP2P_HOME)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'qp2p;id' {
            [CompletionResult]::new('--cn', '--cn', [CompletionResultType]::ParameterName, 'Common name (CN) the request asks for [default: this host''s name]')
            [CompletionResult]::new('--identity', '--identity', [CompletionResultType]::ParameterName, 'Identity directory (key.pem, cert.pem) [default: $QP2P_HOME, else ~/.config/qp2p]')
            [CompletionResult]::new('--cert', '--cert', [CompletionResultType]::ParameterName, 'Use this certificate (PEM; leaf first, then any intermediates), issued by a CA for the key in --key, as identity [default: the identity directory''s cert.pem]')
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'The private key (PEM, mode 0600) for --cert [default: none; --cert needs it]')
            [CompletionResult]::new('--csr', '--csr', [CompletionResultType]::ParameterName, 'Print a PEM certificate signing request for this identity''s key on stdout instead, for a CA to sign (then use --cert with --key, or cert.pem)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object per line on stdout for every event (errors included)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print errors only')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print errors only')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)')
            [CompletionResult]::new('--ephemeral', '--ephemeral', [CompletionResultType]::ParameterName, 'Use a fresh identity that lives in memory for this run only (wins over --identity and QP2P_HOME)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'qp2p;completions' {
            [CompletionResult]::new('--identity', '--identity', [CompletionResultType]::ParameterName, 'Identity directory (key.pem, cert.pem) [default: $QP2P_HOME, else ~/.config/qp2p]')
            [CompletionResult]::new('--cert', '--cert', [CompletionResultType]::ParameterName, 'Use this certificate (PEM; leaf first, then any intermediates), issued by a CA for the key in --key, as identity [default: the identity directory''s cert.pem]')
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'The private key (PEM, mode 0600) for --cert [default: none; --cert needs it]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object per line on stdout for every event (errors included)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print errors only')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print errors only')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)')
            [CompletionResult]::new('--ephemeral', '--ephemeral', [CompletionResultType]::ParameterName, 'Use a fresh identity that lives in memory for this run only (wins over --identity and QP2P_HOME)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'qp2p;man' {
            [CompletionResult]::new('--dir', '--dir', [CompletionResultType]::ParameterName, 'Write every page into DIR instead of printing one [default: print to stdout]')
            [CompletionResult]::new('--identity', '--identity', [CompletionResultType]::ParameterName, 'Identity directory (key.pem, cert.pem) [default: $QP2P_HOME, else ~/.config/qp2p]')
            [CompletionResult]::new('--cert', '--cert', [CompletionResultType]::ParameterName, 'Use this certificate (PEM; leaf first, then any intermediates), issued by a CA for the key in --key, as identity [default: the identity directory''s cert.pem]')
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'The private key (PEM, mode 0600) for --cert [default: none; --cert needs it]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object per line on stdout for every event (errors included)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print errors only')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print errors only')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)')
            [CompletionResult]::new('--ephemeral', '--ephemeral', [CompletionResultType]::ParameterName, 'Use a fresh identity that lives in memory for this run only (wins over --identity and QP2P_HOME)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'qp2p;help' {
            [CompletionResult]::new('listen', 'listen', [CompletionResultType]::ParameterValue, 'Receive files (or a stream) from senders')
            [CompletionResult]::new('send', 'send', [CompletionResultType]::ParameterValue, 'Send files, directories or stdin to a listener')
            [CompletionResult]::new('race-connect', 'race-connect', [CompletionResultType]::ParameterValue, 'Dial several peers at once; the first completed handshake wins')
            [CompletionResult]::new('upnp-check', 'upnp-check', [CompletionResultType]::ParameterValue, 'Check that a UPnP port mapping makes this host reachable from outside')
            [CompletionResult]::new('bench', 'bench', [CompletionResultType]::ParameterValue, 'Measure throughput, message rate, latency and handshakes')
            [CompletionResult]::new('id', 'id', [CompletionResultType]::ParameterValue, 'Print this host''s fingerprint (creating the identity on first use)')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Print the manual page (roff), or write every page into a directory')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'qp2p;help;listen' {
            break
        }
        'qp2p;help;send' {
            break
        }
        'qp2p;help;race-connect' {
            break
        }
        'qp2p;help;upnp-check' {
            break
        }
        'qp2p;help;bench' {
            break
        }
        'qp2p;help;id' {
            break
        }
        'qp2p;help;completions' {
            break
        }
        'qp2p;help;man' {
            break
        }
        'qp2p;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
