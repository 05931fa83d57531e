#!/usr/bin/env bash
# Usage: scripts/test.sh [extra cargo test args...]
#
# The project's test command: installs the test dependencies
# (scripts/deps-up.sh: redis-server, the tansu broker, Chromium, the JS
# client's node_modules), raises the limits the engine needs, then runs
# `cargo test --workspace --all-targets "$@"`, then scripts/autobahn.sh
# (RFC 6455 conformance, Autobahn's fuzzingclient against fanout-echo), then
# the JS client's suites against the debug build of fanout: `npm test`
# (node --test, client/) and `npm run test:browser` (the demo page in
# headless Chromium). The tests
# start their own fanout, redis-server and tansu processes on free loopback
# ports and stop them. Exits non-zero if any step fails.
#
# With arguments, only cargo runs (they are cargo's); FANOUT_SKIP_JS=1 skips
# the JS suites (not Autobahn). The JS suites alone: `cd client && npm test`.
#
#   scripts/test.sh                      # everything
#   scripts/test.sh --test fanout        # one integration test file, no JS
#   scripts/test.sh -- --nocapture       # args after -- go to the test binaries
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps-up.sh

# glommio registers io_uring buffers in locked memory: at least 512 KiB per
# executor, and tests start several engines (each with several shards) at
# once. Raising the hard limit needs CAP_SYS_RESOURCE; without it we settle
# for the hard limit and say so.
want_lock_kib=$((512 * 1024))
if ! ulimit -l unlimited 2>/dev/null; then
    ulimit -S -l "$(ulimit -H -l)" 2>/dev/null || true
fi
lock_kib=$(ulimit -l)
if [ "$lock_kib" != unlimited ] && [ "$lock_kib" -lt "$want_lock_kib" ]; then
    echo "test.sh: warning: ulimit -l is $lock_kib KiB and cannot be raised here" \
        "(want unlimited or >= $want_lock_kib KiB); that is room for about" \
        "$((lock_kib / 512)) glommio executors at once" >&2
fi

# Load and fan-out tests hold many sockets open at once.
want_files=65536
files=$(ulimit -S -n)
if [ "$files" != unlimited ] && [ "$files" -lt "$want_files" ]; then
    hard_files=$(ulimit -H -n)
    if [ "$hard_files" != unlimited ] && [ "$hard_files" -lt "$want_files" ]; then
        ulimit -H -n "$want_files" 2>/dev/null || true
        hard_files=$(ulimit -H -n)
    fi
    if [ "$hard_files" = unlimited ] || [ "$hard_files" -ge "$want_files" ]; then
        ulimit -S -n "$want_files"
    else
        ulimit -S -n "$hard_files"
        echo "test.sh: warning: ulimit -n is $hard_files and cannot be raised" \
            "to $want_files here" >&2
    fi
fi

echo "test.sh: ulimit -l $(ulimit -l) KiB, ulimit -n $(ulimit -n)"
cargo test --workspace --all-targets "$@"

# RFC 6455 conformance: Autobahn's fuzzingclient against fanout-echo (about
# 30 s plus a build). Full runs only: extra args pick some tests.
if [ "$#" -eq 0 ]; then
    scripts/autobahn.sh
fi

if [ $# -gt 0 ] || [ "${FANOUT_SKIP_JS:-}" = 1 ]; then
    echo "test.sh: JS client suites skipped (arguments given or FANOUT_SKIP_JS=1)"
    exit 0
fi

# The JS tests spawn target/debug/fanout; cargo test built it for the
# integration tests, this only makes sure.
cargo build -p fanout
js_suite() {
    local start
    start=$(date +%s)
    (cd client && npm run --silent "$1")
    echo "test.sh: client npm run $1: ok in $(( $(date +%s) - start )) s"
}
js_suite test
js_suite test:browser
