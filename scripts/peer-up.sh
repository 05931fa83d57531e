#!/usr/bin/env bash
# Usage: scripts/peer-up.sh
#
# Installs the Node dependencies of the two benchmark peers, each with
# `npm ci` from its package-lock.json (skipped when node_modules already
# matches the lock file and the Node version):
#   loadtest/peer-uws  uWebSockets.js (uwebsockets 3.0.6) + kafkajs
#   loadtest/peer-ws   ws + kafkajs, the plain Node version of the service
# then checks that each peer's modules load and prints the versions. Run a
# peer against a broker (scripts/bench.sh does all of this for you):
#   taskset -c 1 node loadtest/peer-uws/server.js --port 3019 --kafka-brokers 127.0.0.1:9092 &
#   curl -s 127.0.0.1:3019/readyz      # 200 once its consumer can read
# and the uWS peer's protocol check (socket-fed, no broker needed):
#   taskset -c 1 node loadtest/peer-uws/server.js --port 3019 &
#   taskset -c 0 node loadtest/peer-uws/check.js --port 3019
# Needs Node >= 20 and npm on PATH, and glibc Linux x64/arm64.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in node npm; do
  if ! command -v "$tool" >/dev/null; then
    echo "peer-up: $tool not found; install Node.js 20 (Debian: apt-get install nodejs npm)" >&2
    exit 1
  fi
done

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "peer-up: Node $(node --version) is too old; need >= 20" >&2
  exit 1
fi

install_peer() {
  local peer=$1
  # The stamp records what node_modules was installed from.
  local stamp_file="$peer/node_modules/.peer-up-stamp"
  local want_stamp
  want_stamp="$(sha256sum "$peer/package-lock.json" | cut -d' ' -f1) node-$(node --version)"
  if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$want_stamp" ]; then
    echo "peer-up: $peer: node_modules is current, skipping npm ci"
  else
    echo "peer-up: npm ci in $peer"
    (cd "$peer" && npm ci --include=dev --no-audit --no-fund --loglevel=error)
    printf '%s\n' "$want_stamp" >"$stamp_file"
  fi
}

install_peer loadtest/peer-uws
install_peer loadtest/peer-ws

(cd loadtest/peer-uws && node -e '
  const uWS = require("uwebsockets");
  if (typeof uWS.App !== "function") throw new Error("uwebsockets loaded without App()");
  require("kafkajs");
  const v = (name) => require(name + "/package.json").version;
  console.log(`peer-up: node ${process.version} (ABI ${process.versions.modules}, ${process.platform}-${process.arch})`);
  console.log(`peer-up: peer-uws: uwebsockets ${v("uwebsockets")} loads; kafkajs ${v("kafkajs")}; ws ${v("ws")} (check.js)`);
')
(cd loadtest/peer-ws && node -e '
  require("ws");
  require("kafkajs");
  const v = (name) => require(name + "/package.json").version;
  console.log(`peer-up: peer-ws: ws ${v("ws")}, kafkajs ${v("kafkajs")}`);
')
