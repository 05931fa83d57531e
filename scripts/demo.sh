#!/usr/bin/env bash
# Usage: scripts/demo.sh [PAGE_PORT [ENGINE_PORT]]
#
# The live demo, in one command: builds fanout (debug), starts it on the
# embedded Kafka broker at 127.0.0.1:ENGINE_PORT (default 3009) with
# --allowed-origins set to the page's origin, starts a throwaway
# redis-server holding one admin session (when redis-server is installed),
# and serves the demo page from its own origin, http://127.0.0.1:PAGE_PORT
# (default 8080), where a booking desk books or cancels a slot every second.
# Prints the URL to open; Ctrl-C stops everything. Loopback only.
#
#   scripts/demo.sh              # then open http://127.0.0.1:8080/
#   scripts/demo.sh 8081 3010    # other ports
#
# Needs the Rust toolchain, Node >= 20 (client/node_modules is installed
# with `npm ci` on first use) and, for the admin view, redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."

page_port=${1:-8080}
engine_port=${2:-3009}
page_origin="http://127.0.0.1:$page_port"
admin_session="demo-admin"

work=$(mktemp -d -t fanout-demo.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
for port in "$page_port" "$engine_port"; do
    if port_in_use "$port"; then
        echo "demo: port $port on 127.0.0.1 is taken; pass other ports: scripts/demo.sh PAGE_PORT ENGINE_PORT" >&2
        exit 1
    fi
done

if [ ! -d client/node_modules ]; then
    echo "demo: npm ci in client/"
    (cd client && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "demo: cargo build -p fanout"
cargo build -q -p fanout
fanout_bin=${CARGO_TARGET_DIR:-target}/debug/fanout

# glommio locks memory for io_uring: 512 KiB per shard at least.
ulimit -l unlimited 2>/dev/null || ulimit -S -l "$(ulimit -H -l)" 2>/dev/null || true

redis_args=()
session_args=()
if command -v redis-server >/dev/null 2>&1; then
    redis_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
        >"$work/redis.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 50); do
        redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    redis-cli -p "$redis_port" SET "session:$admin_session" '{"user_id":"demo","role":"admin"}' >/dev/null
    redis_args=(--redis-url "redis://127.0.0.1:$redis_port")
    session_args=(--session "$admin_session")
else
    echo "demo: redis-server not installed (scripts/deps-up.sh installs it): no admin view"
fi

"$fanout_bin" --kafka-brokers embedded --no-pin --shards 1 --listen 127.0.0.1 --port "$engine_port" \
    --allowed-origins "$page_origin" "${redis_args[@]}" >"$work/fanout.log" 2>&1 &
pids+=($!)
bootstrap=""
for _ in $(seq 100); do
    bootstrap=$(sed -n 's/.*produce to \([0-9.:]*\).*/\1/p' "$work/fanout.log" | head -n1)
    [ -n "$bootstrap" ] && break
    if ! kill -0 "${pids[-1]}" 2>/dev/null; then
        echo "demo: fanout exited:" >&2
        cat "$work/fanout.log" >&2
        exit 1
    fi
    sleep 0.1
done
if [ -z "$bootstrap" ]; then
    echo "demo: fanout printed no broker address:" >&2
    cat "$work/fanout.log" >&2
    exit 1
fi

node client/demo/server.js --port "$page_port" --engine "ws://127.0.0.1:$engine_port" \
    --kafka "$bootstrap" "${session_args[@]}" &
pids+=($!)

echo
echo "demo: fanout on ws://127.0.0.1:$engine_port (Kafka at $bootstrap; log: $work/fanout.log)"
echo "demo: open $page_origin/"
if [ ${#session_args[@]} -gt 0 ]; then
    echo "demo: admin view: $page_origin/login (sets session_id=$admin_session)"
fi
echo "demo: Ctrl-C to stop"
echo
wait -n "${pids[@]}"
echo "demo: a process stopped; shutting down" >&2
