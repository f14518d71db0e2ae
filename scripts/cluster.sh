#!/usr/bin/env bash
# Starts a local cluster of three diary-realtime processes sharing one PostgreSQL
# database and one Redis, one log file per process; Ctrl-C (or SIGTERM) stops them all.
#
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/diary JWT_SECRET=... scripts/cluster.sh [PORT...]
#
# Ports default to 8003 8004 8005. Environment:
#   DATABASE_URL  required, postgres://... (a cluster shares one PostgreSQL database)
#   REDIS_URL     default redis://127.0.0.1:6379
#   REDIS_PREFIX  default diary-realtime
#   DIARY_BIN     the server binary; default target/release/diary-realtime, else
#                 target/debug/diary-realtime (build one first: cargo build --release)
#   LOG_DIR       default ./data/cluster-logs (node-<port>.log)
# Every other setting (JWT_SECRET, PRESENCE_GRACE_MS, ...) is passed through unchanged.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
ports=("$@")
if [ ${#ports[@]} -eq 0 ]; then ports=(8003 8004 8005); fi

: "${DATABASE_URL:?set DATABASE_URL to postgres://... (a cluster shares one PostgreSQL database)}"
case "$DATABASE_URL" in
  postgres://* | postgresql://*) ;;
  *) echo "error: DATABASE_URL must be postgres://... for a cluster" >&2; exit 2 ;;
esac
export DATABASE_URL
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
export REDIS_PREFIX="${REDIS_PREFIX:-diary-realtime}"

bin="${DIARY_BIN:-}"
if [ -z "$bin" ]; then
  for candidate in "$root/target/release/diary-realtime" "$root/target/debug/diary-realtime"; do
    if [ -x "$candidate" ]; then bin="$candidate"; break; fi
  done
fi
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  echo "error: no server binary; run 'cargo build --release' or set DIARY_BIN" >&2
  exit 1
fi

log_dir="${LOG_DIR:-$root/data/cluster-logs}"
mkdir -p "$log_dir"

# Migrate once up front, so the nodes do not race to apply the same migrations.
"$bin" migrate

pids=()
stop_all() {
  trap - INT TERM EXIT
  echo "stopping ${#pids[@]} processes ..." >&2
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_all INT TERM EXIT

for port in "${ports[@]}"; do
  log="$log_dir/node-$port.log"
  PORT="$port" "$bin" serve >"$log" 2>&1 &
  pids+=("$!")
  echo "node on port $port: pid $!, log $log" >&2
done

echo "cluster of ${#pids[@]} on Redis $REDIS_URL (prefix $REDIS_PREFIX); Ctrl-C stops it" >&2
# A node that dies (try kill -9 on one) leaves the others serving; this returns once
# every node has exited, or on Ctrl-C through the trap.
for pid in "${pids[@]}"; do wait "$pid" || true; done
