#!/usr/bin/env bash
# The cluster run of BENCHMARKS.md: three server processes (scripts/cluster.sh, all on
# CPU 1 like the single-node runs) on one fresh PostgreSQL database and the local
# Redis, the load generator on CPU 0 spreading its clients round-robin over them.
# Prints the load generator's summary lines plus the CPU the three servers and Redis
# spent during each run. Arguments: scenarios with sizes, e.g. `cursors 1000 edits 1000`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-postgres.sh
scripts/ensure-redis.sh
cargo build --release --bin diary-realtime --bin loadgen

secret=loadgen-secret-0123456789abcdef0123456789
db="bench_cluster_$$"
admin=postgres://postgres@127.0.0.1:5432/postgres
psql -q "$admin" -c "CREATE DATABASE $db"
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db"
ports=(18103 18104 18105)
LOG_DIR="$(mktemp -d)" JWT_SECRET="$secret" REDIS_PREFIX="bench-$$" RUST_LOG=warn \
  taskset -c 1 scripts/cluster.sh "${ports[@]}" 2>/dev/null &
cluster=$!
cleanup() {
  kill -TERM "$cluster" 2>/dev/null || true
  wait "$cluster" 2>/dev/null || true
  psql -q "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
}
trap cleanup EXIT
for port in "${ports[@]}"; do
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
done
urls=$(printf 'http://127.0.0.1:%s,' "${ports[@]}"); urls=${urls%,}
pids=$(pgrep -f "target/release/diary-realtime serve" | tr '\n' ' ')
redis_pid=$(pgrep -x redis-server | head -n 1)

# utime+stime in clock ticks, summed over the given pids.
ticks() { for p in "$@"; do cut -d' ' -f14,15 "/proc/$p/stat"; done | awk '{s+=$1+$2} END {print s}'; }
hz=$(getconf CLK_TCK)

while [ $# -ge 2 ]; do
  scenario=$1 size=$2; shift 2
  before_s=$(ticks $pids) before_r=$(ticks "$redis_pid")
  target/release/loadgen "$scenario" "$size" --url "$urls" --database-url "$DATABASE_URL" --jwt-secret "$secret"
  after_s=$(ticks $pids) after_r=$(ticks "$redis_pid")
  echo "cluster cpu: servers $(( (after_s - before_s) * 1000 / hz )) ms, redis $(( (after_r - before_r) * 1000 / hz )) ms"
done
