# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_qp2p_global_optspecs
    string join \n json q/quiet v/verbose identity= ephemeral cert= key= h/help V/version
end

function __fish_qp2p_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_qp2p_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_qp2p_using_subcommand
    set -l cmd (__fish_qp2p_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c qp2p -n "__fish_qp2p_needs_command" -l identity -d 'Identity directory (key.pem, cert.pem) [default: $QP2P_HOME, else ~/.config/qp2p]' -r -F
complete -c qp2p -n "__fish_qp2p_needs_command" -l cert -d 'Use this certificate (PEM; leaf first, then any intermediates), issued by a CA for the key in --key, as identity [default: the identity directory\'s cert.pem]' -r -F
complete -c qp2p -n "__fish_qp2p_needs_command" -l key -d 'The private key (PEM, mode 0600) for --cert [default: none; --cert needs it]' -r -F
complete -c qp2p -n "__fish_qp2p_needs_command" -l json -d 'Print one JSON object per line on stdout for every event (errors included)'
complete -c qp2p -n "__fish_qp2p_needs_command" -s q -l quiet -d 'Print errors only'
complete -c qp2p -n "__fish_qp2p_needs_command" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)'
complete -c qp2p -n "__fish_qp2p_needs_command" -l ephemeral -d 'Use a fresh identity that lives in memory for this run only (wins over --identity and QP2P_HOME)'
complete -c qp2p -n "__fish_qp2p_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qp2p -n "__fish_qp2p_needs_command" -s V -l version -d 'Print version'
complete -c qp2p -n "__fish_qp2p_needs_command" -f -a "listen" -d 'Receive files (or a stream) from senders'
complete -c qp2p -n "__fish_qp2p_needs_command" -f -a "send" -d 'Send files, directories or stdin to a listener'
complete -c qp2p -n "__fish_qp2p_needs_command" -f -a "race-connect" -d 'Dial several peers at once; the first completed handshake wins'
complete -c qp2p -n "__fish_qp2p_needs_command" -f -a "upnp-check" -d 'Check that a UPnP port mapping makes this host reachable from outside'
complete -c qp2p -n "__fish_qp2p_needs_command" -f -a "bench" -d 'Measure throughput, message rate, latency and handshakes'
complete -c qp2p -n "__fish_qp2p_needs_command" -f -a "id" -d 'Print this host\'s fingerprint (creating the identity on first use)'
complete -c qp2p -n "__fish_qp2p_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c qp2p -n "__fish_qp2p_needs_command" -f -a "man" -d 'Print the manual page (roff), or write every page into a directory'
complete -c qp2p -n "__fish_qp2p_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l bind -d 'Address and UDP port to listen on: IP:PORT, `[v6]:PORT`, a host name, `:PORT` (all addresses), an address without a port (port 7447); `[::]` is dual-stack, port 0 picks a free one' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l out -d 'Directory files are stored in' -r -F
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l count -d 'Take exactly N messages (from any senders), then exit; one more is refused at once [default: run until stopped]' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l allow -d 'Admit only senders with this fingerprint (repeatable) [default: admit anyone]' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l allow-file -d 'Admit only senders whose fingerprint is in FILE (one per line, # comments) [default: admit anyone]' -r -F
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l max-size -d 'Refuse messages larger than SIZE (e.g. 512MiB) [default: no limit]' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l partial-ttl -d 'Keep what arrived of a file whose transfer broke off for DUR after its last byte, hidden in DIR/.qp2p-partial, so that the sender\'s next try sends only the rest; 0 keeps nothing (no resume). Older ones are removed at start and while listening' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l lease -d 'Lease asked for the UPnP mapping; it is renewed at half of it' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l via -d 'Register with the introducer at TICKET (repeatable) from the listening socket, keep the NAT binding open and register again when the connection is lost; the ticket printed then names every way to this listener [default: no introducer, reachable only at its own addresses]' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l relay-sessions -d 'Relay sessions at once; more are refused (and logged)' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l relay-bytes -d 'Bytes a relay session may carry (both directions); past it the session is cut and the sender told why' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l relay-time -d 'How long a relay session may last' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l max-connections -d 'Serve at most N connections at once; more are refused before the handshake' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l max-connections-per-ip -d 'Serve at most N connections at once from one IP address' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l max-streams -d 'Let one connection have at most N streams (messages) open at once in each direction; a sender wanting more waits' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l header-timeout -d 'Reset a stream whose header has not arrived within DUR' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l handshake-timeout -d 'Drop a connection whose handshake has not completed within DUR' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l ca -d 'Accept only peers whose certificate a CA in FILE issued (PEM, one or more CA certificates; repeatable). Combines with tickets, --expect and --allow: each one given must hold [default: no CA check]' -r -F
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l idle-timeout -d 'Close a connection after this long without a packet from the peer' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l keep-alive -d 'Send a keep-alive after this long without traffic (0 = never)' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l connect-timeout -d 'Give up one handshake attempt after this long' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l retry-for -d 'Total time for retrying one operation (0 = no retry)' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l retry-initial -d 'First retry delay; each next one is 1.5 times longer, ±30 % jitter' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l retry-max -d 'Longest retry delay' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l congestion -d 'Congestion controller' -r -f -a "bbr\t'Model-based (BBR v1); holds its rate under random loss'
cubic\t'Loss-based, quinn\'s own default'
newreno\t'Loss-based, the classic'"
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l identity -d 'Identity directory (key.pem, cert.pem) [default: $QP2P_HOME, else ~/.config/qp2p]' -r -F
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l cert -d 'Use this certificate (PEM; leaf first, then any intermediates), issued by a CA for the key in --key, as identity [default: the identity directory\'s cert.pem]' -r -F
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l key -d 'The private key (PEM, mode 0600) for --cert [default: none; --cert needs it]' -r -F
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l stdout -d 'Write payloads to stdout, one whole message after another'
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l once -d 'Take one `send` run, then exit: every message of the first sender\'s connection (a whole directory), until it closes; with --stdout, exactly one message. Others are refused at once'
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l overwrite -d 'Replace existing files instead of storing under a new name (name.1.ext)'
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l upnp -d 'Map the listening port on the UPnP gateway for the whole run (renewed before the lease ends, removed on exit); without a gateway, a warning'
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l no-probe -d 'Do not answer reachability probes (`qp2p upnp-check --probe`)'
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l introduce -d 'Also serve as an introducer: listeners behind NAT register here (`--via`) and senders ask for introductions; it learns addresses and fingerprints, never content. --allow/--ca limit who may register or ask'
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l relay -d 'With --introduce, also relay: forward the datagrams of two peers whose punch failed (they stay end to end encrypted), within --relay-sessions, --relay-bytes and --relay-time'
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l json -d 'Print one JSON object per line on stdout for every event (errors included)'
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -s q -l quiet -d 'Print errors only'
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)'
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -l ephemeral -d 'Use a fresh identity that lives in memory for this run only (wins over --identity and QP2P_HOME)'
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qp2p -n "__fish_qp2p_using_subcommand listen" -s V -l version -d 'Print version'
complete -c qp2p -n "__fish_qp2p_using_subcommand send" -l expect -d 'Refuse the listener unless its fingerprint is FP [default: the ticket\'s fingerprint; none for a bare address]' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand send" -l name -d 'Name the receiver stores the data under (one PATH or stdin only) [default: the file\'s name, "stdin" for stdin]' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand send" -l digest -d 'The digest both ends compute, compare and report' -r -f -a "blake3\t'BLAKE3, what `b3sum` prints (the default)'
sha256\t'SHA-256, what `sha256sum` prints; also what a listener of qp2p before BLAKE3 takes'"
complete -c qp2p -n "__fish_qp2p_using_subcommand send" -l text -d 'Send TEXT (at most 64 KiB) for the person at the listener to read: shown there, not stored [default: send files or stdin]' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand send" -l ca -d 'Accept only peers whose certificate a CA in FILE issued (PEM, one or more CA certificates; repeatable). Combines with tickets, --expect and --allow: each one given must hold [default: no CA check]' -r -F
complete -c qp2p -n "__fish_qp2p_using_subcommand send" -l idle-timeout -d 'Close a connection after this long without a packet from the peer' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand send" -l keep-alive -d 'Send a keep-alive after this long without traffic (0 = never)' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand send" -l connect-timeout -d 'Give up one handshake attempt after this long' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand send" -l retry-for -d 'Total time for retrying one operation (0 = no retry)' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand send" -l retry-initial -d 'First retry delay; each next one is 1.5 times longer, ±30 % jitter' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand send" -l retry-max -d 'Longest retry delay' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand send" -l congestion -d 'Congestion controller' -r -f -a "bbr\t'Model-based (BBR v1); holds its rate under random loss'
cubic\t'Loss-based, quinn\'s own default'
newreno\t'Loss-based, the classic'"
complete -c qp2p -n "__fish_qp2p_using_subcommand send" -l identity -d 'Identity directory (key.pem, cert.pem) [default: $QP2P_HOME, else ~/.config/qp2p]' -r -F
complete -c qp2p -n "__fish_qp2p_using_subcommand send" -l cert -d 'Use this certificate (PEM; leaf first, then any intermediates), issued by a CA for the key in --key, as identity [default: the identity directory\'s cert.pem]' -r -F
complete -c qp2p -n "__fish_qp2p_using_subcommand send" -l key -d 'The private key (PEM, mode 0600) for --cert [default: none; --cert needs it]' -r -F
complete -c qp2p -n "__fish_qp2p_using_subcommand send" -l uni -d 'Use a unidirectional stream: done when the transport delivered the data, without the receiver\'s ack of bytes and hash'
complete -c qp2p -n "__fish_qp2p_using_subcommand send" -l skip-same -d 'Skip a file the listener already holds with the same content under the same name (each file is hashed before it is sent) [default: the listener stores another copy as name.1.ext]'
complete -c qp2p -n "__fish_qp2p_using_subcommand send" -l no-resume -d 'Send each file whole on every try: no resume offer, so the listener keeps nothing of a try that broke off [default: a file of 1 MiB or more continues where the listener\'s copy of a broken-off try ends]'
complete -c qp2p -n "__fish_qp2p_using_subcommand send" -l json -d 'Print one JSON object per line on stdout for every event (errors included)'
complete -c qp2p -n "__fish_qp2p_using_subcommand send" -s q -l quiet -d 'Print errors only'
complete -c qp2p -n "__fish_qp2p_using_subcommand send" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)'
complete -c qp2p -n "__fish_qp2p_using_subcommand send" -l ephemeral -d 'Use a fresh identity that lives in memory for this run only (wins over --identity and QP2P_HOME)'
complete -c qp2p -n "__fish_qp2p_using_subcommand send" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qp2p -n "__fish_qp2p_using_subcommand send" -s V -l version -d 'Print version'
complete -c qp2p -n "__fish_qp2p_using_subcommand race-connect" -l send -d 'After winning, send these files or directories (`-` for stdin) to the winner [default: send nothing]' -r -F
complete -c qp2p -n "__fish_qp2p_using_subcommand race-connect" -l digest -d 'The digest both ends compute, compare and report for what --send sends' -r -f -a "blake3\t'BLAKE3, what `b3sum` prints (the default)'
sha256\t'SHA-256, what `sha256sum` prints; also what a listener of qp2p before BLAKE3 takes'"
complete -c qp2p -n "__fish_qp2p_using_subcommand race-connect" -l expect -d 'Refuse peers given without a ticket unless their fingerprint is FP [default: peers without a ticket are not authenticated]' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand race-connect" -l timeout -d 'Give up the whole race after this long [default: the retry budget]' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand race-connect" -l ca -d 'Accept only peers whose certificate a CA in FILE issued (PEM, one or more CA certificates; repeatable). Combines with tickets, --expect and --allow: each one given must hold [default: no CA check]' -r -F
complete -c qp2p -n "__fish_qp2p_using_subcommand race-connect" -l idle-timeout -d 'Close a connection after this long without a packet from the peer' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand race-connect" -l keep-alive -d 'Send a keep-alive after this long without traffic (0 = never)' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand race-connect" -l connect-timeout -d 'Give up one handshake attempt after this long' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand race-connect" -l retry-for -d 'Total time for retrying one operation (0 = no retry)' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand race-connect" -l retry-initial -d 'First retry delay; each next one is 1.5 times longer, ±30 % jitter' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand race-connect" -l retry-max -d 'Longest retry delay' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand race-connect" -l congestion -d 'Congestion controller' -r -f -a "bbr\t'Model-based (BBR v1); holds its rate under random loss'
cubic\t'Loss-based, quinn\'s own default'
newreno\t'Loss-based, the classic'"
complete -c qp2p -n "__fish_qp2p_using_subcommand race-connect" -l identity -d 'Identity directory (key.pem, cert.pem) [default: $QP2P_HOME, else ~/.config/qp2p]' -r -F
complete -c qp2p -n "__fish_qp2p_using_subcommand race-connect" -l cert -d 'Use this certificate (PEM; leaf first, then any intermediates), issued by a CA for the key in --key, as identity [default: the identity directory\'s cert.pem]' -r -F
complete -c qp2p -n "__fish_qp2p_using_subcommand race-connect" -l key -d 'The private key (PEM, mode 0600) for --cert [default: none; --cert needs it]' -r -F
complete -c qp2p -n "__fish_qp2p_using_subcommand race-connect" -l json -d 'Print one JSON object per line on stdout for every event (errors included)'
complete -c qp2p -n "__fish_qp2p_using_subcommand race-connect" -s q -l quiet -d 'Print errors only'
complete -c qp2p -n "__fish_qp2p_using_subcommand race-connect" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)'
complete -c qp2p -n "__fish_qp2p_using_subcommand race-connect" -l ephemeral -d 'Use a fresh identity that lives in memory for this run only (wins over --identity and QP2P_HOME)'
complete -c qp2p -n "__fish_qp2p_using_subcommand race-connect" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qp2p -n "__fish_qp2p_using_subcommand race-connect" -s V -l version -d 'Print version'
complete -c qp2p -n "__fish_qp2p_using_subcommand upnp-check" -l port -d 'Local UDP port to map; the same external port is asked for [default: a free port]' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand upnp-check" -l lease -d 'Lease asked for the mapping (it ends by itself after that)' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand upnp-check" -l probe -d 'A `qp2p listen` outside this network that connects back to check reachability: HOST:PORT or a ticket (repeatable; every one must succeed) [default: none, reachability not verified]' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand upnp-check" -l timeout -d 'How long to search for the gateway, and to wait for each probe' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand upnp-check" -l idle-timeout -d 'Close a connection after this long without a packet from the peer' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand upnp-check" -l keep-alive -d 'Send a keep-alive after this long without traffic (0 = never)' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand upnp-check" -l connect-timeout -d 'Give up one handshake attempt after this long' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand upnp-check" -l retry-for -d 'Total time for retrying one operation (0 = no retry)' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand upnp-check" -l retry-initial -d 'First retry delay; each next one is 1.5 times longer, ±30 % jitter' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand upnp-check" -l retry-max -d 'Longest retry delay' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand upnp-check" -l congestion -d 'Congestion controller' -r -f -a "bbr\t'Model-based (BBR v1); holds its rate under random loss'
cubic\t'Loss-based, quinn\'s own default'
newreno\t'Loss-based, the classic'"
complete -c qp2p -n "__fish_qp2p_using_subcommand upnp-check" -l identity -d 'Identity directory (key.pem, cert.pem) [default: $QP2P_HOME, else ~/.config/qp2p]' -r -F
complete -c qp2p -n "__fish_qp2p_using_subcommand upnp-check" -l cert -d 'Use this certificate (PEM; leaf first, then any intermediates), issued by a CA for the key in --key, as identity [default: the identity directory\'s cert.pem]' -r -F
complete -c qp2p -n "__fish_qp2p_using_subcommand upnp-check" -l key -d 'The private key (PEM, mode 0600) for --cert [default: none; --cert needs it]' -r -F
complete -c qp2p -n "__fish_qp2p_using_subcommand upnp-check" -l keep -d 'Leave the mapping in place when done (it ends with its lease)'
complete -c qp2p -n "__fish_qp2p_using_subcommand upnp-check" -l json -d 'Print one JSON object per line on stdout for every event (errors included)'
complete -c qp2p -n "__fish_qp2p_using_subcommand upnp-check" -s q -l quiet -d 'Print errors only'
complete -c qp2p -n "__fish_qp2p_using_subcommand upnp-check" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)'
complete -c qp2p -n "__fish_qp2p_using_subcommand upnp-check" -l ephemeral -d 'Use a fresh identity that lives in memory for this run only (wins over --identity and QP2P_HOME)'
complete -c qp2p -n "__fish_qp2p_using_subcommand upnp-check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qp2p -n "__fish_qp2p_using_subcommand upnp-check" -s V -l version -d 'Print version'
complete -c qp2p -n "__fish_qp2p_using_subcommand bench" -l peer -d 'Measure against this running `qp2p listen` [default: both ends in this process, on loopback]' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand bench" -l scenario -d 'What to measure' -r -f -a "throughput\t'Bulk transfer rate (Gbit/s), raw, framed and hashed'
messages\t'Messages per second, pooled and with a new connection each'
latency\t'Round-trip latency percentiles'
handshakes\t'Full handshakes per second'
all\t'All of the above'"
complete -c qp2p -n "__fish_qp2p_using_subcommand bench" -l size -d 'Bytes moved by each throughput run' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand bench" -l message-size -d 'Size of one message (messages) and of one answer (latency)' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand bench" -l count -d 'Messages, round trips or handshakes per run [default: 50000 messages, 10000 round trips, 1000 handshakes; a tenth for unpooled messages]' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand bench" -l duration -d 'Upper bound on each run' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand bench" -l parallel -d 'Streams for throughput, messages and handshakes in flight [default: 1 stream, 32 in flight; new connections 8 at once with --peer, since a listener admits 16 per address]' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand bench" -l ca -d 'Accept only peers whose certificate a CA in FILE issued (PEM, one or more CA certificates; repeatable). Combines with tickets, --expect and --allow: each one given must hold [default: no CA check]' -r -F
complete -c qp2p -n "__fish_qp2p_using_subcommand bench" -l idle-timeout -d 'Close a connection after this long without a packet from the peer' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand bench" -l keep-alive -d 'Send a keep-alive after this long without traffic (0 = never)' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand bench" -l connect-timeout -d 'Give up one handshake attempt after this long' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand bench" -l retry-for -d 'Total time for retrying one operation (0 = no retry)' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand bench" -l retry-initial -d 'First retry delay; each next one is 1.5 times longer, ±30 % jitter' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand bench" -l retry-max -d 'Longest retry delay' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand bench" -l congestion -d 'Congestion controller' -r -f -a "bbr\t'Model-based (BBR v1); holds its rate under random loss'
cubic\t'Loss-based, quinn\'s own default'
newreno\t'Loss-based, the classic'"
complete -c qp2p -n "__fish_qp2p_using_subcommand bench" -l identity -d 'Identity directory (key.pem, cert.pem) [default: $QP2P_HOME, else ~/.config/qp2p]' -r -F
complete -c qp2p -n "__fish_qp2p_using_subcommand bench" -l cert -d 'Use this certificate (PEM; leaf first, then any intermediates), issued by a CA for the key in --key, as identity [default: the identity directory\'s cert.pem]' -r -F
complete -c qp2p -n "__fish_qp2p_using_subcommand bench" -l key -d 'The private key (PEM, mode 0600) for --cert [default: none; --cert needs it]' -r -F
complete -c qp2p -n "__fish_qp2p_using_subcommand bench" -l raw -d 'Throughput of raw quinn streams only (no header, ack, hashing)'
complete -c qp2p -n "__fish_qp2p_using_subcommand bench" -l json -d 'Print one JSON object per line on stdout for every event (errors included)'
complete -c qp2p -n "__fish_qp2p_using_subcommand bench" -s q -l quiet -d 'Print errors only'
complete -c qp2p -n "__fish_qp2p_using_subcommand bench" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)'
complete -c qp2p -n "__fish_qp2p_using_subcommand bench" -l ephemeral -d 'Use a fresh identity that lives in memory for this run only (wins over --identity and QP2P_HOME)'
complete -c qp2p -n "__fish_qp2p_using_subcommand bench" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qp2p -n "__fish_qp2p_using_subcommand bench" -s V -l version -d 'Print version'
complete -c qp2p -n "__fish_qp2p_using_subcommand id" -l cn -d 'Common name (CN) the request asks for [default: this host\'s name]' -r
complete -c qp2p -n "__fish_qp2p_using_subcommand id" -l identity -d 'Identity directory (key.pem, cert.pem) [default: $QP2P_HOME, else ~/.config/qp2p]' -r -F
complete -c qp2p -n "__fish_qp2p_using_subcommand id" -l cert -d 'Use this certificate (PEM; leaf first, then any intermediates), issued by a CA for the key in --key, as identity [default: the identity directory\'s cert.pem]' -r -F
complete -c qp2p -n "__fish_qp2p_using_subcommand id" -l key -d 'The private key (PEM, mode 0600) for --cert [default: none; --cert needs it]' -r -F
complete -c qp2p -n "__fish_qp2p_using_subcommand id" -l csr -d 'Print a PEM certificate signing request for this identity\'s key on stdout instead, for a CA to sign (then use --cert with --key, or cert.pem)'
complete -c qp2p -n "__fish_qp2p_using_subcommand id" -l json -d 'Print one JSON object per line on stdout for every event (errors included)'
complete -c qp2p -n "__fish_qp2p_using_subcommand id" -s q -l quiet -d 'Print errors only'
complete -c qp2p -n "__fish_qp2p_using_subcommand id" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)'
complete -c qp2p -n "__fish_qp2p_using_subcommand id" -l ephemeral -d 'Use a fresh identity that lives in memory for this run only (wins over --identity and QP2P_HOME)'
complete -c qp2p -n "__fish_qp2p_using_subcommand id" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qp2p -n "__fish_qp2p_using_subcommand id" -s V -l version -d 'Print version'
complete -c qp2p -n "__fish_qp2p_using_subcommand completions" -l identity -d 'Identity directory (key.pem, cert.pem) [default: $QP2P_HOME, else ~/.config/qp2p]' -r -F
complete -c qp2p -n "__fish_qp2p_using_subcommand completions" -l cert -d 'Use this certificate (PEM; leaf first, then any intermediates), issued by a CA for the key in --key, as identity [default: the identity directory\'s cert.pem]' -r -F
complete -c qp2p -n "__fish_qp2p_using_subcommand completions" -l key -d 'The private key (PEM, mode 0600) for --cert [default: none; --cert needs it]' -r -F
complete -c qp2p -n "__fish_qp2p_using_subcommand completions" -l json -d 'Print one JSON object per line on stdout for every event (errors included)'
complete -c qp2p -n "__fish_qp2p_using_subcommand completions" -s q -l quiet -d 'Print errors only'
complete -c qp2p -n "__fish_qp2p_using_subcommand completions" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)'
complete -c qp2p -n "__fish_qp2p_using_subcommand completions" -l ephemeral -d 'Use a fresh identity that lives in memory for this run only (wins over --identity and QP2P_HOME)'
complete -c qp2p -n "__fish_qp2p_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qp2p -n "__fish_qp2p_using_subcommand completions" -s V -l version -d 'Print version'
complete -c qp2p -n "__fish_qp2p_using_subcommand man" -l dir -d 'Write every page into DIR instead of printing one [default: print to stdout]' -r -f -a "(__fish_complete_directories)"
complete -c qp2p -n "__fish_qp2p_using_subcommand man" -l identity -d 'Identity directory (key.pem, cert.pem) [default: $QP2P_HOME, else ~/.config/qp2p]' -r -F
complete -c qp2p -n "__fish_qp2p_using_subcommand man" -l cert -d 'Use this certificate (PEM; leaf first, then any intermediates), issued by a CA for the key in --key, as identity [default: the identity directory\'s cert.pem]' -r -F
complete -c qp2p -n "__fish_qp2p_using_subcommand man" -l key -d 'The private key (PEM, mode 0600) for --cert [default: none; --cert needs it]' -r -F
complete -c qp2p -n "__fish_qp2p_using_subcommand man" -l json -d 'Print one JSON object per line on stdout for every event (errors included)'
complete -c qp2p -n "__fish_qp2p_using_subcommand man" -s q -l quiet -d 'Print errors only'
complete -c qp2p -n "__fish_qp2p_using_subcommand man" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace; RUST_LOG also works)'
complete -c qp2p -n "__fish_qp2p_using_subcommand man" -l ephemeral -d 'Use a fresh identity that lives in memory for this run only (wins over --identity and QP2P_HOME)'
complete -c qp2p -n "__fish_qp2p_using_subcommand man" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qp2p -n "__fish_qp2p_using_subcommand man" -s V -l version -d 'Print version'
complete -c qp2p -n "__fish_qp2p_using_subcommand help; and not __fish_seen_subcommand_from listen send race-connect upnp-check bench id completions man help" -f -a "listen" -d 'Receive files (or a stream) from senders'
complete -c qp2p -n "__fish_qp2p_using_subcommand help; and not __fish_seen_subcommand_from listen send race-connect upnp-check bench id completions man help" -f -a "send" -d 'Send files, directories or stdin to a listener'
complete -c qp2p -n "__fish_qp2p_using_subcommand help; and not __fish_seen_subcommand_from listen send race-connect upnp-check bench id completions man help" -f -a "race-connect" -d 'Dial several peers at once; the first completed handshake wins'
complete -c qp2p -n "__fish_qp2p_using_subcommand help; and not __fish_seen_subcommand_from listen send race-connect upnp-check bench id completions man help" -f -a "upnp-check" -d 'Check that a UPnP port mapping makes this host reachable from outside'
complete -c qp2p -n "__fish_qp2p_using_subcommand help; and not __fish_seen_subcommand_from listen send race-connect upnp-check bench id completions man help" -f -a "bench" -d 'Measure throughput, message rate, latency and handshakes'
complete -c qp2p -n "__fish_qp2p_using_subcommand help; and not __fish_seen_subcommand_from listen send race-connect upnp-check bench id completions man help" -f -a "id" -d 'Print this host\'s fingerprint (creating the identity on first use)'
complete -c qp2p -n "__fish_qp2p_using_subcommand help; and not __fish_seen_subcommand_from listen send race-connect upnp-check bench id completions man help" -f -a "completions" -d 'Print a shell completion script'
complete -c qp2p -n "__fish_qp2p_using_subcommand help; and not __fish_seen_subcommand_from listen send race-connect upnp-check bench id completions man help" -f -a "man" -d 'Print the manual page (roff), or write every page into a directory'
complete -c qp2p -n "__fish_qp2p_using_subcommand help; and not __fish_seen_subcommand_from listen send race-connect upnp-check bench id completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
