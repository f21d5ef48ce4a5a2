#!/usr/bin/env bash
# Loopback file-transfer benchmark: qp2p against a plain socat TCP copy.
#
#   bench/transfer.sh [--size SIZE] [--runs N] [--only qp2p|socat] [--no-build]
#
# Builds the release binary, makes one random file, then moves it over
# 127.0.0.1 with each tool N times (alternately), checks every landed copy by
# SHA-256 and prints the median wall time, rate and peak RSS of each side.
# See bench/README.md.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/transfer.sh [--size SIZE] [--runs N] [--only qp2p|socat] [--no-build]

  --size SIZE   file size: 1GiB (default), 256MiB, 4GiB, 64KiB, 1000B ...
                A plain number is MiB. The environment variable SIZE (MiB, or
                with a unit) is used when --size is not given.
  --runs N      runs per tool, alternating qp2p and socat (default 3)
  --only TOOL   run only qp2p or only socat
  --no-build    do not run `cargo build --release` first
  -h, --help    this text

Needs socat and GNU time (/usr/bin/time); installs them with apt-get when
missing and running as root. Uses loopback (127.0.0.1) only.
EOF
}

die() { echo "transfer.sh: $*" >&2; exit 1; }
log() { echo "# $*" >&2; }

# ---------------------------------------------------------------- arguments

# parse_size TEXT -> bytes on stdout. Plain number = MiB.
parse_size() {
    local text=$1 num unit mult
    [[ $text =~ ^([0-9]+)([A-Za-z]*)$ ]] || die "bad size: $text"
    num=${BASH_REMATCH[1]}
    unit=${BASH_REMATCH[2],,}
    case $unit in
        "" | m | mi | mib) mult=$((1024 * 1024)) ;;
        b) mult=1 ;;
        k | ki | kib) mult=1024 ;;
        g | gi | gib) mult=$((1024 * 1024 * 1024)) ;;
        kb) mult=1000 ;;
        mb) mult=1000000 ;;
        gb) mult=1000000000 ;;
        *) die "bad size unit: $text (use B, KiB, MiB, GiB, KB, MB, GB)" ;;
    esac
    echo $((num * mult))
}

size_text=${SIZE:-1GiB}
runs=3
only=""
build=1
while [ $# -gt 0 ]; do
    case $1 in
        --size) [ $# -ge 2 ] || die "--size needs a value"; size_text=$2; shift 2 ;;
        --size=*) size_text=${1#--size=}; shift ;;
        --runs) [ $# -ge 2 ] || die "--runs needs a value"; runs=$2; shift 2 ;;
        --runs=*) runs=${1#--runs=}; shift ;;
        --only) [ $# -ge 2 ] || die "--only needs a value"; only=$2; shift 2 ;;
        --only=*) only=${1#--only=}; shift ;;
        --no-build) build=0; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
bytes=$(parse_size "$size_text")
[ "$bytes" -gt 0 ] || die "size must be > 0"
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
case $only in "" | qp2p | socat) ;; *) die "--only takes qp2p or socat" ;; esac
do_qp2p=1
do_socat=1
[ "$only" = socat ] && do_qp2p=0
[ "$only" = qp2p ] && do_socat=0

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD

# ---------------------------------------------------------------- tools

ensure_tools() {
    local missing=()
    command -v socat >/dev/null 2>&1 || missing+=(socat)
    [ -x /usr/bin/time ] || missing+=(time)
    [ "${#missing[@]}" -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "missing ${missing[*]}: install with: apt-get install ${missing[*]}"
    log "installing ${missing[*]}: apt-get install -y --no-install-recommends ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
        log "install failed; running apt-get update and trying again"
        apt-get update -qq >&2
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    fi
}
ensure_tools
for tool in awk sha256sum setsid head; do
    command -v "$tool" >/dev/null 2>&1 || die "needs $tool"
done

qp2p="${CARGO_TARGET_DIR:-$repo/target}/release/qp2p"
if [ "$do_qp2p" -eq 1 ]; then
    if [ "$build" -eq 1 ]; then
        log "cargo build --release"
        cargo build --release >&2
    fi
    [ -x "$qp2p" ] || die "no binary at $qp2p (run cargo build --release)"
fi

# qp2p must not pick up settings from the caller's environment.
unset RUST_LOG
while IFS= read -r var; do unset "$var"; done < <(compgen -e | grep '^QP2P_' || true)

# ---------------------------------------------------------------- cleanup

tmp=""
bg_pids=() # each started with setsid: pid == process group id

cleanup() {
    local pid tries
    for pid in "${bg_pids[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then kill -TERM -- "-$pid" 2>/dev/null || true; fi
    done
    for pid in "${bg_pids[@]}"; do
        tries=0
        while kill -0 "$pid" 2>/dev/null && [ "$tries" -lt 50 ]; do
            sleep 0.1
            tries=$((tries + 1))
        done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL -- "-$pid" 2>/dev/null || true; fi
    done
    if [ -n "$tmp" ] && [ -d "$tmp" ]; then rm -rf -- "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_bg OUT ERR CMD...: run CMD in its own process group (so the trap can
# kill /usr/bin/time and its child together); sets $bg_pid.
start_bg() {
    local out=$1 err=$2
    shift 2
    setsid "$@" >"$out" 2>"$err" </dev/null &
    bg_pid=$!
    bg_pids+=("$bg_pid")
}

# wait_exit PID SECONDS TIMEFILE: wait until a process started by start_bg
# under `/usr/bin/time -o TIMEFILE` has exited, killing it after SECONDS, and
# set $wait_rc to the exit status that time recorded. This polls on purpose:
# bash's `wait PID` was seen to hang now and then on a child that had already
# exited. The 5 ms poll is fine inside a timed section.
wait_exit() {
    local pid=$1 deadline=$((SECONDS + $2)) timefile=$3 state="" killed=0 p
    while kill -0 "$pid" 2>/dev/null; do
        # an exited child that bash has not reaped yet is a zombie
        read -r _ _ state _ <"/proc/$pid/stat" 2>/dev/null || break
        [ "$state" = Z ] && break
        if [ "$SECONDS" -ge "$deadline" ]; then
            [ "$killed" -eq 0 ] || die "process $pid does not stop"
            log "process $pid still running after $2s; killing it"
            kill -TERM -- "-$pid" 2>/dev/null || true
            deadline=$((SECONDS + 10))
            killed=1
        fi
        sleep 0.005
    done
    # it is gone: the trap must not signal its (reusable) process group id
    for p in "${!bg_pids[@]}"; do
        [ "${bg_pids[p]}" != "$pid" ] || unset "bg_pids[p]"
    done
    wait_rc=$(awk '/Exit status:/ { rc = $NF } /terminated by signal/ { rc = 128 + $NF }
                   END { print (rc == "" ? 255 : rc) }' "$timefile" 2>/dev/null || echo 255)
}

# ---------------------------------------------------------------- helpers

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
gbits() { awk -v n="$bytes" -v s="$1" 'BEGIN { printf "%.2f", n * 8 / s / 1e9 }'; }

# rss_mib TIMEFILE: "Maximum resident set size" of /usr/bin/time -v, in MiB.
rss_mib() {
    awk -F: '/Maximum resident set size/ { printf "%.1f", $2 / 1024; found = 1 }
             END { if (!found) printf "nan" }' "$1"
}

median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
        END { if (NR % 2) printf "%.3f", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# port_in_use PORT: some TCP socket (any state) has this local port.
port_in_use() {
    local hex
    hex=$(printf '%04X' "$1")
    cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk -v p=":$hex" 'NR > 1 && substr($2, length($2) - 4) == p { f = 1 } END { exit !f }'
}

# port_listening PORT: a TCP socket listens on 127.0.0.1:PORT.
port_listening() {
    local hex
    hex=$(printf '%04X' "$1")
    awk -v a="0100007F:$hex" 'NR > 1 && $2 == a && $4 == "0A" { f = 1 } END { exit !f }' /proc/net/tcp
}

free_port() {
    local port
    for port in $(seq 47999 48199); do
        if ! port_in_use "$port"; then echo "$port"; return 0; fi
    done
    die "no free TCP port in 47999-48199"
}

check_copy() { # check_copy TOOL FILE
    [ -f "$2" ] || die "$1: no file landed at $2"
    local got
    got=$(sha256sum "$2" | awk '{ print $1 }')
    [ "$got" = "$src_sha" ] || die "$1: sha256 mismatch: got $got, want $src_sha ($2)"
}

# ---------------------------------------------------------------- setup

tmp=$(mktemp -d "${TMPDIR:-/tmp}/qp2p-bench.XXXXXX")
avail_kib=$(df -P -k "$tmp" | awk 'NR == 2 { print $4 }')
if [ "$avail_kib" -lt $((bytes * 2 / 1024 + 65536)) ]; then
    die "not enough space in $tmp for two copies of $bytes bytes"
fi

src="$tmp/payload.bin"
log "making a random file of $bytes bytes in $tmp"
head -c "$bytes" /dev/urandom >"$src"
src_sha=$(sha256sum "$src" | awk '{ print $1 }')

# ---------------------------------------------------------------- runs

q_wall=() q_srss=() q_rrss=()
s_wall=() s_srss=() s_rrss=()

run_qp2p() {
    local i=$1 out="$tmp/qp2p-out" ticket="" t0 t1 wall waited=0 rc=0 landed
    rm -rf -- "$out"
    mkdir -p "$out"
    start_bg "$tmp/recv.json" "$tmp/recv.err" \
        /usr/bin/time -v -o "$tmp/recv.time" \
        "$qp2p" --json --ephemeral listen --bind 127.0.0.1:0 --out "$out" --once
    local pid=$bg_pid
    while [ -z "$ticket" ]; do
        ticket=$(sed -n 's/.*"event": *"listening".*"ticket": *"\([^"]*\)".*/\1/p' "$tmp/recv.json" | head -n 1)
        [ -n "$ticket" ] && break
        kill -0 "$pid" 2>/dev/null || { cat "$tmp/recv.err" >&2; die "qp2p listen exited before listening"; }
        [ "$waited" -lt 300 ] || die "qp2p listen printed no listening event in 30s"
        sleep 0.1
        waited=$((waited + 1))
    done

    t0=$(now)
    /usr/bin/time -v -o "$tmp/send.time" \
        "$qp2p" --json --ephemeral send "$ticket" "$src" >"$tmp/send.json" 2>"$tmp/send.err" </dev/null || rc=$?
    t1=$(now)
    if [ "$rc" -ne 0 ]; then
        cat "$tmp/send.json" "$tmp/send.err" >&2
        die "qp2p send failed (exit $rc)"
    fi
    wait_exit "$pid" 60 "$tmp/recv.time"
    if [ "$wait_rc" -ne 0 ]; then
        cat "$tmp/recv.json" "$tmp/recv.err" >&2
        die "qp2p listen failed (exit $wait_rc)"
    fi

    landed=$(sed -n 's/.*"event": *"received".*"path": *"\([^"]*\)".*/\1/p' "$tmp/recv.json" | head -n 1)
    check_copy qp2p "${landed:-$out/payload.bin}"
    rm -rf -- "$out"

    wall=$(elapsed "$t0" "$t1")
    q_wall+=("$wall")
    q_srss+=("$(rss_mib "$tmp/send.time")")
    q_rrss+=("$(rss_mib "$tmp/recv.time")")
    log "run $i qp2p:  ${wall}s  $(gbits "$wall") Gbit/s  rss send ${q_srss[-1]} MiB, recv ${q_rrss[-1]} MiB  sha256 ok"
}

run_socat() {
    local i=$1 out="$tmp/socat-out.bin" port t0 t1 wall waited=0 rc=0
    rm -f -- "$out"
    port=$(free_port)
    start_bg /dev/null "$tmp/socat-recv.err" \
        /usr/bin/time -v -o "$tmp/socat-recv.time" \
        socat -u "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr" "OPEN:$out,creat,trunc"
    local pid=$bg_pid
    until port_listening "$port"; do
        kill -0 "$pid" 2>/dev/null || { cat "$tmp/socat-recv.err" >&2; die "socat receiver exited before listening"; }
        [ "$waited" -lt 300 ] || die "socat receiver not listening on port $port after 30s"
        sleep 0.1
        waited=$((waited + 1))
    done

    # Timed until the receiver has written everything and exited, as qp2p
    # send only returns once the receiver has stored (and acked) the file.
    t0=$(now)
    /usr/bin/time -v -o "$tmp/socat-send.time" \
        socat -u "OPEN:$src" "TCP:127.0.0.1:$port" 2>"$tmp/socat-send.err" </dev/null || rc=$?
    wait_exit "$pid" 60 "$tmp/socat-recv.time"
    t1=$(now)
    if [ "$rc" -ne 0 ]; then
        cat "$tmp/socat-send.err" >&2
        die "socat sender failed (exit $rc)"
    fi
    if [ "$wait_rc" -ne 0 ]; then
        cat "$tmp/socat-recv.err" >&2
        die "socat receiver failed (exit $wait_rc)"
    fi

    check_copy socat "$out"
    rm -f -- "$out"

    wall=$(elapsed "$t0" "$t1")
    s_wall+=("$wall")
    s_srss+=("$(rss_mib "$tmp/socat-send.time")")
    s_rrss+=("$(rss_mib "$tmp/socat-recv.time")")
    log "run $i socat: ${wall}s  $(gbits "$wall") Gbit/s  rss send ${s_srss[-1]} MiB, recv ${s_rrss[-1]} MiB  sha256 ok"
}

log "size $bytes bytes ($(awk -v n="$bytes" 'BEGIN { printf "%.1f MiB", n / 1048576 }')), $runs run(s) per tool"
for i in $(seq 1 "$runs"); do
    if [ "$do_qp2p" -eq 1 ]; then run_qp2p "$i"; fi
    if [ "$do_socat" -eq 1 ]; then run_socat "$i"; fi
done

# ---------------------------------------------------------------- report

echo
echo "loopback transfer of $bytes bytes, median of $runs run(s), sha256 verified"
printf '%-6s %10s %9s %15s %15s\n' tool "wall s" "Gbit/s" "send RSS MiB" "recv RSS MiB"
row() { # row TOOL WALLS... -- SEND_RSS... -- RECV_RSS...
    local tool=$1
    shift
    local wall srss rrss
    wall=$(median "${@:1:runs}")
    srss=$(median "${@:runs+1:runs}")
    rrss=$(median "${@:2*runs+1:runs}")
    printf '%-6s %10.3f %9s %15.1f %15.1f\n' "$tool" "$wall" "$(gbits "$wall")" "$srss" "$rrss"
}
if [ "$do_qp2p" -eq 1 ]; then row qp2p "${q_wall[@]}" "${q_srss[@]}" "${q_rrss[@]}"; fi
if [ "$do_socat" -eq 1 ]; then row socat "${s_wall[@]}" "${s_srss[@]}" "${s_rrss[@]}"; fi
if [ "$do_qp2p" -eq 1 ] && [ "$do_socat" -eq 1 ]; then
    q_med=$(median "${q_wall[@]}")
    s_med=$(median "${s_wall[@]}")
    awk -v q="$q_med" -v s="$s_med" 'BEGIN { printf "ratio qp2p/socat (rate of medians): %.2f\n", s / q }'
fi
