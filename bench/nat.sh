#!/usr/bin/env bash
# Through-NAT figures: direct, punched and relayed paths in one topology of network
# namespaces (root only; needs iproute2 and nftables).
#
#   sudo bench/nat.sh [--rounds N] [--big-rounds N] [--big MiB] [--quiet SECONDS]
#                     [--bin PATH] [--no-build]
#
# The bed is the one of tests/util/nat.rs: a bridged `wan` (203.0.113.10, the
# introducer, `listen --introduce --relay`, and a public listener D on :7447), two
# home routers with nftables masquerade and inbound only for established flows, a
# listener P behind router A (192.168.1.2:7447, `--via` the introducer) and the sender
# behind router B. Router B keeps source ports (`masquerade`) for the direct and
# punched rounds and maps each destination to a new port (`masquerade random`,
# symmetric) for the relayed round, so the punch cannot work and the relay is used.
#
# Each round runs the three paths one after the other (direct: send to D; punched
# and relayed: send to P), so the three are compared alternately under the same load:
#   - a 1-byte send, timed two ways: the send's wall time (process start to exit:
#     connect, introduction, punch or relay set-up, the message, the ack), and from
#     the send's start to the listener's `received` event for it (the message landed
#     and stored: the closest honest proxy for "first payload byte" qp2p reports; the
#     listener's event lines are stamped as they arrive);
#   - in --big-rounds of them, a --big MiB send: rate = bytes / the `sent` event's
#     `seconds`.
# Every `sent` event must name the expected path, or the script stops.
# Then a quiet period: the bytes between the introducer's host and router A (P's
# registration and keep-alives only; nft counters on wan's input and output, by
# router A's address) over --quiet seconds, scaled to an hour.
#
# Prints per run on stderr; medians with min–max on stdout; `uptime` before and
# after. Everything it makes (namespaces, processes, files) is removed on exit.
set -euo pipefail

rounds=7
big_rounds=3
big=64
quiet=120
bin=""
build=1
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) rounds=$2; shift 2 ;;
        --big-rounds) big_rounds=$2; shift 2 ;;
        --big) big=$2; shift 2 ;;
        --quiet) quiet=$2; shift 2 ;;
        --bin) bin=$2; build=0; shift 2 ;;
        --no-build) build=0; shift ;;
        -h | --help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "nat.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "nat.sh: needs root (network namespaces)" >&2; exit 1; }
command -v nft >/dev/null || { echo "nat.sh: nft is needed (apt-get install nftables)" >&2; exit 1; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "$bin" ]; then
    bin=${CARGO_TARGET_DIR:-$here/target}/release/qp2p
    [ "$build" = 1 ] && (cd "$here" && cargo build --release --quiet)
fi
[ -x "$bin" ] || { echo "nat.sh: no binary at $bin" >&2; exit 1; }

p=qp2pb$$
wan=${p}wan ra=${p}ra rb=${p}rb la=${p}la lb=${p}lb
WAN=203.0.113.10 EXT_A=203.0.113.1 EXT_B=203.0.113.2 LAN_A=192.168.1.2
work=$(mktemp -d "${TMPDIR:-/tmp}/qp2p-nat.XXXXXX")
cleanup() {
    for ns in $wan $ra $rb $la $lb; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

# --- the bed -------------------------------------------------------------------
for ns in $wan $ra $rb $la $lb; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done
ip -n $wan link add br0 type bridge
ip -n $wan addr add $WAN/24 dev br0
ip -n $wan link set br0 up
router_rules() { # $1: masquerade or "masquerade random"
    cat <<EOF
table inet nat {
  chain input {
    type filter hook input priority 0; policy accept;
    iifname "rwan0" ct state established,related accept
    iifname "rwan0" drop
  }
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname "rlan0" oifname "rwan0" accept
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "rwan0" $1
  }
}
EOF
}
set_mapping() { # $1: router namespace, $2: masquerade or "masquerade random"
    { echo "flush ruleset"; router_rules "$2"; } | ip netns exec "$1" nft -f -
}
for side in a b; do
    if [ $side = a ]; then rtr=$ra lan=$la ext=$EXT_A net=192.168.1; else rtr=$rb lan=$lb ext=$EXT_B net=192.168.2; fi
    ip link add w$side netns $wan type veth peer name rwan0 netns "$rtr"
    ip -n $wan link set w$side master br0
    ip -n $wan link set w$side up
    ip link add lan0 netns "$lan" type veth peer name rlan0 netns "$rtr"
    ip -n "$rtr" addr add $ext/24 dev rwan0
    ip -n "$rtr" addr add $net.1/24 dev rlan0
    ip -n "$lan" addr add $net.2/24 dev lan0
    for dev in rwan0 rlan0; do ip -n "$rtr" link set $dev up; done
    ip -n "$lan" link set lan0 up
    ip -n "$lan" route add default via $net.1
    ip netns exec "$rtr" sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'
    set_mapping "$rtr" masquerade
done
# Counters of what the introducer's host exchanges with router A (listener P's
# registration: its keep-alives, and its punch and relay orders).
ip netns exec $wan nft -f - <<EOF
table inet acct {
  chain input {
    type filter hook input priority 0; policy accept;
    ip saddr $EXT_A counter
  }
  chain output {
    type filter hook output priority 0; policy accept;
    ip daddr $EXT_A counter
  }
}
EOF
acct_bytes() {
    ip netns exec $wan nft list table inet acct | awk '/counter/ { for (i = 1; i < NF; i++) if ($i == "bytes") s += $(i + 1) } END { print s + 0 }'
}

# --- the peers -----------------------------------------------------------------
export HOME=$work/home
mkdir -p "$HOME"
q() { # namespace, qp2p args...
    local ns=$1; shift
    ip netns exec "$ns" env -u RUST_LOG "$bin" "$@"
}
# Starts a --json listener in $1 (name $2) with args $3..., its event lines stamped
# (microseconds since the epoch) into $work/$2.events.
listener() {
    local ns=$1 name=$2; shift 2
    mkdir -p "$work/$name.out"
    ( q "$ns" --json --ephemeral listen --out "$work/$name.out" "$@" 2>"$work/$name.err" |
        while IFS= read -r line; do printf '%s %s\n' "${EPOCHREALTIME/./}" "$line"; done \
            >"$work/$name.events" ) &
    for _ in $(seq 100); do
        grep -q '"listening"' "$work/$name.events" 2>/dev/null && break
        sleep 0.1
    done
    grep -q '"listening"' "$work/$name.events" || { cat "$work/$name.err" >&2; exit 1; }
}
field() { # event line on stdin, field name
    python3 -c 'import json,sys; print(json.loads(sys.stdin.read().split(" ",1)[-1])[sys.argv[1]])' "$1"
}
wait_event() { # name, event, seconds: waits for a line with that event
    for _ in $(seq $(($3 * 10))); do
        grep -q "\"event\":\"$2\"" "$work/$1.events" && return 0
        sleep 0.1
    done
    echo "nat.sh: $1 reported no $2" >&2
    cat "$work/$1.err" >&2
    exit 1
}

listener $wan intro --bind $WAN:7000 --introduce --relay --relay-bytes 4GiB
intro=$(grep '"listening"' "$work/intro.events" | field ticket)
listener $wan D --bind $WAN:7447 --via "$intro"
listener $la P --bind $LAN_A:7447 --via "$intro"
wait_event D registered 15
wait_event P registered 15
ticket_d=$(grep '"listening"' "$work/D.events" | field ticket)
ticket_p=$(grep '"listening"' "$work/P.events" | field ticket)

echo "# load before: $(uptime)"
printf x >"$work/tiny"
head -c $((big * 1048576)) /dev/urandom >"$work/big"

# One send from lan B, stored as a name used once; prints "wall_ms landed_ms
# seconds" and checks the path.
send() { # path, ticket, file, listener name, name to store under
    local path=$1 ticket=$2 file=$3 name=$4 sent_name=$5
    local start=${EPOCHREALTIME/./}
    local out
    out=$(q $lb --json --ephemeral send --retry-for 10s --name "$sent_name" "$ticket" "$file") || {
        echo "nat.sh: send failed: $out" >&2; exit 1; }
    local end=${EPOCHREALTIME/./}
    local ev
    ev=$(printf '%s\n' "$out" | grep '"event":"sent"')
    local got
    got=$(printf '%s' "$ev" | field path)
    [ "$got" = "$path" ] || { echo "nat.sh: expected $path, the send took $got: $ev" >&2; exit 1; }
    local landed=""
    for _ in $(seq 50); do
        landed=$(grep "\"event\":\"received\"" "$work/$name.events" | grep "\"name\":\"$sent_name\"" | cut -d' ' -f1 || true)
        [ -n "$landed" ] && break
        sleep 0.1
    done
    [ -n "$landed" ] || { echo "nat.sh: $name never reported $sent_name" >&2; exit 1; }
    rm -f "$work/$name.out/$sent_name"
    echo "$(((end - start) / 1000)).$(((end - start) % 1000 / 100)) $(((landed - start) / 1000)).$(((landed - start) % 1000 / 100)) $(printf '%s' "$ev" | field seconds)"
}

for path in direct punched relayed; do : >"$work/$path.small"; : >"$work/$path.big"; done
for r in $(seq "$rounds"); do
    for path in direct punched relayed; do
        case $path in
            direct) ticket=$ticket_d name=D ;;
            punched) ticket=$ticket_p name=P ;;
            relayed) ticket=$ticket_p name=P; set_mapping $rb "masquerade random" ;;
        esac
        small=$(send $path "$ticket" "$work/tiny" $name "r$r-$path-tiny")
        echo "round $r $path 1 byte: wall ms, landed ms, message s = $small" >&2
        echo "$small" >>"$work/$path.small"
        if [ "$r" -le "$big_rounds" ]; then
            b=$(send $path "$ticket" "$work/big" $name "r$r-$path-big")
            echo "round $r $path $big MiB: wall ms, landed ms, message s = $b" >&2
            echo "$b" >>"$work/$path.big"
        fi
        [ $path = relayed ] && set_mapping $rb masquerade
    done
done

stats() { # file, column, scale: "median (min–max)"
    awk -v c="$2" -v k="$3" '{ print $c * k }' "$1" | sort -g | awk '
        { v[NR] = $1 } END {
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "%.1f (%.1f–%.1f)", m, v[1], v[NR] }'
}
echo "# load after the sends: $(uptime)"
echo "1-byte send, $rounds rounds; $big MiB send, $big_rounds rounds; medians (min–max)"
printf '%-8s %-22s %-22s %-22s\n' path "send wall ms" "send→received ms" "$big MiB MB/s"
for path in direct punched relayed; do
    awk -v mb="$big" '{ print $1, $2, mb * 1.048576 / $3 }' "$work/$path.big" >"$work/$path.rate"
    printf '%-8s %-22s %-22s %-22s\n' $path "$(stats "$work/$path.small" 1 1)" \
        "$(stats "$work/$path.small" 2 1)" "$(stats "$work/$path.rate" 3 1)"
done

# --- keep-alive cost ---------------------------------------------------------------
before=$(acct_bytes)
sleep "$quiet"
after=$(acct_bytes)
bytes=$((after - before))
echo "keep-alive of a registered quiet listener (P, both directions at the introducer's host):" \
    "$bytes bytes in ${quiet}s = $((bytes * 3600 / quiet / 1024)) KiB/h"
echo "# load after: $(uptime)"
