#!/usr/bin/env bash
# Fault benchmark of the commit protocol (issue 16; not part of the test command): SIGKILL
# `ebroker run` at a random moment of each writing stage (clean, segment, offers, analytics),
# TRIALS times per stage, resume it with `run --resume`, and compare the warehouse with an
# uninterrupted run's (rows and a content checksum per partition). Local disk, no services.
#
#   deploy/local/crash-trials.sh [TRIALS]     # default 20 per stage (~80 kills)
#
# The test itself is tests/it/commit.rs; `deploy/local/test.sh` runs it with one trial per stage.
set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/local/build.sh
export EBROKER_CRASH_TRIALS="${1:-20}"
cargo test --release --features ebroker-integration/services --test it \
  commit::run_killed_at_random_moments_of_every_stage -- --nocapture 2>&1 \
  | grep -E "SIGKILL trials|test result|panicked|trial"
