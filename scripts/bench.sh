#!/usr/bin/env bash
# The benchmark set of BENCHMARKS.md: builds the release binaries and runs every
# scenario at the reported sizes (a few minutes). Each run starts its own server on
# CPU 1, with a fresh PostgreSQL database dropped afterwards; the load generator runs on
# CPU 0. Extra arguments go to the load generator (e.g. `--secs 20`).
# Output: one summary line per run, also appended to bench-results.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --bin diary-realtime --bin loadgen
{
  echo "== $(date -u +%FT%TZ) $(git rev-parse --short HEAD) | $(nproc) CPUs | load: $(cut -d' ' -f1-3 /proc/loadavg)"
  target/release/loadgen all "$@"
} | tee -a bench-results.txt
