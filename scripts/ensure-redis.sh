#!/usr/bin/env bash
# Makes sure Redis answers on 127.0.0.1:6379 (the cluster tests need it), starting a
# local redis-server if one is installed but down. Fails with a clear message
# otherwise: tests never skip silently.
set -euo pipefail

ready() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

if ready; then exit 0; fi
if ! command -v redis-server >/dev/null 2>&1; then
  echo "error: Redis is not answering on 127.0.0.1:6379 and redis-server is not installed" >&2
  exit 1
fi
echo "starting redis-server on 127.0.0.1:6379 ..." >&2
redis-server --bind 127.0.0.1 --port 6379 --save '' --appendonly no --daemonize yes
for _ in $(seq 1 60); do
  if ready; then exit 0; fi
  sleep 0.5
done
echo "error: Redis did not become ready on 127.0.0.1:6379" >&2
exit 1
