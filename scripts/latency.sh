#!/usr/bin/env bash
# Usage: scripts/latency.sh [-n SUBSCRIBERS] [-k KEYS] [-r EVENTS_PER_SEC] [-d DURATION]
#
# Measures fanout's latency through a separate Kafka-protocol broker (tansu,
# from scripts/deps-up.sh): end to end (loadtest's send -> subscriber
# receipt) and engine-internal (Kafka poll -> socket write, from fanout's
# /metrics). fanout runs on core 1; tansu and loadtest share core 0.
# Loopback only; everything started is stopped on exit.
#
#   scripts/latency.sh                 # 1000 subscribers, 1000 keys, 2000 events/s, 5 s
#   scripts/latency.sh -k 10           # 100 recipients per event
set -euo pipefail
cd "$(dirname "$0")/.."

subscribers=1000 keys=1000 rate=2000 duration=5s
while getopts "n:k:r:d:h" opt; do
    case "$opt" in
        n) subscribers=$OPTARG ;;
        k) keys=$OPTARG ;;
        r) rate=$OPTARG ;;
        d) duration=$OPTARG ;;
        *) sed -n '2,12p' "$0"; exit 2 ;;
    esac
done

tansu=${FANOUT_TANSU:-$HOME/.cache/fanout/tansu/bin/tansu}
[ -x "$tansu" ] || { echo "latency: no tansu at $tansu (run scripts/deps-up.sh)" >&2; exit 2; }
cargo build --release -q -p fanout -p loadtest

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
broker_port=$(free_port)
fanout_port=$(free_port)

# tansu reads .env from its working directory: start it from an empty one.
(cd "$work" && exec taskset -c 0 "$tansu" broker --listener-url "tcp://127.0.0.1:$broker_port" \
    --advertised-listener-url "tcp://127.0.0.1:$broker_port" --storage-engine memory://tansu/ \
    > "$work/tansu.log" 2>&1) &
pids+=($!)
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$broker_port") 2>/dev/null && break
    sleep 0.1
done
(cd "$work" && "$tansu" topic create booking.created --broker "tcp://127.0.0.1:$broker_port" --partitions 3 > /dev/null)

# tansu, like the mock broker, sits out fetch.wait.max.ms: poll every 1 ms.
taskset -c 1 target/release/fanout --kafka-brokers "127.0.0.1:$broker_port" --topics booking.created \
    --kafka-opt fetch.wait.max.ms=1 --no-pin --shards 1 --listen 127.0.0.1 --port "$fanout_port" \
    > "$work/fanout.out" 2> "$work/fanout.err" &
fanout_pid=$!
pids+=($fanout_pid)

echo "latency: $subscribers subscribers, $keys keys, $rate events/s for $duration (fanout on core 1)"
taskset -c 0 target/release/loadtest --server "127.0.0.1:$fanout_port" -n "$subscribers" -k "$keys" \
    --kafka-brokers "127.0.0.1:$broker_port" --rate "$rate" --duration "$duration" --server-pid "$fanout_pid" \
    2>&1 | grep -E '^(deliver|audit|server|client):'
echo "engine-internal (Kafka poll -> socket write of the last recipient, per event):"
curl -s "127.0.0.1:$fanout_port/metrics" | grep '^fanout_delivery_latency_quantile_seconds'
