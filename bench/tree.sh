#!/usr/bin/env bash
# Directory-tree benchmark: `qp2p send DIR` against `tar c DIR | socat` → `socat | tar x`
# over loopback TCP, side by side in one run, alternating.
#
#   bench/tree.sh [--files N] [--size BYTES] [--per-dir N] [--runs N] [--uni | --both]
#                 [--synced-tar] [--bin PATH] [--no-build]
#
# Makes N random files of BYTES each (folders of --per-dir), then per run: a fresh
# output directory, the receiver started first, the clock started with the sender and
# stopped when both ends have exited. qp2p's listener runs with --once, so it exits
# when the sender's run is over; its files are durable (synced and named) before they
# are acked. tar x does not sync. Every landed tree is checked (file count and total
# bytes; qp2p also checked each SHA-256 on the way). Prints per run and the median,
# minimum and maximum of each tool's wall time, and the peak RSS of every process
# (GNU time). --uni sends with unidirectional streams instead; --both runs the default
# and --uni back to back in each run and adds their ratio, run by run. --synced-tar
# ends tar's side with `sync -f` on its output, so both sides are durable. Loopback
# (127.0.0.1) only.
set -euo pipefail

files=5000
size=4096
per_dir=100
runs=5
uni=""
both=0
synced=0
bin=""
build=1
while [ $# -gt 0 ]; do
    case $1 in
        --files) files=$2; shift 2 ;;
        --size) size=$2; shift 2 ;;
        --per-dir) per_dir=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --uni) uni=--uni; shift ;;
        --both) both=1; shift ;;
        --synced-tar) synced=1; shift ;;
        --bin) bin=$2; build=0; shift 2 ;;
        --no-build) build=0; shift ;;
        -h | --help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "tree.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "$bin" ]; then
    bin=${CARGO_TARGET_DIR:-$here/target}/release/qp2p
    [ "$build" = 1 ] && (cd "$here" && cargo build --release --quiet)
fi
[ -x "$bin" ] || { echo "tree.sh: no binary at $bin" >&2; exit 1; }
command -v socat >/dev/null || { echo "tree.sh: socat is needed" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "tree.sh: GNU time (/usr/bin/time) is needed" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/qp2p-tree.XXXXXX")
listener=""
cleanup() {
    [ -n "$listener" ] && kill "$listener" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "# making $files files of $size bytes in folders of $per_dir" >&2
mkdir -p "$work/src/tree"
python3 - "$work/src/tree" "$files" "$size" "$per_dir" <<'EOF'
import os, sys
root, files, size, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for i in range(files):
    d = os.path.join(root, f"d{i // per:05}")
    if i % per == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:07}"), "wb") as f:
        f.write(os.urandom(size))
EOF
expect_bytes=$((files * size))

# check DIR: the landed tree has every file and every byte.
check() {
    local n b
    n=$(find "$1" -type f | wc -l)
    b=$(find "$1" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
    if [ "$n" != "$files" ] || [ "$b" != "$expect_bytes" ]; then
        echo "tree.sh: $1 holds $n files, $b bytes; expected $files, $expect_bytes" >&2
        exit 1
    fi
}

now() { date +%s.%N; }
rss() { awk '/Maximum resident set size/ {printf "%.1f", $NF / 1024}' "$1"; }

run_socat() {
    local out=$work/out-socat-$1 port
    mkdir -p "$out"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    local after=""
    [ "$synced" = 1 ] && after=" && sync -f '$out'"
    /usr/bin/time -v -o "$work/t-recv" sh -c "socat -u TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr STDOUT | tar x -C '$out'$after" &
    listener=$!
    # Wait for the port to listen.
    for _ in $(seq 200); do
        ss -ltn "sport = :$port" | grep -q LISTEN && break
        sleep 0.01
    done
    local start end
    sync  # neither tool pays for the other's (or the last run's) dirty pages
    start=$(now)
    /usr/bin/time -v -o "$work/t-send" sh -c "tar c -C '$work/src' tree | socat -u STDIN TCP:127.0.0.1:$port"
    wait "$listener"
    listener=""
    end=$(now)
    check "$out/tree"
    echo "$end - $start" | bc -l
}

run_qp2p() {
    local mode=$2 out=$work/out-qp2p-$1$2 ticket
    mkdir -p "$out"
    rm -f "$work/events"
    /usr/bin/time -v -o "$work/t-recv" "$bin" --json --ephemeral listen --once \
        --bind 127.0.0.1:0 --out "$out" >"$work/events" 2>"$work/listen.err" &
    listener=$!
    for _ in $(seq 500); do
        ticket=$(head -1 "$work/events" 2>/dev/null | sed -n 's/.*"ticket":"\([^"]*\)".*/\1/p')
        [ -n "$ticket" ] && break
        sleep 0.01
    done
    [ -n "$ticket" ] || { echo "tree.sh: the listener did not start" >&2; cat "$work/listen.err" >&2; exit 1; }
    local start end
    sync
    start=$(now)
    /usr/bin/time -v -o "$work/t-send" "$bin" -q --ephemeral send $mode "$ticket" \
        "$work/src/tree" 2>"$work/send.err" || {
        echo "tree.sh: send failed" >&2; cat "$work/send.err" >&2; exit 1; }
    wait "$listener"
    listener=""
    end=$(now)
    check "$out/tree"
    echo "$end - $start" | bc -l
}

stats() {
    sort -g | awk '{v[NR] = $1} END {printf "median %.3f s (min %.3f, max %.3f)", v[int((NR + 1) / 2)], v[1], v[NR]}'
}

: >"$work/socat.times"
: >"$work/qp2p.times"
: >"$work/uni.times"
echo "run  socat(s)  qp2p${uni:+ $uni}(s)  rss socat send/recv MiB  rss qp2p send/listen MiB"
for i in $(seq "$runs"); do
    s=$(run_socat "$i")
    s_rss="$(rss "$work/t-send")/$(rss "$work/t-recv")"
    echo "$s" >>"$work/socat.times"
    q=$(run_qp2p "$i" "$uni")
    q_rss="$(rss "$work/t-send")/$(rss "$work/t-recv")"
    echo "$q" >>"$work/qp2p.times"
    printf '%3d  %8.3f  %8.3f  %22s  %22s\n' "$i" "$s" "$q" "$s_rss" "$q_rss"
    if [ "$both" = 1 ]; then
        u=$(run_qp2p "$i" --uni)
        echo "$u" >>"$work/uni.times"
        printf '%3d  %8s  %8.3f  %22s  %22s  (--uni)\n' "$i" "" "$u" "" \
            "$(rss "$work/t-send")/$(rss "$work/t-recv")"
    fi
done
s_med=$(sort -g "$work/socat.times" | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')
q_med=$(sort -g "$work/qp2p.times" | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')
label="tar | socat"
[ "$synced" = 1 ] && label="tar | socat, synced"
echo "$label: $(stats <"$work/socat.times")"
echo "qp2p send${uni:+ $uni}: $(stats <"$work/qp2p.times")"
printf 'ratio of medians qp2p / socat: %.2f\n' "$(echo "$q_med / $s_med" | bc -l)"
# Run by run (each pair ran back to back): steadier than the medians on a busy machine.
paste "$work/qp2p.times" "$work/socat.times" | awk '{print $1 / $2}' |
    sort -g | awk '{v[NR] = $1} END {printf "ratio run by run: median %.2f (min %.2f, max %.2f)\n", v[int((NR + 1) / 2)], v[1], v[NR]}'
if [ "$both" = 1 ]; then
    echo "qp2p send --uni: $(stats <"$work/uni.times")"
    paste "$work/uni.times" "$work/qp2p.times" | awk '{print $1 / $2}' |
        sort -g | awk '{v[NR] = $1} END {printf "ratio --uni / default, run by run: median %.2f (min %.2f, max %.2f)\n", v[int((NR + 1) / 2)], v[1], v[NR]}'
fi
