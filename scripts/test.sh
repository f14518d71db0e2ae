#!/usr/bin/env bash
# The whole test suite, from a fresh clone: lint, Rust tests, then the JavaScript
# tests with the official socket.io-client against the real server binary.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-postgres.sh

echo "== cargo fmt / clippy"
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings

echo "== cargo test"
cargo build --locked
cargo test --locked

echo "== JavaScript tests (node:test + socket.io-client)"
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error && npm test)
