#!/usr/bin/env bash
# Usage: scripts/hardening.sh [FANOUT_BINARY] [ATTACK...]
#
# Runs the attacks of scripts/attack.py against fanout with default flags
# (embedded broker, one shard on loopback), a fresh process per attack so
# each starts from the same memory, and prints one line per attack: what the
# server did, its peak RSS growth and CPU time. These are the figures of the
# README's "Hardening" table.
#
#   cargo build --release && scripts/hardening.sh     # target/release/fanout, every attack
#   scripts/hardening.sh /tmp/old-fanout ping-flood   # another build, one attack
set -euo pipefail
cd "$(dirname "$0")/.."

binary=${1:-target/release/fanout}
shift || true
attacks=("$@")
if [ ${#attacks[@]} -eq 0 ]; then
    attacks=(ping-flood filter-cpu filter-memory echo-memory byte-frame slowloris close-storm)
fi
[ -x "$binary" ] || { echo "hardening.sh: no executable $binary (cargo build --release)" >&2; exit 1; }

# glommio's locked memory, and sockets for the close storm.
ulimit -l "$(ulimit -H -l)" 2>/dev/null || true
ulimit -n "$(ulimit -H -n)" 2>/dev/null || true

log=$(mktemp)
pid=
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -f "$log"
}
trap cleanup EXIT

for attack in "${attacks[@]}"; do
    "$binary" --kafka-brokers embedded --listen 127.0.0.1 --port 0 --shards 1 --no-pin >"$log" 2>/dev/null &
    pid=$!
    addr=
    for _ in $(seq 100); do
        addr=$(sed -n 's/^fanout listening on //p' "$log")
        [ -n "$addr" ] && break
        sleep 0.1
    done
    [ -n "$addr" ] || { echo "hardening.sh: fanout did not start" >&2; exit 1; }
    python3 scripts/attack.py "$addr" "$pid" "$attack"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
done
