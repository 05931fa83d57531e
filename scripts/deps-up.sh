#!/usr/bin/env bash
# Usage: scripts/deps-up.sh
#
# Installs what the tests and benches need besides the Rust toolchain, on a
# fresh Debian machine (run as root, or with sudo on PATH). Idempotent: each
# piece is skipped when it is already there, so scripts/test.sh and .ci/run
# call it every time.
#
#   redis-server, redis-tools  Debian packages, for the Redis session tests.
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

# tansu: the Kafka-protocol broker the integration tests start. Rebuilt only
# when the cached binary is missing or is not the pinned version.
tansu_version_of() {
    "$TANSU_BIN" --version 2>/dev/null || true
}
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
