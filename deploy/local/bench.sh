#!/usr/bin/env bash
# Benchmark of the batch stages (not a timed test): rows/s and peak RSS per stage at scale.
#
#   deploy/local/bench.sh [CLIENTS]      # default 500000 clients (~4.9M rows, ~340 MiB CSV)
#
# Builds the release binary, then runs, each as its own process so peak RSS is per stage:
# generate, clean, and the whole DAG clean -> segment -> offers -> analytics (`run --input`).
# Targets on a 2-core machine (issues 2 and 3): generate >= 1M rows/s; clean >= 250k rows/s;
# clean -> analytics <= 30 s at 500k clients; peak RSS <= 1 GiB at any size.
set -euo pipefail
cd "$(dirname "$0")/../.."
CLIENTS="${1:-500000}"
DATE=2024-06-01
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ebroker/target}"
cargo build --release -p ebroker
BIN="$CARGO_TARGET_DIR/release/ebroker"
WORK="${BENCH_DIR:-$(mktemp -d /tmp/ebroker-bench.XXXXXX)}"
mkdir -p "$WORK"
echo "== $CLIENTS clients in $WORK"
"$BIN" generate --clients "$CLIENTS" --seed 1 --dirty 0.02 --date "$DATE" --out "$WORK/src" | tail -1
du -sh "$WORK/src"
"$BIN" --warehouse "$WORK/wh-clean" clean --input "$WORK/src" --date "$DATE" | tail -1
"$BIN" --warehouse "$WORK/wh-dag" run --input "$WORK/src" --date "$DATE"
[ -n "${BENCH_DIR:-}" ] || rm -rf "$WORK"
