#!/usr/bin/env bash
# Heap profile by owner (BENCHMARKS.md, "Memory by owner"): runs the release server
# under heaptrack on CPU 1, loads it with the load generator on CPU 0, and at the
# measured moment (every socket connected and joined, or every storm socket synced)
# kills the server, so the bytes heaptrack sees "not freed at the end" are exactly the
# live heap at that moment. Prints the owner table, per socket.
#   scripts/bench-heap.sh idle 2000
#   scripts/bench-heap.sh storm 2000
# Needs heaptrack (Debian: apt-get install heaptrack). Keeps the profile in target/heap/.
# BIN_DIR=dir profiles binaries built elsewhere (e.g. a copy of an older build).
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:-idle}
n=${2:-2000}
command -v heaptrack >/dev/null || { echo "heaptrack is not installed" >&2; exit 1; }
bin=${BIN_DIR:-target/release}
[ -n "${BIN_DIR:-}" ] || cargo build --release --bin diary-realtime --bin loadgen

secret=loadgen-secret-0123456789abcdef0123456789
db="bench_heap_$$"
admin=postgres://postgres@127.0.0.1:5432/postgres
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p target/heap
out="target/heap/$scenario-$n"
rm -f "$out".zst
psql -q "$admin" -c "CREATE DATABASE $db"
DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db" JWT_SECRET="$secret" PORT=$port \
  HOST=127.0.0.1 RUST_LOG=warn taskset -c 1 heaptrack -o "$out" "$bin/diary-realtime" >/dev/null &
tracker=$!
loadgen=
cleanup() {
  [ -n "$loadgen" ] && kill "$loadgen" 2>/dev/null || true
  kill -TERM "$tracker" 2>/dev/null || true
  wait "$tracker" 2>/dev/null || true
  psql -q "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
}
trap cleanup EXIT
server=
for _ in $(seq 1 600); do
  server=$(pgrep -P "$tracker" -x diary-realtime || true)
  [ -n "$server" ] && curl -fs "http://127.0.0.1:$port/health" >/dev/null && break
  sleep 0.1
done
[ -n "$server" ] || { echo "server did not start" >&2; exit 1; }

metric() { # sum of a metric's samples, optionally only lines containing $2
  { curl -fs "http://127.0.0.1:$port/metrics" || true; } |
    awk -v m="$1" -v f="${2:-}" 'index($0, m) == 1 && index($0, f) {s += $NF} END {print int(s)}'
}
# The storm holds its sockets for a while after the last sync, so the snapshot can
# be taken while they are all still there.
"$bin/loadgen" "$scenario" "$n" --url "http://127.0.0.1:$port" --server-pid "$server" \
  --database-url "postgres://postgres@127.0.0.1:5432/$db" --jwt-secret "$secret" \
  --hold-secs 60 --give-back-secs 1 >"$out.loadgen" 2>&1 &
loadgen=$!
for _ in $(seq 1 3000); do
  if [ "$scenario" = storm ]; then
    done_=$(metric diary_events_total entry_sync_step1)
  else
    done_=$(metric diary_connections)
  fi
  [ "$done_" -ge "$n" ] && break
  sleep 0.1
done
# Let the last acks go out and per-join transients be freed.
sleep 2
rss=$(awk '/VmRSS/ {print $2}' "/proc/$server/status")
kill -KILL "$server"
wait "$tracker" 2>/dev/null || true
kill "$loadgen" 2>/dev/null || true
loadgen=
heaptrack_print -f "$out".zst --flamegraph-cost-type leaked -F "$out.raw" >/dev/null
# Rust symbols (v0 mangling) by name, without crate hashes.
c++filt <"$out.raw" | sed 's/\[[0-9a-f]\{16\}\]//g' >"$out.folded"
echo "== heap by owner, $scenario n=$n, server VmRSS ${rss} KiB at the snapshot"
python3 scripts/heap_owners.py "$out.folded" "$n"
