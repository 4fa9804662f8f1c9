#!/usr/bin/env bash
# The one release build that both README commands and every script here share. Sourced:
#
#   source deploy/local/build.sh     # builds; sets BIN_DIR to the directory of the binaries
#
# ./target is a link to ~/.cache/ebroker/target (made here when ./target does not exist), so a
# clean clone on this machine reuses earlier builds, and `cargo run --release -- run` finds the
# same artifacts. Every workspace member is a default member: `cargo build --release` here and
# `cargo run --release` resolve the same features, so neither rebuilds what the other built.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if ! command -v cargo >/dev/null; then
  echo "cargo is not installed; install Rust from https://rustup.rs" >&2
  exit 1
fi
if [ -z "${CARGO_TARGET_DIR:-}" ] && [ ! -e "$ROOT/target" ]; then
  mkdir -p "$HOME/.cache/ebroker/target"
  ln -s "$HOME/.cache/ebroker/target" "$ROOT/target"
fi
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
(cd "$ROOT" && cargo build --release)
BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release"
export EBROKER_BIN_DIR="$BIN_DIR"
