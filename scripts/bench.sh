#!/usr/bin/env bash
# Usage: scripts/bench.sh
#
# System benchmark, symmetric: fanout and two Node peers each consume the
# same Kafka topic from the same kind of broker process, and loadtest
# produces to it for all of them. Loopback only.
#
#   fanout  release build, --shards 1 --no-pin, its librdkafka consumer
#           (fetch.wait.max.ms 10, its default)
#   uws     loadtest/peer-uws: uWebSockets.js 3.0.6 + kafkajs 2.2.4,
#           eachBatch, maxWaitTimeInMs 10
#   ws      loadtest/peer-ws: ws 8 + kafkajs 2.2.4, a Map from key to sockets
#
# Every run gets a fresh tansu broker (scripts/deps-up.sh builds it;
# in-memory storage) and a fresh topic booking.created with 3 partitions, so
# no run can read an earlier run's records. tansu and loadtest share the load
# core (taskset -c 0), the server has the other (taskset -c 1) to itself.
#
# Matrix: N subscribers x K keys (one key each, uniform): 1k x {10, 1000},
# 10k x {10, 1000}, each at a fixed rate and at saturation (--rate 0), plus
# an idle point (connections open, no events: memory per connection and idle
# CPU) at the largest N the open-file limit allows. Two extra labelled rows
# on n10k-k1000-sat only: fanout on its embedded broker (the issue's "within
# 20% of the embedded figure" needs that cell) and the uWS peer fed straight
# down a WebSocket (the older socket-fed method: what the Kafka client costs
# the peer).
#
# Writes bench-results/<date>-<host>/ (summary.md, summary.json, plots/*.svg,
# and raw/: every loadtest JSON and log, server and broker logs, fanout's
# /metrics at the end of each of its runs, commands,
# machine; raw/ is git-ignored) and regenerates the tables between the bench
# markers in BENCHMARKS.md.
#
#   scripts/bench.sh                  # full matrix, 3 repeats (~60 min)
#   BENCH_QUICK=1 scripts/bench.sh    # smoke run: 1 repeat, short runs,
#                                     # into <date>-<host>-quick/, doc untouched
#   BENCH_ONLY='n10k-k1000-sat' scripts/bench.sh   # scenarios matching a regex
#   BENCH_SERVERS='fanout uws' BENCH_ONLY=n1k scripts/bench.sh
#   BENCH_PERF=1 BENCH_ONLY=n10k-k1000-sat scripts/bench.sh   # + profiles
#
# Environment, with defaults:
#   BENCH_REPEAT            runs per (scenario, server) [3; quick: 1]
#   BENCH_QUICK             1 for the smoke run [0]
#   BENCH_ONLY              regex over scenario names [all]
#   BENCH_SERVERS           servers, in the order of the first repeat
#                           [fanout uws ws]
#   BENCH_EXTRA_ONLY        regex of scenarios that also get the extra rows
#                           fanout-embedded and uws-socket
#                           [^n10k-k1000-sat$; "none" for no extra rows]
#   BENCH_IDLE_CONNS        N of the idle point [open-file hard limit - 1000,
#                           rounded down to 1000, at most 100000]
#   BENCH_FIXED_DELIVERIES  fixed-rate load in deliveries/s; the event rate
#                           of a point is this x K / N [50000]
#   BENCH_FIXED_MAX_EVENTS  cap on a fixed-rate event rate, events/s [500]:
#                           what the producer and tansu sustain with margin
#                           on the shared load core for a whole run,
#                           whichever server consumes. tansu 0.6.0's fetch
#                           lists every batch stored so far, so its CPU
#                           grows through a run: at 1000 the load core
#                           saturated ~8 s into most fanout runs, at 2000
#                           tansu fell behind for every server
#                           (see BENCHMARKS.md)
#   BENCH_SAT_DELIVERIES    size of a saturation run in deliveries; its event
#                           count is this x K / N [6000000; quick: 1000000]
#   BENCH_SAT_MAX_EVENTS    cap on a saturation run's events [500000]
#   BENCH_DURATION          fixed-rate production time [10s; quick: 3s]
#   BENCH_HOLD              idle hold time [10s; quick: 3s]
#   BENCH_PARTITIONS        partitions of the benchmark topic on tansu [3]
#   BENCH_EMBEDDED_PARTITIONS  partitions in fanout's embedded broker, for
#                           the extra row [128]; see BENCHMARKS.md
#   BENCH_MAX_WAIT_MS       fetch.wait.max.ms / maxWaitTimeInMs of every
#                           consumer on tansu [10]
#   BENCH_PERF              1: perf record -e cpu-clock -g on the server
#                           during each loaded run, top symbols into
#                           raw/<run>.perf.txt (adds overhead; off in the
#                           tables' runs) [0]
#   BENCH_COUNT             1: perf stat counts the server's context switches
#                           and socket-write system calls (send, sendto,
#                           sendmsg, write, writev) over each loaded run,
#                           into raw/counts.tsv (tracing the syscalls costs
#                           the server a little; off in the tables' runs) [0]
#   BENCH_RUN_NAME          directory under bench-results/ [<date>-<host>];
#                           an existing one is replaced
#   BENCH_SERVER_CPU / BENCH_LOAD_CPU  cores [1 / 0]
#   BENCH_FANOUT_ARGS       extra flags for fanout, for trying a setting
#                           against the default (e.g. '--max-flush-delay
#                           10ms'); recorded in raw/commands.txt [none]
#   BENCH_GUEST_PAGES       hold: on a VM guest that hands freed pages back
#                           to its host (see "guest memory" below), keep
#                           them in the guest while the bench runs and
#                           restore the setting at exit; leave: change
#                           nothing [hold]
#   BENCH_WARM_MIB          MiB written through /dev/shm and deleted before
#                           each run when holding, so the pages the run's
#                           socket buffers take are backed [2048]
#   BENCH_DOC               0 leaves BENCHMARKS.md alone [1; quick,
#                           BENCH_ONLY or BENCH_SERVERS: 0]
#   FANOUT_TANSU            tansu binary [$HOME/.cache/fanout/tansu/bin/tansu]
#
# Needs 2+ CPUs, taskset, curl, python3, node >= 20 and npm, cargo, tansu
# (scripts/deps-up.sh), perf for BENCH_PERF.
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
read -r -a servers <<<"${BENCH_SERVERS:-fanout uws ws}"
extra_only=${BENCH_EXTRA_ONLY:-^n10k-k1000-sat\$}
# A partial matrix does not replace the tables of a full one.
if [ -n "$only" ] || [ -n "${BENCH_SERVERS:-}" ]; then update_doc=${BENCH_DOC:-0}; fi
fixed_deliveries=${BENCH_FIXED_DELIVERIES:-50000}
fixed_max_events=${BENCH_FIXED_MAX_EVENTS:-500}
sat_max_events=${BENCH_SAT_MAX_EVENTS:-500000}
partitions=${BENCH_PARTITIONS:-3}
embedded_partitions=${BENCH_EMBEDDED_PARTITIONS:-128}
max_wait_ms=${BENCH_MAX_WAIT_MS:-10}
perf_on=${BENCH_PERF:-0}
count_on=${BENCH_COUNT:-0}
read -r -a fanout_args <<<"${BENCH_FANOUT_ARGS:-}"
topic=booking.created
server_cpu=${BENCH_SERVER_CPU:-1}
load_cpu=${BENCH_LOAD_CPU:-0}
tansu=${FANOUT_TANSU:-$HOME/.cache/fanout/tansu/bin/tansu}
guest_pages=${BENCH_GUEST_PAGES:-hold}
warm_mib=${BENCH_WARM_MIB:-2048}
drain=2s
# A slow server may need minutes to deliver a saturation burst that the
# broker took in seconds.
drain_max=300s
run_timeout=900

die() { echo "bench: $*" >&2; exit 2; }

for tool in taskset python3 node cargo timeout curl; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
[ "$(nproc --all)" -ge 2 ] || die "needs at least 2 CPUs (server and loadtest on separate cores)"
[ -x "$tansu" ] || die "no tansu at $tansu (run scripts/deps-up.sh)"
if [ "$perf_on" = 1 ] || [ "$count_on" = 1 ]; then
    command -v perf >/dev/null || die "BENCH_PERF=1 and BENCH_COUNT=1 need perf"
fi
case "$guest_pages" in hold | leave) ;; *) die "BENCH_GUEST_PAGES is hold or leave, not $guest_pages" ;; esac
[[ $warm_mib =~ ^[0-9]+$ ]] || die "BENCH_WARM_MIB is a number of MiB, not $warm_mib"
for s in "${servers[@]}"; do
    case "$s" in fanout | uws | ws | fanout-embedded | uws-socket) ;; *) die "unknown server $s in BENCH_SERVERS" ;; esac
done

# Every subscriber is a file descriptor on both sides; take the hard limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
nofile=$(ulimit -n)
# glommio locks memory for its rings: at least 1 MiB per shard.
ulimit -l "$(ulimit -Hl)" 2>/dev/null || true
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
broker_pid=""
broker_dir=""
loadtest_pid=""
perf_pid=""
count_pid=""

# interrupt_pid PID: INT (perf writes its data on it), then wait.
interrupt_pid() {
    kill -INT "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# stop_pid PID: TERM, up to 10 s, then KILL.
stop_pid() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

stop_server() {
    [ -n "$server_pid" ] || return 0
    stop_pid "$server_pid"
    server_pid=""
}

stop_broker() {
    if [ -n "$broker_pid" ]; then
        stop_pid "$broker_pid"
        broker_pid=""
    fi
    if [ -n "$broker_dir" ]; then
        rm -rf "$broker_dir"
        broker_dir=""
    fi
}

# ------------------------------------------------------------ guest memory

# A VM guest with free page reporting (virtio-balloon; the kernel's
# /sys/module/page_reporting) hands pages it frees back to its host within
# seconds, and the first write to such a page once it is reused costs a
# host page fault. On the 2-core guest of BENCHMARKS.md, dd of 1 GiB into
# /dev/shm took 3.2 s into such pages against 0.69 s into pages freed a
# moment before. A server pays that for every page of socket buffer its
# writes fill, and on loopback its writes fill the receiver's queue too, so
# at saturation the faster server fills and pays more. A dedicated host has
# no such cost. "hold" raises the time a freed page must stay free before it
# is reported to the largest the kernel takes (that knob, min_free_ms, is
# not in every kernel: without it the bench only warms), and before each run
# writes warm_mib through /dev/shm, the same for every server. raw/guest.tsv
# keeps, per run, how long that write took, what the guest reported and
# the peak of TCP memory.
reporting=/sys/module/page_reporting/parameters
saved_min_free_ms=""
warm_file=/dev/shm/fanout-bench-warm.$$

guest_hold() {
    [ "$guest_pages" = hold ] && [ -w "$reporting/min_free_ms" ] || return 0
    saved_min_free_ms=$(cat "$reporting/min_free_ms")
    local ms
    for ms in 300000 60000 10000; do
        if echo "$ms" >"$reporting/min_free_ms" 2>/dev/null; then return 0; fi
    done
    saved_min_free_ms=""
}

guest_release() {
    [ -n "$saved_min_free_ms" ] || return 0
    echo "$saved_min_free_ms" >"$reporting/min_free_ms" 2>/dev/null || true
    saved_min_free_ms=""
}

guest_state() {
    if [ ! -d "$reporting" ]; then
        echo "no free page reporting"
        return
    fi
    local f out=""
    for f in "$reporting"/*; do out+="$(basename "$f")=$(cat "$f" 2>/dev/null) "; done
    echo "free page reporting: $out(mode $guest_pages)"
}

# Backs warm_mib of free pages: what a write takes, then frees. Prints the
# seconds the write took (slow when the pages it got were the host's).
guest_warm() {
    if [ "$guest_pages" != hold ] || [ "$warm_mib" = 0 ]; then
        echo "-"
        return 0
    fi
    local t0
    t0=$(date +%s.%N)
    taskset -c "$load_cpu" dd if=/dev/zero of="$warm_file" bs=1M count="$warm_mib" status=none 2>/dev/null ||
        echo "bench: could not write $warm_mib MiB to /dev/shm; runs go unwarmed" >&2
    rm -f "$warm_file"
    awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'
}

reported_kib() { cat "$reporting/reported_kib" 2>/dev/null || echo 0; }

tcp_mem_pages() { awk '$1 == "TCP:" { print $NF }' /proc/net/sockstat; }

# Peak of the kernel's TCP memory, in pages, every 0.2 s into file $1. Runs
# on the load core: nothing of the harness runs on the server's core.
tcp_mem_sampler() {
    local peak=0 m
    taskset -p -c "$load_cpu" "$BASHPID" >/dev/null
    while :; do
        m=$(tcp_mem_pages)
        if [ "$m" -gt "$peak" ]; then
            peak=$m
            echo "$peak" >"$1"
        fi
        sleep 0.2
    done
}
sampler_pid=""

cleanup() {
    if [ -n "$sampler_pid" ]; then kill "$sampler_pid" 2>/dev/null || true; fi
    rm -f "$warm_file"
    guest_release
    if [ -n "$perf_pid" ]; then interrupt_pid "$perf_pid"; fi
    if [ -n "$count_pid" ]; then interrupt_pid "$count_pid"; fi
    if [ -n "$loadtest_pid" ]; then
        kill -TERM "$loadtest_pid" 2>/dev/null || true
        wait "$loadtest_pid" 2>/dev/null || true
    fi
    stop_server
    stop_broker
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ setup

echo "bench: cargo build --release -p fanout -p loadtest"
cargo build --release -p fanout -p loadtest
scripts/peer-up.sh

date_utc=$(date -u +%Y-%m-%d)
host=$(hostname -s 2>/dev/null || hostname)
run_name=${BENCH_RUN_NAME:-$date_utc-$host}
[ "$quick" = 1 ] && run_name="$run_name-quick"
out="bench-results/$run_name"
raw="$out/raw"
if [ -e "$out" ]; then
    echo "bench: replacing $out from an earlier run today"
    rm -rf "$out"
fi
mkdir -p "$raw" "$out/plots"
guest_hold

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
    echo "kafkajs: $(cd loadtest/peer-uws && node -p 'require("kafkajs/package.json").version')"
    echo "ws: $(cd loadtest/peer-ws && node -p 'require("ws/package.json").version')"
    echo "tansu: $("$tansu" --version)"
    echo "server cpu: $server_cpu"
    echo "loadtest cpu: $load_cpu"
    echo "broker cpu: $load_cpu"
    echo "guest memory: $(guest_state)"
    echo "settings: repeat=$repeat quick=$quick duration=$duration hold=$hold drain=$drain" \
        "drain_max=$drain_max fixed_deliveries=$fixed_deliveries fixed_max_events=$fixed_max_events" \
        "sat_deliveries=$sat_deliveries sat_max_events=$sat_max_events partitions=$partitions" \
        "embedded_partitions=$embedded_partitions max_wait_ms=$max_wait_ms idle_conns=$idle_conns" \
        "servers=${servers[*]} extra_only=$extra_only perf=$perf_on count=$count_on only=${only:-all}"
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
printf 'run\twarm_s\treported_to_host_mib\ttcp_mem_peak_mib\n' >"$raw/guest.tsv"
[ "$count_on" = 1 ] && printf 'run\tcontext_switches\tsocket_writes\n' >"$raw/counts.tsv"

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

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts a fresh tansu for run $1 on the load core, with the benchmark topic;
# sets broker_pid and broker_addr. tansu reads .env from its working
# directory: it runs from an empty one.
start_broker() {
    local run=$1 port url
    for _ in 1 2 3; do
        port=$(free_port)
        url="tcp://127.0.0.1:$port"
        broker_dir=$(mktemp -d)
        echo "$run broker: taskset -c $load_cpu tansu broker --listener-url $url" \
            "--advertised-listener-url $url --storage-engine memory://tansu/" >>"$raw/commands.txt"
        (cd "$broker_dir" && exec env -u CLUSTER_ID -u LISTENER_URL -u ADVERTISED_LISTENER_URL \
            -u STORAGE_ENGINE NO_COLOR=1 taskset -c "$load_cpu" "$tansu" broker --listener-url "$url" \
            --advertised-listener-url "$url" --storage-engine memory://tansu/) \
            >"$raw/$run.broker.log" 2>&1 &
        broker_pid=$!
        for _ in $(seq 100); do
            if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
                echo "$run topic: tansu topic create $topic --partitions $partitions" >>"$raw/commands.txt"
                if (cd "$broker_dir" && NO_COLOR=1 "$tansu" topic create "$topic" --broker "$url" \
                    --partitions "$partitions") >>"$raw/$run.broker.log" 2>&1; then
                    broker_addr="127.0.0.1:$port"
                    return 0
                fi
                break
            fi
            kill -0 "$broker_pid" 2>/dev/null || break
            sleep 0.1
        done
        # Most likely lost the port to another process: try a fresh one.
        stop_broker
    done
    echo "bench: tansu did not start or create $topic; see $raw/$run.broker.log" >&2
    tail -5 "$raw/$run.broker.log" >&2 || true
    return 1
}

# Starts the server of kind $1 for run $2 (after the broker, if it uses one);
# sets server_pid, server_addr and, for the embedded broker, broker_addr.
start_server() {
    local kind=$1 run=$2 cmd pattern ready_code=""
    local tansu_opts=(--kafka-brokers "$broker_addr")
    case "$kind" in
        fanout)
            cmd=(taskset -c "$server_cpu" target/release/fanout "${tansu_opts[@]}"
                --topics "$topic" --kafka-opt "fetch.wait.max.ms=$max_wait_ms" --listen 127.0.0.1 --port 0
                --shards 1 --ingest-core "$server_cpu" --no-pin "${fanout_args[@]}")
            pattern='fanout' ;;
        fanout-embedded)
            cmd=(taskset -c "$server_cpu" target/release/fanout --kafka-brokers embedded
                --topics "$topic" --embedded-partitions "$embedded_partitions" --listen 127.0.0.1 --port 0
                --shards 1 --ingest-core "$server_cpu" --no-pin "${fanout_args[@]}")
            pattern='fanout' ;;
        uws)
            cmd=(taskset -c "$server_cpu" node loadtest/peer-uws/server.js --host 127.0.0.1 --port 0
                "${tansu_opts[@]}" --topics "$topic" --max-wait-ms "$max_wait_ms")
            pattern='peer-uws' ;;
        uws-socket)
            cmd=(taskset -c "$server_cpu" node loadtest/peer-uws/server.js --host 127.0.0.1 --port 0)
            pattern='peer-uws' ;;
        ws)
            cmd=(taskset -c "$server_cpu" node loadtest/peer-ws/server.js --host 127.0.0.1 --port 0
                "${tansu_opts[@]}" --topics "$topic" --max-wait-ms "$max_wait_ms")
            pattern='peer-ws' ;;
    esac
    echo "$run server: ${cmd[*]}" >>"$raw/commands.txt"
    : >"$raw/$run.server.out"
    NO_COLOR=1 "${cmd[@]}" >"$raw/$run.server.out" 2>"$raw/$run.server.log" &
    server_pid=$!
    server_addr=""
    for _ in $(seq 600); do
        if [ -z "$server_addr" ]; then
            server_addr=$(sed -n "s/^$pattern listening on //p" "$raw/$run.server.out")
        fi
        if [ "$kind" = fanout-embedded ]; then
            broker_addr=$(sed -n 's/^embedded Kafka broker: produce to //p' "$raw/$run.server.out")
        fi
        # Ready: the consumer can read everything produced from now on.
        if [ -n "$server_addr" ]; then
            ready_code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$server_addr/readyz" || true)
            if [ "$ready_code" = 200 ] && [ -n "$broker_addr" ]; then
                return 0
            fi
        fi
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "bench: $kind did not become ready (listening on '${server_addr}', /readyz ${ready_code:-no answer});" \
        "see $raw/$run.server.log" >&2
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
    broker_addr=""
    local started=0
    case "$kind" in
        fanout | uws | ws) start_broker "$run" && start_server "$kind" "$run" && started=1 ;;
        uws-socket) broker_addr=none; start_server "$kind" "$run" && started=1 ;;
        fanout-embedded) start_server "$kind" "$run" && started=1 ;;
    esac
    if [ "$started" != 1 ]; then
        stop_server
        stop_broker
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\t\t\t\t\n' "$run" "$scenario" "$kind" "$rep" \
            "$mode" "$n" "$k" "$rate" "$events" 2 >>"$raw/runs.tsv"
        failures=$((failures + 1))
        return 0
    fi
    target=()
    if [ "$mode" != idle ]; then
        case "$kind" in
            uws-socket) target=(--publish-url "ws://$server_addr/publish") ;;
            *) target=(--kafka-brokers "$broker_addr") ;;
        esac
    fi
    local watch=(--server-pid "$server_pid")
    [ -n "$broker_pid" ] && watch+=(--broker-pid "$broker_pid")
    lt=(taskset -c "$load_cpu" target/release/loadtest --server "$server_addr" "${target[@]}" --topic "$topic"
        "${watch[@]}" -n "$n" -k "$k" "${args[@]}"
        --drain "$drain" --drain-max "$drain_max" --label "$kind" --out "$raw/$run.json")
    echo "$run loadtest: ${lt[*]}" >>"$raw/commands.txt"
    local timer=()
    [ -n "$time_bin" ] && timer=("$time_bin" -f '%e %U %S' -o "$raw/$run.time")
    local srv0 brk0 cores0 t0 t1 reported0 warm_s
    warm_s=$(guest_warm)
    reported0=$(reported_kib)
    rm -f "$raw/$run.tcpmem"
    tcp_mem_sampler "$raw/$run.tcpmem" &
    sampler_pid=$!
    srv0=$(proc_ticks "$server_pid")
    # fanout's embedded broker is librdkafka's mock cluster, one thread named
    # rdk:mock in fanout's process; tansu is a process of its own.
    if [ "$kind" = fanout-embedded ]; then
        brk0=$(thread_ticks "$server_pid" rdk:mock)
    elif [ -n "$broker_pid" ]; then
        brk0=$(proc_ticks "$broker_pid")
    fi
    cores0=$(cores_ticks)
    if [ "$perf_on" = 1 ] && [ "$mode" != idle ]; then
        perf record -q -e cpu-clock -F 999 -g -p "$server_pid" -o "$raw/$run.perf.data" \
            >"$raw/$run.perf.log" 2>&1 &
        perf_pid=$!
    fi
    if [ "$count_on" = 1 ] && [ "$mode" != idle ]; then
        perf stat -x, -o "$raw/$run.count.txt" -p "$server_pid" -e "$count_events" \
            >/dev/null 2>&1 &
        count_pid=$!
    fi
    t0=$(date +%s.%N)
    timeout -k 10 "$run_timeout" "${timer[@]}" "${lt[@]}" >"$raw/$run.row.md" 2>"$raw/$run.loadtest.log" &
    loadtest_pid=$!
    wait "$loadtest_pid" || rc=$?
    loadtest_pid=""
    t1=$(date +%s.%N)
    local srv1 brk1="" cores1 lt_cpu="" broker_cpu=""
    srv1=$(proc_ticks "$server_pid")
    if [ "$kind" = fanout-embedded ]; then
        brk1=$(thread_ticks "$server_pid" rdk:mock)
    elif [ -n "$broker_pid" ]; then
        brk1=$(proc_ticks "$broker_pid")
    fi
    cores1=$(cores_ticks)
    if [ -n "$count_pid" ]; then
        interrupt_pid "$count_pid"
        count_pid=""
        count_row "$run"
    fi
    kill "$sampler_pid" 2>/dev/null || true
    wait "$sampler_pid" 2>/dev/null || true
    sampler_pid=""
    printf '%s\t%s\t%s\t%s\n' "$run" "$warm_s" "$((($(reported_kib) - reported0) / 1024))" \
        "$(($(cat "$raw/$run.tcpmem" 2>/dev/null || echo 0) * $(getconf PAGESIZE) / 1048576))" \
        >>"$raw/guest.tsv"
    rm -f "$raw/$run.tcpmem"
    if [ -n "$perf_pid" ]; then
        interrupt_pid "$perf_pid"
        perf_pid=""
        perf_summary "$run"
    fi
    if [ -s "$raw/$run.time" ]; then
        lt_cpu=$(tail -1 "$raw/$run.time" | awk '{ printf "%.2f", $2 + $3 }')
    fi
    if [ -n "$brk1" ]; then
        broker_cpu=$(awk -v t=$((brk1 - brk0)) -v h="$clk_tck" 'BEGIN { printf "%.2f", t / h }')
    fi
    # fanout's own view (Kafka poll -> socket write, inbox waits): places
    # a slow run's time on the broker's side of ingest or on fanout's.
    case "$kind" in
        fanout | fanout-embedded)
            curl -s --max-time 5 "http://$server_addr/metrics" >"$raw/$run.metrics.txt" || true ;;
    esac
    stop_server
    stop_broker
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

count_events=context-switches,syscalls:sys_enter_sendto,syscalls:sys_enter_sendmsg
count_events+=,syscalls:sys_enter_write,syscalls:sys_enter_writev

# One line of raw/counts.tsv from perf stat's CSV: context switches, then
# the socket-write calls summed.
count_row() {
    local run=$1
    awk -F, -v run="$run" '
        $3 == "context-switches" { cs = $1 }
        $3 ~ /^syscalls:sys_enter_/ { writes += $1 }
        END { printf "%s\t%s\t%s\n", run, cs, writes }' "$raw/$run.count.txt" >>"$raw/counts.tsv"
}

# Top of a run's profile: self time by shared object (the kernel's share of
# the samples is the [kernel.kallsyms] line), by thread, and by thread and
# symbol.
perf_summary() {
    local run=$1 data="$raw/$1.perf.data"
    [ -s "$data" ] || { echo "bench: $run: perf recorded nothing; see $raw/$run.perf.log" >&2; return 0; }
    {
        echo "# perf record -e cpu-clock -F 999 -g -p <server pid> over the loadtest run"
        # awk, not head: under pipefail a closed pipe would fail the script.
        perf report -i "$data" --stdio --no-children --sort dso -g none 2>/dev/null | awk 'NF && n++ < 20'
        echo
        perf report -i "$data" --stdio --no-children --sort comm -g none 2>/dev/null | awk 'NF && n++ < 20'
        echo
        perf report -i "$data" --stdio --no-children --sort comm,sym -g none --percent-limit 0.5 \
            2>/dev/null | awk 'NF && n++ < 60'
    } >"$raw/$run.perf.txt" || echo "bench: $run: perf report failed; see $data" >&2
    # perf.data is large and only useful with this machine's binaries.
    rm -f "$data"
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
    # Rotate who goes first, so a slow drift in machine load hits all.
    shift_by=$(((rep - 1) % ${#servers[@]}))
    order=("${servers[@]:$shift_by}" "${servers[@]:0:$shift_by}")
    for s in "${scenarios[@]}"; do
        read -r name mode n k <<<"$s"
        if [ -n "$only" ] && ! [[ $name =~ $only ]]; then continue; fi
        kinds=("${order[@]}")
        if [ "$extra_only" != none ] && [[ $name =~ $extra_only ]]; then
            kinds+=(fanout-embedded uws-socket)
        fi
        for kind in "${kinds[@]}"; do
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
