#!/usr/bin/env bash
# Runs the coverage-guided fuzz targets of jobs/core/fuzz (cargo-fuzz, libFuzzer) for a
# bounded time each, with a seed corpus made by the generator, and prints each target's
# executions and coverage. Installs the nightly toolchain and cargo-fuzz when missing.
#
#   deploy/local/fuzz.sh          # 30 s per target (what the test command runs)
#   deploy/local/fuzz.sh 3600     # an hour per target (before a release)
#
# The corpus grows across runs in ~/.cache/ebroker/fuzz; a crash fails the script and leaves
# the input under jobs/core/fuzz/artifacts/<target>/ (reproduce: cargo +nightly fuzz run
# <target> <file>).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SECONDS_PER_TARGET="${1:-${EBROKER_FUZZ_SECONDS:-30}}"
CACHE="${EBROKER_FUZZ_DIR:-$HOME/.cache/ebroker/fuzz}"
export CARGO_TARGET_DIR="$CACHE/target"

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --version 0.13.1 --locked

# Seeds: the lines of a small generated day (with its dirt), and a few hand-made messages.
SEEDS="$CACHE/seeds"
if [ ! -d "$SEEDS/fields" ]; then
  BIN="${EBROKER_BIN_DIR:-$ROOT/target/release}/ebroker"
  [ -x "$BIN" ] || { echo "no $BIN: run deploy/local/build.sh first" >&2; exit 1; }
  GENERATED="$(mktemp -d)"
  "$BIN" generate --clients 200 --seed 7 --date 2024-06-01 --out "$GENERATED" >/dev/null
  mkdir -p "$SEEDS/fields" "$SEEDS/kafka_json"
  n=0
  for file in "$GENERATED"/*.csv; do
    head -n 40 "$file" | while IFS= read -r line; do
      n=$((n + 1))
      printf '%s' "$line" > "$SEEDS/fields/$(basename "$file" .csv)-$n"
    done
  done
  cp "$SEEDS/fields/"* "$SEEDS/kafka_json/"
  printf '%s' '{"id":"X","day":"2024-06-01","at":"2024-06-01 10:00:00","n":5,"amount":12.5,"ok":true}' > "$SEEDS/kafka_json/message"
  printf '%s' '{"id":null,"n":1e400,"amount":"1e5","ok":"True"}' > "$SEEDS/kafka_json/dirty-message"
  rm -rf "$GENERATED"
fi

cd "$ROOT/jobs/core/fuzz"
for target in fields kafka_json; do
  corpus="$CACHE/corpus/$target"
  mkdir -p "$corpus"
  echo "== fuzzing $target for ${SECONDS_PER_TARGET}s"
  log="$CACHE/$target.log"
  if ! cargo +nightly fuzz run "$target" "$corpus" "$SEEDS/$target" -- \
      -max_total_time="$SECONDS_PER_TARGET" -max_len=8192 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz target $target failed (above); the input is under jobs/core/fuzz/artifacts/$target/" >&2
    exit 1
  fi
  runs="$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')"
  cov="$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1 | grep -oE '[0-9]+' || echo '?')"
  echo "   $target: $runs executions, coverage $cov edges, no crash; corpus $(ls "$corpus" | wc -l) inputs"
done
