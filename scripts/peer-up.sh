#!/usr/bin/env bash
# Usage: scripts/peer-up.sh
#
# Installs the uWebSockets.js benchmark peer's Node dependencies
# (loadtest/peer-uws, `npm ci` from its package-lock.json; skipped when
# node_modules already matches the lock file and the Node version), checks
# that `require('uwebsockets')` loads its prebuilt binary, and prints the
# versions. Then run the peer and its check, pinned apart:
#   taskset -c 1 node loadtest/peer-uws/server.js --port 3019 &
#   taskset -c 0 node loadtest/peer-uws/check.js --port 3019
# Needs Node >= 20 and npm on PATH, and glibc Linux x64/arm64.
set -euo pipefail
cd "$(dirname "$0")/.."

peer=loadtest/peer-uws

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

# The stamp records what node_modules was installed from.
stamp_file="$peer/node_modules/.peer-up-stamp"
want_stamp="$(sha256sum "$peer/package-lock.json" | cut -d' ' -f1) node-$(node --version)"
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$want_stamp" ]; then
  echo "peer-up: node_modules is current, skipping npm ci"
else
  echo "peer-up: npm ci in $peer"
  (cd "$peer" && npm ci --include=dev --no-audit --no-fund --loglevel=error)
  printf '%s\n' "$want_stamp" >"$stamp_file"
fi

(cd "$peer" && node -e '
  const uWS = require("uwebsockets");
  if (typeof uWS.App !== "function") throw new Error("uwebsockets loaded without App()");
  const v = (name) => require(name + "/package.json").version;
  console.log(`peer-up: node ${process.version} (ABI ${process.versions.modules}, ${process.platform}-${process.arch})`);
  console.log(`peer-up: uwebsockets ${v("uwebsockets")} loads; ws ${v("ws")}`);
')
