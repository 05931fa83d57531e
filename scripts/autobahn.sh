#!/usr/bin/env bash
# Usage: scripts/autobahn.sh [--doc]
#
# RFC 6455 conformance: runs the Autobahn|Testsuite fuzzingclient, cases 1.*
# to 10.* (12.* and 13.* are compression, which fanout does not negotiate),
# against fanout-echo (the engine's own upgrade, frame and connection code
# with an echo handler; built with --features conformance) on a free
# loopback port. Fails unless every case is OK, NON-STRICT or INFORMATIONAL
# (scripts/autobahn_summary.py decides). About 25 s on 2 shared cores plus
# the build (debug: the 16 MiB cases of 9.* take under a second each).
#
# The fuzzingclient is kosoku (a Python 3 wheel that runs Autobahn's own case
# files), installed once into a venv under $HOME/.cache/fanout/kosoku; Python
# 3 with venv comes from scripts/deps-up.sh. The report goes to
# target/autobahn/ (index.html per case).
#
#   scripts/autobahn.sh          # run, check
#   scripts/autobahn.sh --doc    # ... and rewrite docs/autobahn.md from the run
set -euo pipefail
cd "$(dirname "$0")/.."

KOSOKU_VERSION="0.1.0"
KOSOKU_VENV="$HOME/.cache/fanout/kosoku"
KOSOKU="$KOSOKU_VENV/bin/kosoku"
REPORT_DIR="target/autobahn"

if [ "${1:-}" != "" ] && [ "$1" != --doc ]; then
    sed -n '2,18p' "$0" >&2
    exit 2
fi

start=$(date +%s)

# kosoku, pinned, in its own venv (never the system Python's site-packages).
kosoku_version() {
    "$KOSOKU_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("kosoku"))' 2>/dev/null || true
}
if [ "$(kosoku_version)" != "$KOSOKU_VERSION" ]; then
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        echo "autobahn: python3 with venv is missing; run scripts/deps-up.sh" >&2
        exit 1
    fi
    echo "autobahn: installing kosoku $KOSOKU_VERSION into $KOSOKU_VENV"
    rm -rf "$KOSOKU_VENV"
    python3 -m venv "$KOSOKU_VENV"
    "$KOSOKU_VENV/bin/pip" install --quiet --disable-pip-version-check "kosoku==$KOSOKU_VERSION"
fi

cargo build --quiet --features conformance --bin fanout-echo
echo_bin="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/debug/fanout-echo"

# glommio locks memory for io_uring: 1 MiB for the echo server's one shard.
ulimit -S -l "$(ulimit -H -l)" 2>/dev/null || true

log=$(mktemp)
echo_pid=""
cleanup() {
    if [ -n "$echo_pid" ]; then
        kill "$echo_pid" 2>/dev/null || true
        wait "$echo_pid" 2>/dev/null || true
    fi
    rm -f "$log"
}
trap cleanup EXIT

# Port 0: the server binds a free loopback port and prints it.
RUST_LOG=warn "$echo_bin" --listen 127.0.0.1 --port 0 >"$log" 2>&1 &
echo_pid=$!
addr=""
for _ in $(seq 200); do
    addr=$(sed -n 's/^fanout-echo listening on //p' "$log")
    [ -n "$addr" ] && break
    if ! kill -0 "$echo_pid" 2>/dev/null; then
        break
    fi
    sleep 0.05
done
if [ -z "$addr" ]; then
    echo "autobahn: fanout-echo did not start:" >&2
    cat "$log" >&2
    exit 1
fi

rm -rf "$REPORT_DIR"
echo "autobahn: kosoku fuzzingclient, cases 1.* to 10.*, against fanout-echo on $addr"
# kosoku's own exit status is not the verdict: autobahn_summary.py reads
# every case and also accepts NON-STRICT and INFORMATIONAL.
"$KOSOKU" -m fuzzingclient -x '12.*' -x '13.*' -o "$REPORT_DIR" "ws://$addr/ws/availability" \
    >"$REPORT_DIR.log" 2>&1 || true
if [ ! -f "$REPORT_DIR/index.json" ]; then
    echo "autobahn: kosoku wrote no report:" >&2
    tail -20 "$REPORT_DIR.log" >&2
    exit 1
fi
if ! kill -0 "$echo_pid" 2>/dev/null; then
    echo "autobahn: fanout-echo died during the run:" >&2
    tail -20 "$log" >&2
    exit 1
fi

doc=()
if [ "${1:-}" = --doc ]; then
    doc=(--doc docs/autobahn.md)
fi
python3 scripts/autobahn_summary.py "$REPORT_DIR" "${doc[@]}"
echo "autobahn: ok in $(( $(date +%s) - start )) s (report: $REPORT_DIR/index.html)"
