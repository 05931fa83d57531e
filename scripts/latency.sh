#!/usr/bin/env bash
# Usage: scripts/latency.sh [-n SUBSCRIBERS] [-d DURATION] [-D DELIVERIES_PER_SEC] [-r MAX_EVENTS_PER_SEC]
#                           [-w FETCH_WAIT_MS] [-p PARTITIONS]
#
# fanout's latency through a separate Kafka-protocol broker (tansu, from
# scripts/deps-up.sh) at 1, 100 and 1000 recipients per event (N = 1000
# subscribers over K = 1000, 10 and 1 keys), at a fixed rate of
# DELIVERIES_PER_SEC ÷ recipients events/s (at most MAX_EVENTS_PER_SEC):
#   end to end       loadtest's send -> the subscriber's receipt (producer,
#                    broker, fetch wait, engine, client), exact audit
#   engine-internal  Kafka poll -> socket write of the event's last
#                    recipient, fanout_delivery_latency_quantile_seconds
#                    from fanout's /metrics
# next to the CPU cost of one loopback sendmsg of a small frame measured on
# this machine (loadtest's example sendmsg_cost, writer on fanout's core):
# the floor under the engine-internal figure is recipients x that.
#
# Each point gets a fresh tansu (core 0) and topic, a fresh fanout (core 1,
# --shards 1 --no-pin; /metrics quantiles cover its whole life), a wait on
# /readyz, then loadtest (core 0). Loopback only; everything started is
# stopped on exit; any failing step (build, broker, readiness, a run that
# fails the audit, a missing metric) fails the script.
#
#   scripts/latency.sh               # 1000 subscribers, 20 000 deliveries/s, 1000 events/s max, 10 s
#   scripts/latency.sh -w 1          # fanout polling tansu every 1 ms
set -euo pipefail
cd "$(dirname "$0")/.."

subscribers=1000 duration=10s deliveries=20000 max_rate=1000 fetch_wait_ms=10 partitions=3
while getopts "n:d:D:r:w:p:h" opt; do
    case "$opt" in
        n) subscribers=$OPTARG ;;
        d) duration=$OPTARG ;;
        D) deliveries=$OPTARG ;;
        r) max_rate=$OPTARG ;;
        w) fetch_wait_ms=$OPTARG ;;
        p) partitions=$OPTARG ;;
        *) sed -n '2,26p' "$0"; exit 2 ;;
    esac
done

die() { echo "latency: $*" >&2; exit 1; }
for tool in taskset curl python3 cargo; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
tansu=${FANOUT_TANSU:-$HOME/.cache/fanout/tansu/bin/tansu}
[ -x "$tansu" ] || die "no tansu at $tansu (run scripts/deps-up.sh)"
# glommio locks memory for its rings: at least 1 MiB per shard.
ulimit -l "$(ulimit -Hl)" 2>/dev/null || true
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "latency: cargo build --release -p fanout -p loadtest --example sendmsg_cost" >&2
cargo build --release -q -p fanout -p loadtest
cargo build --release -q -p loadtest --example sendmsg_cost

work=$(mktemp -d)
broker_pid="" fanout_pid=""
stop() {
    local pid=$1
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    stop "$fanout_pid"
    stop "$broker_pid"
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Fresh tansu on core 0 with topic booking.created; sets broker_port.
start_broker() {
    local dir=$1
    mkdir -p "$dir"
    broker_port=$(free_port)
    local url="tcp://127.0.0.1:$broker_port"
    # tansu reads .env from its working directory: start it from an empty one.
    (cd "$dir" && exec env -u CLUSTER_ID -u LISTENER_URL -u ADVERTISED_LISTENER_URL -u STORAGE_ENGINE \
        taskset -c 0 "$tansu" broker --listener-url "$url" --advertised-listener-url "$url" \
        --storage-engine memory://tansu/ >"$dir/tansu.log" 2>&1) &
    broker_pid=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$broker_port") 2>/dev/null && break
        kill -0 "$broker_pid" 2>/dev/null || die "tansu exited; see its log: $(tail -3 "$dir/tansu.log")"
        sleep 0.1
    done
    (cd "$dir" && "$tansu" topic create booking.created --broker "$url" --partitions "$partitions" \
        >>"$dir/tansu.log" 2>&1) || die "tansu topic create failed: $(tail -3 "$dir/tansu.log")"
}

# fanout on core 1 against the broker; waits until /readyz answers 200.
start_fanout() {
    local dir=$1
    fanout_port=$(free_port)
    taskset -c 1 target/release/fanout --kafka-brokers "127.0.0.1:$broker_port" --topics booking.created \
        --kafka-opt "fetch.wait.max.ms=$fetch_wait_ms" --no-pin --shards 1 --ingest-core 1 \
        --listen 127.0.0.1 --port "$fanout_port" >"$dir/fanout.out" 2>"$dir/fanout.log" &
    fanout_pid=$!
    local code=""
    for _ in $(seq 300); do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$fanout_port/readyz" || true)
        [ "$code" = 200 ] && return 0
        kill -0 "$fanout_pid" 2>/dev/null || die "fanout exited; see its log: $(tail -3 "$dir/fanout.log")"
        sleep 0.1
    done
    die "fanout not ready after 30 s (/readyz ${code:-no answer}); log: $(tail -3 "$dir/fanout.log")"
}

# One point: recipients per event R (K = N / R keys).
run_point() {
    local recipients=$1 keys=$((subscribers / recipients)) dir="$work/r$1"
    local rate=$((deliveries / recipients))
    [ "$rate" -le "$max_rate" ] || rate=$max_rate
    [ "$rate" -ge 1 ] || rate=1
    start_broker "$dir"
    start_fanout "$dir"
    local rc=0
    taskset -c 0 target/release/loadtest --server "127.0.0.1:$fanout_port" -n "$subscribers" -k "$keys" \
        --kafka-brokers "127.0.0.1:$broker_port" --rate "$rate" --duration "$duration" \
        --server-pid "$fanout_pid" --broker-pid "$broker_pid" --out "$dir/loadtest.json" \
        >"$dir/loadtest.row" 2>"$dir/loadtest.log" || rc=$?
    if [ "$rc" != 0 ]; then
        echo "latency: loadtest failed (exit $rc) at $recipients recipients/event:" >&2
        grep -E '^(deliver|audit|loadtest):' "$dir/loadtest.log" >&2 || tail -5 "$dir/loadtest.log" >&2
        exit 1
    fi
    curl -sf "127.0.0.1:$fanout_port/metrics" >"$dir/metrics.txt" || die "scraping /metrics failed"
    stop "$fanout_pid"; fanout_pid=""
    stop "$broker_pid"; broker_pid=""
    python3 - "$recipients" "$rate" "$dir/loadtest.json" "$dir/metrics.txt" <<'EOF'
import json, re, sys
recipients, rate, report, metrics = sys.argv[1:]
with open(report) as f:
    r = json.load(f)
lat = r["delivery"]["latency"]
engine = {}
with open(metrics) as f:
    for line in f:
        m = re.match(r'fanout_delivery_latency_quantile_seconds\{quantile="([0-9.]+)"\} (\S+)', line)
        if m:
            engine[m.group(1)] = float(m.group(2)) * 1e6
if set(engine) != {"0.5", "0.99", "0.999"}:
    sys.exit(f"latency: fanout_delivery_latency_quantile_seconds missing from /metrics (got {sorted(engine)})")
def us(v):
    return f"{v / 1e3:.2f} ms" if v >= 1e3 else f"{v:.0f} µs"
cells = [recipients, rate, f"{r['delivery']['deliveries_per_sec']:.0f}",
         us(lat["p50_us"]), us(lat["p99_us"]), us(lat["p999_us"]),
         us(engine["0.5"]), us(engine["0.99"]), us(engine["0.999"]),
         "exact" if r["audit"]["passed"] else "FAIL"]
print("| " + " | ".join(str(c) for c in cells) + " |")
EOF
}

echo "latency: fanout through tansu ($partitions partitions), fetch.wait.max.ms $fetch_wait_ms;" \
    "fanout on core 1, tansu and loadtest on core 0; $subscribers subscribers, $duration per point"
echo
echo "| recipients/event | events/s | deliveries/s | end-to-end p50 | p99 | p99.9 | engine p50 | p99 | p99.9 | audit |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
for recipients in 1 100 1000; do
    [ "$recipients" -le "$subscribers" ] || die "-n $subscribers is below $recipients recipients"
    run_point "$recipients"
done
echo
taskset -c 1 target/release/examples/sendmsg_cost --writer-cpu 1 --reader-cpu 0 >"$work/sendmsg.txt" \
    || die "sendmsg_cost failed: $(tail -3 "$work/sendmsg.txt")"
sed -n '2,$p' "$work/sendmsg.txt" | grep -v '^sendmsg_cpu_ns_per_call=' | sed 's/^ */sendmsg: /'
ns=$(sed -n 's/^sendmsg_cpu_ns_per_call=//p' "$work/sendmsg.txt")
[ -n "$ns" ] || die "sendmsg_cost printed no sendmsg_cpu_ns_per_call"
awk -v ns="$ns" 'BEGIN {
    printf "floor, one sendmsg per recipient at %.1f µs: 1 -> %.1f µs, 100 -> %.2f ms, 1000 -> %.1f ms\n",
        ns / 1e3, ns / 1e3, 100 * ns / 1e6, 1000 * ns / 1e6 }'
