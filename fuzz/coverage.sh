#!/usr/bin/env bash
# Usage: fuzz/coverage.sh TARGET SOURCE_FILE...
#
# How much of the code under test a fuzz target's corpus reaches: replays
# fuzz/corpus/TARGET and fuzz/seeds/TARGET through a source-coverage build
# (`cargo fuzz coverage`) and prints llvm-cov's region, function and line
# coverage of the given source files, e.g.
#
#   fuzz/coverage.sh frame src/protocol/frame.rs
#
# Needs nightly with the llvm-tools component
# (`rustup component add llvm-tools-preview --toolchain nightly`). The first
# coverage build compiles every dependency again (about 30 min on 2 shared
# cores; it goes to target/<host>/coverage/). Run from anywhere; paths are
# relative to the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${1:?usage: fuzz/coverage.sh TARGET SOURCE_FILE...}
shift
[ "$#" -gt 0 ] || { echo "coverage: name the source files to report" >&2; exit 2; }
triple=$(rustc +nightly -vV | sed -n 's/^host: //p')
llvm_cov="$(rustc +nightly --print sysroot)/lib/rustlib/$triple/bin/llvm-cov"
[ -x "$llvm_cov" ] || {
    echo "coverage: no $llvm_cov; rustup component add llvm-tools-preview --toolchain nightly" >&2
    exit 1
}
mkdir -p "fuzz/corpus/$target"
cargo +nightly fuzz coverage --fuzz-dir fuzz "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" >/dev/null 2>&1
"$llvm_cov" report "target/$triple/coverage/$triple/release/$target" \
    -instr-profile="fuzz/coverage/$target/coverage.profdata" "$@"
