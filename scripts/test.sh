#!/usr/bin/env bash
# The whole test suite, from a fresh clone: lint, Rust tests, then the JavaScript
# tests with the official socket.io-client against the real server binary.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-postgres.sh
scripts/ensure-redis.sh
scripts/ensure-chromium.sh

echo "== cargo fmt / clippy"
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings

echo "== cargo test"
cargo build --locked
cargo test --locked

echo "== client examples: install, and check the committed demo bundle is current"
(cd client-examples && npm ci --no-audit --no-fund --loglevel=error && npm run --silent check:web)

echo "== JavaScript tests (node:test + socket.io-client, Chromium via playwright-core)"
# The suite runs one file at a time, so the notification listener's test may restart
# the local PostgreSQL (set DIARY_TEST_RESTART_PG=0 when other work shares the server).
export DIARY_TEST_RESTART_PG="${DIARY_TEST_RESTART_PG:-1}"
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error && npm test)
