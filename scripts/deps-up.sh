#!/usr/bin/env bash
# Usage: scripts/deps-up.sh
#
# Installs what the tests and benches need besides the Rust toolchain, on a
# fresh Debian machine (run as root, or with sudo on PATH). Idempotent: each
# piece is skipped when it is already there, so scripts/test.sh and .ci/run
# call it every time.
#
#   redis-server, redis-tools  Debian packages, for the Redis session tests.
#   chromium, fonts-dejavu-core
#                              Debian packages, for the browser test of the
#                              demo page (client/test/browser/), driven by
#                              playwright-core at /usr/bin/chromium.
#   client/node_modules        `npm ci` in client/ (the JS client's dev
#                              dependencies: ws, kafkajs, playwright-core),
#                              redone only when package-lock.json changes.
#   haproxy                    Debian package, the load balancer in front of
#                              two instances in tests/scale_out.rs.
#   tansu 0.6 (Kafka protocol) built once with cargo into
#                              $HOME/.cache/fanout/tansu (about 11 min on
#                              2 cores), outside the clone so fresh clones
#                              reuse it.
#   python3, python3-venv      Debian packages, for scripts/autobahn.sh
#                              (which installs its fuzzingclient, kosoku,
#                              into a venv of its own).
#
# Nothing is exported: the tests find tansu through $FANOUT_TANSU, else
# $HOME/.cache/fanout/tansu/bin/tansu.
set -euo pipefail
cd "$(dirname "$0")/.."

TANSU_VERSION="0.6.0"
TANSU_ROOT="$HOME/.cache/fanout/tansu"
TANSU_BIN="$TANSU_ROOT/bin/tansu"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "deps-up: need root (or sudo) to run: $*" >&2
        return 1
    fi
}

apt_updated=0
apt_install() {
    if [ "$apt_updated" -eq 0 ]; then
        echo "deps-up: apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=1
    fi
    echo "deps-up: apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Redis: the session store behind the admin endpoint.
if command -v redis-server >/dev/null 2>&1; then
    echo "deps-up: redis-server present ($(command -v redis-server)), skipped"
else
    apt_install redis-server redis-tools
    echo "deps-up: installed $(redis-server --version | cut -d' ' -f1-3)"
fi

# Python 3 with venv: scripts/autobahn.sh runs Autobahn's fuzzingclient
# (kosoku) from a venv. Debian ships venv's ensurepip in python3-venv.
if python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "deps-up: python3 with venv present ($(command -v python3)), skipped"
else
    apt_install python3 python3-venv
    echo "deps-up: installed $(python3 --version)"
fi

# Chromium: the real browser of the demo page's test. Debian's build, because
# test tools cannot download their own browser here; DejaVu so the page's text
# renders in the screenshot on a machine without fonts.
if command -v chromium >/dev/null 2>&1 && [ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
    echo "deps-up: chromium present ($(command -v chromium)), skipped"
else
    apt_install chromium fonts-dejavu-core
    echo "deps-up: installed $(chromium --version 2>/dev/null || echo chromium)"
fi

# The JS client's dev dependencies, exactly as locked. A stamp of the lock
# file's hash in node_modules/ makes this a no-op until the lock changes.
if ! command -v npm >/dev/null 2>&1; then
    echo "deps-up: npm not on PATH; install Node.js >= 20 first" >&2
    exit 1
fi
lock_sum=$(sha256sum client/package-lock.json | cut -d' ' -f1)
stamp=client/node_modules/.fanout-lock-sha256
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$lock_sum" ]; then
    echo "deps-up: client/node_modules matches package-lock.json, skipped"
else
    echo "deps-up: npm ci in client/"
    (cd client && npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock_sum" >"$stamp"
fi

# HAProxy: tests/scale_out.rs runs deploy/haproxy.cfg in front of two
# instances (the test starts its own haproxy process; on a systemd machine
# the package also enables its service, with Debian's stock config, which
# listens on nothing). It lives in /usr/sbin, which a user's PATH may lack.
if command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ]; then
    echo "deps-up: haproxy present, skipped"
else
    apt_install haproxy
    echo "deps-up: installed $(/usr/sbin/haproxy -v | head -1)"
fi

# tansu: the Kafka-protocol broker the integration tests start. Rebuilt only
# when the cached binary is missing or is not the pinned version. A lock
# makes a second deps-up (another clone, a parallel CI job) wait for the
# build under way instead of starting its own.
tansu_version_of() {
    "$TANSU_BIN" --version 2>/dev/null || true
}
mkdir -p "$(dirname "$TANSU_ROOT")"
exec 9>"$(dirname "$TANSU_ROOT")/tansu.lock"
if ! flock -n 9; then
    echo "deps-up: another deps-up is building tansu; waiting for it"
    flock 9
fi
if [ -x "$TANSU_BIN" ] && [ "$(tansu_version_of)" = "tansu $TANSU_VERSION" ]; then
    echo "deps-up: tansu $TANSU_VERSION present ($TANSU_BIN), skipped"
else
    if ! command -v cargo >/dev/null 2>&1; then
        echo "deps-up: cargo not on PATH; install the Rust toolchain first" >&2
        exit 1
    fi
    # Some of tansu's dependencies compile C code.
    if ! command -v cc >/dev/null 2>&1; then
        apt_install build-essential
    fi
    echo "deps-up: building tansu $TANSU_VERSION into $TANSU_ROOT (about 11 min on 2 cores)"
    start=$(date +%s)
    cargo install tansu --version "$TANSU_VERSION" --locked \
        --features dynostore --root "$TANSU_ROOT"
    echo "deps-up: built tansu in $(( $(date +%s) - start )) s"
fi
if [ "$(tansu_version_of)" != "tansu $TANSU_VERSION" ]; then
    echo "deps-up: $TANSU_BIN does not run as tansu $TANSU_VERSION" \
        "(got: '$(tansu_version_of)'); remove $TANSU_ROOT and rerun" >&2
    exit 1
fi
echo "deps-up: done"
