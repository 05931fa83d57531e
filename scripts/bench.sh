#!/usr/bin/env bash
# Usage: scripts/bench.sh
#
# System benchmark: fanout against the uWebSockets.js peer
# (loadtest/peer-uws), same harness, same cores, loopback only. Builds the
# release binaries, installs the peer (scripts/peer-up.sh), then runs the
# matrix with a fresh server process per run:
#
#   N subscribers x K keys (one key each, uniform): 1k x {10, 1000},
#   10k x {10, 1000}, each at a fixed rate and at saturation (--rate 0), plus
#   an idle point (no events) at the largest N the open-file limit allows.
#
# The server runs under `taskset -c 1`, loadtest under `taskset -c 0`.
# fanout gets its events through its embedded Kafka broker (in-process, on
# the server's core, topic booking.created only); the peer through loadtest's
# WebSocket publisher (--publish-url). Writes
# bench-results/<date>-<host>/ (summary.md, summary.json, plots/*.svg, and
# raw/: every loadtest JSON and log, server logs, commands, machine) and
# regenerates the tables between the bench markers in BENCHMARKS.md.
#
#   scripts/bench.sh                  # full matrix, 3 repeats (~15 min)
#   BENCH_QUICK=1 scripts/bench.sh    # smoke run: 1 repeat, short runs,
#                                     # into <date>-<host>-quick/, doc untouched
#   BENCH_REPEAT=5 scripts/bench.sh
#   BENCH_ONLY='n1k-k10' scripts/bench.sh   # scenarios matching a regex
#
# Environment, with defaults:
#   BENCH_REPEAT            runs per (scenario, server) [3; quick: 1]
#   BENCH_QUICK             1 for the smoke run [0]
#   BENCH_ONLY              regex over scenario names [all]
#   BENCH_IDLE_CONNS        N of the idle point [open-file hard limit - 1000,
#                           rounded down to 1000, at most 100000]
#   BENCH_FIXED_DELIVERIES  fixed-rate load in deliveries/s; the event rate
#                           of a point is this x K / N [50000]
#   BENCH_FIXED_MAX_EVENTS  cap on a fixed-rate event rate, events/s [10000]
#   BENCH_SAT_DELIVERIES    size of a saturation run in deliveries; its event
#                           count is this x K / N [6000000; quick: 1000000]
#   BENCH_SAT_MAX_EVENTS    cap on a saturation run's events [500000]
#   BENCH_DURATION          fixed-rate production time [10s; quick: 3s]
#   BENCH_HOLD              idle hold time [10s; quick: 3s]
#   BENCH_PARTITIONS        partitions of the benchmark topic in fanout's
#                           embedded broker [128]; see BENCHMARKS.md for why
#   BENCH_SERVER_CPU / BENCH_LOAD_CPU  cores [1 / 0]
#   BENCH_DOC               0 leaves BENCHMARKS.md alone [1; quick or
#                           BENCH_ONLY: 0]
#
# Needs 2+ CPUs, taskset, python3, node >= 20 and npm, cargo.
# Exit status: 0 when every run passed loadtest's exact-delivery audit;
# 1 when any run lost, duplicated or misrouted a delivery, had a subscriber
# closed, or could not run (summary.md marks which); 2 for setup errors.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=${BENCH_QUICK:-0}
if [ "$quick" = 1 ]; then
    repeat=${BENCH_REPEAT:-1}
    duration=${BENCH_DURATION:-3s}
    hold=${BENCH_HOLD:-3s}
    sat_deliveries=${BENCH_SAT_DELIVERIES:-1000000}
    update_doc=${BENCH_DOC:-0}
else
    repeat=${BENCH_REPEAT:-3}
    duration=${BENCH_DURATION:-10s}
    hold=${BENCH_HOLD:-10s}
    sat_deliveries=${BENCH_SAT_DELIVERIES:-6000000}
    update_doc=${BENCH_DOC:-1}
fi
only=${BENCH_ONLY:-}
# A partial matrix does not replace the tables of a full one.
[ -n "$only" ] && update_doc=${BENCH_DOC:-0}
fixed_deliveries=${BENCH_FIXED_DELIVERIES:-50000}
fixed_max_events=${BENCH_FIXED_MAX_EVENTS:-10000}
sat_max_events=${BENCH_SAT_MAX_EVENTS:-500000}
partitions=${BENCH_PARTITIONS:-128}
topic=booking.created
server_cpu=${BENCH_SERVER_CPU:-1}
load_cpu=${BENCH_LOAD_CPU:-0}
drain=2s

die() { echo "bench: $*" >&2; exit 2; }

for tool in taskset python3 node cargo timeout; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
[ "$(nproc --all)" -ge 2 ] || die "needs at least 2 CPUs (server and loadtest on separate cores)"

# Every subscriber is a file descriptor on both sides; take the hard limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
nofile=$(ulimit -n)
if [ -n "${BENCH_IDLE_CONNS:-}" ]; then
    idle_conns=$BENCH_IDLE_CONNS
elif [ "$nofile" = unlimited ] || [ "$nofile" -ge 101000 ]; then
    idle_conns=100000
else
    idle_conns=$(((nofile - 1000) / 1000 * 1000))
fi
[ "$idle_conns" -ge 1000 ] || die "open-file limit $nofile is too low for the idle point"

# --------------------------------------------------------------- processes

server_pid=""
loadtest_pid=""

stop_server() {
    [ -n "$server_pid" ] || return 0
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}

cleanup() {
    if [ -n "$loadtest_pid" ]; then
        kill -TERM "$loadtest_pid" 2>/dev/null || true
        wait "$loadtest_pid" 2>/dev/null || true
    fi
    stop_server
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ setup

echo "bench: cargo build --release -p fanout -p loadtest"
cargo build --release -p fanout -p loadtest
scripts/peer-up.sh

date_utc=$(date -u +%Y-%m-%d)
host=$(hostname -s 2>/dev/null || hostname)
run_name="$date_utc-$host"
[ "$quick" = 1 ] && run_name="$run_name-quick"
out="bench-results/$run_name"
raw="$out/raw"
if [ -e "$out" ]; then
    echo "bench: replacing $out from an earlier run today"
    rm -rf "$out"
fi
mkdir -p "$raw" "$out/plots"

clk_tck=$(getconf CLK_TCK)
time_bin=""
if /usr/bin/time -f '%e' -o /dev/null true 2>/dev/null; then
    time_bin=/usr/bin/time
fi

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: $host"
    echo "uname: $(uname -a)"
    echo "nproc: $(nproc --all)"
    echo "open files (soft/hard): $nofile / $(ulimit -Hn)"
    echo "locked memory (KiB): $(ulimit -l)"
    echo "ip_local_port_range: $(cat /proc/sys/net/ipv4/ip_local_port_range)"
    echo "loadavg at start: $(cat /proc/loadavg)"
    echo "git: $(git describe --always --dirty 2>/dev/null || echo unknown)"
    echo "rustc: $(rustc -V)"
    echo "node: $(node --version)"
    echo "uwebsockets: $(cd loadtest/peer-uws && node -p 'require("uwebsockets/package.json").version')"
    echo "server cpu: $server_cpu"
    echo "loadtest cpu: $load_cpu"
    echo "settings: repeat=$repeat quick=$quick duration=$duration hold=$hold drain=$drain" \
        "fixed_deliveries=$fixed_deliveries fixed_max_events=$fixed_max_events" \
        "sat_deliveries=$sat_deliveries" \
        "sat_max_events=$sat_max_events partitions=$partitions idle_conns=$idle_conns only=${only:-all}"
    echo
    echo "lscpu:"
    lscpu
} >"$raw/machine.txt"
# The command as given: every BENCH_* setting from the environment.
env_desc=$(env | grep '^BENCH_' | sort | sed "s/=\(.*\)/='\1'/" | tr '\n' ' ' || true)
echo "${env_desc}scripts/bench.sh" >"$raw/invocation.txt"
: >"$raw/commands.txt"
printf 'run\tscenario\tserver\trepeat\tmode\tn\tk\trate\tevents\texit\twall_s\tloadtest_cpu_s\tserver_cpu_s\tbroker_cpu_s\tcores_busy_s\n' \
    >"$raw/runs.tsv"

# ------------------------------------------------------------- measuring

# utime + stime of a process, in clock ticks.
proc_ticks() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    stat=${stat##*) }
    # shellcheck disable=SC2086
    set -- $stat
    echo $((${12} + ${13}))
}

# utime + stime of the threads of process $1 named $2, in clock ticks.
thread_ticks() {
    local pid=$1 name=$2 t comm stat total=0
    for t in /proc/"$pid"/task/*; do
        comm=$(cat "$t/comm" 2>/dev/null) || continue
        [ "$comm" = "$name" ] || continue
        stat=$(cat "$t/stat" 2>/dev/null) || continue
        stat=${stat##*) }
        # shellcheck disable=SC2086
        set -- $stat
        total=$((total + ${12} + ${13}))
    done
    echo "$total"
}

# user + nice + system ticks of the two benchmark cores.
cores_ticks() {
    awk -v a="cpu$server_cpu" -v b="cpu$load_cpu" \
        '$1 == a || $1 == b { t += $2 + $3 + $4 } END { print t }' /proc/stat
}

# Starts the server of kind $1 for run $2; sets server_pid and server_addr
# (and broker_addr for fanout).
start_server() {
    local kind=$1 run=$2 cmd
    case "$kind" in
        fanout)
            cmd=(taskset -c "$server_cpu" target/release/fanout --kafka-brokers embedded
                --topics "$topic" --embedded-partitions "$partitions" --listen 127.0.0.1 --port 0
                --shards 1 --ingest-core "$server_cpu" --no-pin) ;;
        peer)
            cmd=(taskset -c "$server_cpu" node loadtest/peer-uws/server.js --host 127.0.0.1 --port 0) ;;
    esac
    echo "$run server: ${cmd[*]}" >>"$raw/commands.txt"
    NO_COLOR=1 "${cmd[@]}" >"$raw/$run.server.out" 2>"$raw/$run.server.log" &
    server_pid=$!
    server_addr=""
    broker_addr=""
    for _ in $(seq 300); do
        server_addr=$(sed -n 's/^\(fanout\|peer-uws\) listening on //p' "$raw/$run.server.out")
        broker_addr=$(sed -n 's/^embedded Kafka broker: produce to //p' "$raw/$run.server.out")
        if [ -n "$server_addr" ] && { [ "$kind" = peer ] || [ -n "$broker_addr" ]; }; then
            return 0
        fi
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "bench: $kind did not start; see $raw/$run.server.log" >&2
    tail -5 "$raw/$run.server.log" >&2 || true
    stop_server
    return 1
}

failures=0

# One loadtest run: run_point SCENARIO MODE N K SERVER REPEAT
run_point() {
    local scenario=$1 mode=$2 n=$3 k=$4 kind=$5 rep=$6
    local run="$scenario.$kind.r$rep" rate=0 events="" args target lt rc=0
    case "$mode" in
        fixed)
            rate=$(((fixed_deliveries * k + n - 1) / n))
            [ "$rate" -le "$fixed_max_events" ] || rate=$fixed_max_events
            args=(--rate "$rate" --duration "$duration") ;;
        sat)
            events=$(((sat_deliveries * k + n - 1) / n))
            [ "$events" -le "$sat_max_events" ] || events=$sat_max_events
            args=(--rate 0 --events "$events" --duration 120s) ;;
        idle)
            events=0
            args=(--events 0 --hold "$hold") ;;
    esac
    if ! start_server "$kind" "$run"; then
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\t\t\t\t\n' "$run" "$scenario" "$kind" "$rep" \
            "$mode" "$n" "$k" "$rate" "$events" 2 >>"$raw/runs.tsv"
        failures=$((failures + 1))
        return 0
    fi
    target=()
    if [ "$mode" != idle ]; then
        case "$kind" in
            fanout) target=(--kafka-brokers "$broker_addr") ;;
            peer) target=(--publish-url "ws://$server_addr/publish") ;;
        esac
    fi
    lt=(taskset -c "$load_cpu" target/release/loadtest --server "$server_addr" "${target[@]}" --topic "$topic"
        --server-pid "$server_pid" -n "$n" -k "$k" "${args[@]}"
        --drain "$drain" --drain-max 60s --label "$kind" --out "$raw/$run.json")
    echo "$run loadtest: ${lt[*]}" >>"$raw/commands.txt"
    local timer=()
    [ -n "$time_bin" ] && timer=("$time_bin" -f '%e %U %S' -o "$raw/$run.time")
    local srv0 mock0 cores0 t0 t1
    srv0=$(proc_ticks "$server_pid")
    # The embedded broker is librdkafka's mock cluster, one thread named
    # rdk:mock: counted apart, it stands in for a broker on another host.
    mock0=$(thread_ticks "$server_pid" rdk:mock)
    cores0=$(cores_ticks)
    t0=$(date +%s.%N)
    timeout -k 10 300 "${timer[@]}" "${lt[@]}" >"$raw/$run.row.md" 2>"$raw/$run.loadtest.log" &
    loadtest_pid=$!
    wait "$loadtest_pid" || rc=$?
    loadtest_pid=""
    t1=$(date +%s.%N)
    local srv1 mock1 cores1 lt_cpu="" broker_cpu=""
    srv1=$(proc_ticks "$server_pid")
    mock1=$(thread_ticks "$server_pid" rdk:mock)
    cores1=$(cores_ticks)
    if [ -s "$raw/$run.time" ]; then
        lt_cpu=$(tail -1 "$raw/$run.time" | awk '{ printf "%.2f", $2 + $3 }')
    fi
    if [ "$kind" = fanout ]; then
        broker_cpu=$(awk -v t=$((mock1 - mock0)) -v h="$clk_tck" 'BEGIN { printf "%.2f", t / h }')
    fi
    stop_server
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$scenario" "$kind" \
        "$rep" "$mode" "$n" "$k" "$rate" "$events" "$rc" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')" "$lt_cpu" \
        "$(awk -v t=$((srv1 - srv0)) -v h="$clk_tck" 'BEGIN { printf "%.2f", t / h }')" "$broker_cpu" \
        "$(awk -v t=$((cores1 - cores0)) -v h="$clk_tck" 'BEGIN { printf "%.2f", t / h }')" \
        >>"$raw/runs.tsv"
    local verdict
    verdict=$(grep -o '[^|]*|$' "$raw/$run.row.md" 2>/dev/null | tr -d '| ' || true)
    case "$rc" in
        0) echo "bench: $run ok ($(sed -n 's/^deliver: //p' "$raw/$run.loadtest.log"))" ;;
        1) failures=$((failures + 1))
           echo "bench: $run FAILED the audit: $(sed -n 's/^audit: //p' "$raw/$run.loadtest.log")" >&2 ;;
        *) failures=$((failures + 1))
           echo "bench: $run could not run (exit $rc${verdict:+, $verdict}):" >&2
           tail -3 "$raw/$run.loadtest.log" >&2 || true ;;
    esac
    # Let the closed sockets leave the server side before the next process.
    sleep 1
}

# ---------------------------------------------------------------- matrix

# name mode N K
scenarios=(
    "n1k-k10-fixed fixed 1000 10"
    "n1k-k10-sat sat 1000 10"
    "n1k-k1000-fixed fixed 1000 1000"
    "n1k-k1000-sat sat 1000 1000"
    "n10k-k10-fixed fixed 10000 10"
    "n10k-k10-sat sat 10000 10"
    "n10k-k1000-fixed fixed 10000 1000"
    "n10k-k1000-sat sat 10000 1000"
    "n$((idle_conns / 1000))k-k10-idle idle $idle_conns 10"
    "n$((idle_conns / 1000))k-k1000-idle idle $idle_conns 1000"
)

started=$(date +%s)
for rep in $(seq "$repeat"); do
    # Alternate who goes first, so a slow drift in machine load hits both.
    if [ $((rep % 2)) = 1 ]; then order=(fanout peer); else order=(peer fanout); fi
    for s in "${scenarios[@]}"; do
        read -r name mode n k <<<"$s"
        if [ -n "$only" ] && ! [[ $name =~ $only ]]; then continue; fi
        for kind in "${order[@]}"; do
            run_point "$name" "$mode" "$n" "$k" "$kind" "$rep"
        done
    done
    echo "bench: repeat $rep/$repeat done after $(($(date +%s) - started))s"
done
echo "loadavg at end: $(cat /proc/loadavg)" >>"$raw/machine.txt"

doc_args=()
[ "$update_doc" = 1 ] && doc_args=(--doc BENCHMARKS.md)
python3 scripts/bench_summary.py "$out" "${doc_args[@]}"
echo "bench: wrote $out/summary.md ($(($(date +%s) - started))s)"
if [ "$failures" -gt 0 ]; then
    echo "bench: $failures run(s) failed the audit or could not run; see $out/summary.md" >&2
    exit 1
fi
