#!/usr/bin/env bash
# ebroker beside the DuckDB reference implementation of SPEC (../shared/reference/, an
# independent implementation in DuckDB SQL on 2 threads) on the same generated day: wall time,
# CPU, peak RSS and each stage's seconds, with ebroker's ratio to DuckDB, then compare.py on
# both outputs (exit 0 = the same cleaned tables, quarantine and marts). A benchmark, not a
# timed test (issue 19: the DAG in at most 0.5x DuckDB's wall time, no stage slower).
#
#   deploy/local/side-by-side.sh [CLIENTS]     # default 500000 clients (4.9M rows)
#
# The input is generated with --dirty 0: DuckDB's CSV reader fails on the unclosed quotes
# `--dirty` writes (ebroker quarantines them), see the reference's README. Needs python3; the
# reference's pinned requirements go into ~/.cache/ebroker/duckdb-venv. EBROKER_REFERENCE_DIR
# overrides where the reference is; BENCH_DIR keeps the work directory. Sourced by bench.sh
# (which builds first) or run alone (builds too).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
CLIENTS="${1:-500000}"
DATE=2024-06-01
REFERENCE="${EBROKER_REFERENCE_DIR:-$(cd .. && pwd)/shared/reference}"
if [ ! -f "$REFERENCE/duckdb_pipeline.py" ]; then
  echo "no DuckDB reference at $REFERENCE (duckdb_pipeline.py); set EBROKER_REFERENCE_DIR to its directory" >&2
  exit 1
fi
[ -n "${BIN_DIR:-}" ] || source deploy/local/build.sh
BIN="$BIN_DIR/ebroker"
VENV="$HOME/.cache/ebroker/duckdb-venv"
if ! "$VENV/bin/python" -c "import duckdb, pyarrow" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r "$REFERENCE/requirements.txt"
fi
if [ -n "${BENCH_DIR:-}" ]; then
  WORK="$BENCH_DIR/side-by-side"
  rm -rf "$WORK" && mkdir -p "$WORK"
else
  WORK="$(mktemp -d /tmp/ebroker-side.XXXXXX)"
  trap 'rm -rf "$WORK"' EXIT
fi
"$BIN" generate --clients "$CLIENTS" --seed 1 --dirty 0 --date "$DATE" --out "$WORK/src" | tail -1

# Each engine alone on the machine, one after the other; /usr/bin/time gives wall, CPU, peak.
TIMING="%e %U %S %M"
/usr/bin/time -f "$TIMING" -o "$WORK/ebroker.time" \
  "$BIN" --warehouse "$WORK/ebroker" run --input "$WORK/src" --date "$DATE" >"$WORK/ebroker.txt" 2>"$WORK/ebroker.log"
/usr/bin/time -f "$TIMING" -o "$WORK/duckdb.time" \
  "$VENV/bin/python" "$REFERENCE/duckdb_pipeline.py" --input "$WORK/src" --output "$WORK/duckdb" \
  --processing-date "$DATE" >"$WORK/duckdb.txt"

stage_seconds() { # engine file -> "clean segment offers analytics" seconds
  case "$1" in
    ebroker) awk '$2 == "succeeded" { s[$1] = $4 } END { print s["clean"], s["segment"], s["offers"], s["analytics"] }' "$2" ;;
    duckdb) awk '$1 == "STAGE" { s[$2] = $3 } END { print s["clean"], s["segment"], s["offers"], s["analytics"] }' "$2" ;;
  esac
}
read -r E_WALL E_USER E_SYS E_KB <"$WORK/ebroker.time"
read -r D_WALL D_USER D_SYS D_KB <"$WORK/duckdb.time"
read -r -a E_STAGES <<<"$(stage_seconds ebroker "$WORK/ebroker.txt")"
read -r -a D_STAGES <<<"$(stage_seconds duckdb "$WORK/duckdb.txt")"
echo "== $CLIENTS clients, $(wc -l <"$WORK/src/clients.csv") client lines: ebroker beside DuckDB ($(basename "$REFERENCE"))"
awk -v ew="$E_WALL" -v ec="$(echo "$E_USER + $E_SYS" | bc)" -v em="$E_KB" -v es="${E_STAGES[*]}" \
    -v dw="$D_WALL" -v dc="$(echo "$D_USER + $D_SYS" | bc)" -v dm="$D_KB" -v ds="${D_STAGES[*]}" 'BEGIN {
  split(es, e, " "); split(ds, d, " ")
  printf "| engine | wall s | CPU s | peak RSS MiB | clean s | segment s | offers s | analytics s |\n"
  printf "|---|---|---|---|---|---|---|---|\n"
  printf "| DuckDB, 2 threads | %.2f | %.1f | %.0f | %.2f | %.2f | %.2f | %.2f |\n", dw, dc, dm / 1024, d[1], d[2], d[3], d[4]
  printf "| ebroker in-process | %.2f | %.1f | %.0f | %.2f | %.2f | %.2f | %.2f |\n", ew, ec, em / 1024, e[1], e[2], e[3], e[4]
  printf "| ebroker / DuckDB | %.2fx | %.2fx | %.2fx | %.2fx | %.2fx | %.2fx | %.2fx |\n", ew / dw, ec / dc, em / dm, e[1] / d[1], e[2] / d[2], e[3] / d[3], e[4] / d[4]
}'
echo "(ebroker's analytics also computes the three standard reports of SPEC section 8; the reference's writes the daily slice only)"
echo "== the same results? (compare.py: cleaned tables, quarantine and marts, matched by key)"
"$VENV/bin/python" "$REFERENCE/compare.py" --date "$DATE" "$WORK/duckdb" "$WORK/ebroker" | tail -1
