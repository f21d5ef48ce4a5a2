#!/usr/bin/env bash
# qp2p side by side with the usual tools, on loopback, in one run.
#
#   bench/compare.sh [--size SIZE] [--runs N] [--no-build]
#
# Prints one table: each figure, and its ratio to qp2p's. Rows:
#   - file copy to disk: qp2p send -> qp2p listen --out, and socat over TCP
#     (both from bench/transfer.sh: same file, SHA-256 checked, median of N runs);
#   - memory to memory: qp2p bench (raw quinn stream, framed, hashed) and iperf3
#     over TCP;
#   - round trips and handshakes: qp2p bench.
# Installs socat, iperf3 and GNU time with apt-get when missing (as root).
# Loopback (127.0.0.1) only.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
size=1GiB
runs=3
build=1
while [ $# -gt 0 ]; do
    case $1 in
        --size) size=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        -h | --help) sed -n 2,14p "$0"; exit 0 ;;
        *) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

need() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "# installing ${missing[*]}" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    fi
}
need socat iperf3 time

if [ "$build" = 1 ]; then
    cargo build --release --quiet
fi
qp2p=target/release/qp2p
tmp=$(mktemp -d)
iperf_pid=""
listen_pid=""
cleanup() {
    [ -n "$iperf_pid" ] && kill "$iperf_pid" 2>/dev/null || true
    [ -n "$listen_pid" ] && kill "$listen_pid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

echo "# file copies (bench/transfer.sh --size $size --runs $runs)" >&2
bench/transfer.sh --no-build --size "$size" --runs "$runs" >"$tmp/transfer.txt" 2>"$tmp/transfer.err" || {
    cat "$tmp/transfer.err" >&2
    exit 1
}
qp2p_file=$(awk '$1 == "qp2p" { print $3 }' "$tmp/transfer.txt")
socat_file=$(awk '$1 == "socat" { print $3 }' "$tmp/transfer.txt")
qp2p_rss=$(awk '$1 == "qp2p" { print ($4 > $5 ? $4 : $5) }' "$tmp/transfer.txt")
socat_rss=$(awk '$1 == "socat" { print ($4 > $5 ? $4 : $5) }' "$tmp/transfer.txt")

echo "# qp2p bench (in-process, loopback)" >&2
"$qp2p" --json --quiet bench --size "$size" >"$tmp/bench.json"
field() { # field SCENARIO MODE KEY
    python3 -c '
import json, sys
scenario, mode, key = sys.argv[1:4]
for line in open(sys.argv[4]):
    row = json.loads(line)
    if row.get("scenario") == scenario and (mode == "-" or row.get("mode") == mode):
        print(row[key]); break
' "$1" "$2" "$3" "$tmp/bench.json"
}
raw=$(field throughput raw gbit_s)
framed=$(field throughput framed gbit_s)
hashed=$(field throughput hashed gbit_s)

echo "# iperf3 TCP (loopback, memory to memory)" >&2
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
iperf3 -s -1 -B 127.0.0.1 -p "$port" >/dev/null 2>&1 &
iperf_pid=$!
sleep 0.3
iperf=$(iperf3 -c 127.0.0.1 -p "$port" -n "$(python3 -c "
s='$size'.lower(); import re
m=re.match(r'([0-9.]+)([a-z]*)', s); n=float(m.group(1)); u=m.group(2)
mult={'':1<<20,'b':1,'kib':1<<10,'k':1<<10,'mib':1<<20,'m':1<<20,'gib':1<<30,'g':1<<30}[u]
print(int(n*mult))")" -J | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)')
wait "$iperf_pid" 2>/dev/null || true
iperf_pid=""

echo "# one-shot qp2p send of 1 KiB to a running listener (20 runs)" >&2
mkdir -p "$tmp/in" "$tmp/id"
head -c 1024 /dev/urandom >"$tmp/small"
"$qp2p" --json --ephemeral listen --bind 127.0.0.1:0 --out "$tmp/in" >"$tmp/listen.json" 2>/dev/null &
listen_pid=$!
for _ in $(seq 100); do [ -s "$tmp/listen.json" ] && break; sleep 0.05; done
ticket=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["ticket"])' "$tmp/listen.json")
"$qp2p" --identity "$tmp/id" --quiet send "$ticket" "$tmp/small" # creates the identity
oneshot=()
for _ in $(seq 20); do
    t0=$(date +%s%N)
    "$qp2p" --identity "$tmp/id" --quiet send "$ticket" "$tmp/small"
    t1=$(date +%s%N)
    oneshot+=("$(( (t1 - t0) / 1000 ))")
done
kill "$listen_pid" 2>/dev/null || true
listen_pid=""
oneshot_ms=$(printf '%s\n' "${oneshot[@]}" | sort -n | awk '{ v[NR] = $1 } END { printf "%.1f", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) / 1000 }')

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
printf '\n%-44s %12s %10s\n' "measurement ($size, loopback)" "Gbit/s" "÷ qp2p"
printf '%-44s %12.2f %10s\n' "qp2p send -> listen --out (disk, BLAKE3)" "$qp2p_file" "1.00"
printf '%-44s %12.2f %10s\n' "socat TCP file copy (disk)" "$socat_file" "$(ratio "$socat_file" "$qp2p_file")"
printf '%-44s %12.2f %10s\n' "qp2p bench hashed (memory, BLAKE3 both ends)" "$hashed" "$(ratio "$hashed" "$qp2p_file")"
printf '%-44s %12.2f %10s\n' "qp2p bench framed (memory)" "$framed" "$(ratio "$framed" "$qp2p_file")"
printf '%-44s %12.2f %10s\n' "quinn raw stream (qp2p bench --raw)" "$raw" "$(ratio "$raw" "$qp2p_file")"
printf '%-44s %12.2f %10s\n' "iperf3 TCP (memory)" "$iperf" "$(ratio "$iperf" "$qp2p_file")"
printf '\n%-44s %12s\n' "other figures" "value"
printf '%-44s %12s\n' "qp2p file copy / socat file copy" "$(ratio "$qp2p_file" "$socat_file")"
printf '%-44s %12s\n' "qp2p hashed / raw quinn" "$(ratio "$hashed" "$raw")"
printf '%-44s %12s\n' "peak RSS qp2p / socat (MiB)" "$qp2p_rss / $socat_rss"
printf '%-44s %12.0f\n' "messages/s pooled (1 KiB, 32 in flight)" "$(field messages - pooled_per_s)"
printf '%-44s %12.1f\n' "pooling gain (pooled / unpooled)" "$(field messages - pooling_gain)"
printf '%-44s %12.0f\n' "round trip p50 µs" "$(field latency - p50_us)"
printf '%-44s %12.0f\n' "handshakes/s sequential" "$(field handshakes - sequential_per_s)"
printf '%-44s %12s\n' "one-shot send of 1 KiB, median ms" "$oneshot_ms"
