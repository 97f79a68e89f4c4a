#!/usr/bin/env bash
# Start-up time and memory with a full data directory: N persistent messages of SIZE bytes in
# one durable queue, or N pending persistent delayed messages (due in 1–2 hours).
#
#   perf/scripts/startup.sh queue|delayed [N] [SIZE]
#
# Fills a fresh data directory (two producers, N/2 each) through a release Warren (publisher confirms, so everything is
# on disk), then restarts it twice — after a graceful stop and after kill -9 — and reports, for
# each, the time from spawn until the AMQP listener is announced (everything is restored
# before that) and the RSS right then. Ports: WARREN_PORT (default 5695) and the next one.
set -euo pipefail
cd "$(dirname "$0")/../.."
WHAT=${1:?queue or delayed}
N=${2:-1000000}
SIZE=${3:-1024}
TARGET=${CARGO_TARGET_DIR:-target}
PORT=${WARREN_PORT:-5695}
URI="amqp://guest:guest@127.0.0.1:$PORT/%2f"
ADMIN="http://127.0.0.1:$((PORT + 1))"
DATA=$(mktemp -d)
PID=""
trap '[ -n "$PID" ] && kill -9 $PID 2>/dev/null; rm -rf "$DATA"' EXIT

start() {
  local log=$1 t0
  t0=$(date +%s%N)
  "$TARGET/release/warren" --listen "127.0.0.1:$PORT" --management-listen "127.0.0.1:$((PORT + 1))" --prometheus-listen 127.0.0.1:0 \
    --data-dir "$DATA/d" >"$log" 2>&1 &
  PID=$!
  until grep -q "listening local_addr" "$log"; do
    kill -0 $PID 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.01
  done
  STARTED_MS=$((($(date +%s%N) - t0) / 1000000))
  RSS_KIB=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")
}

start "$DATA/fill.log"
if [ "$WHAT" = queue ]; then
  "$TARGET/release/warren-perf" --uri "$URI" --producers 2 --consumers 0 --size "$SIZE" \
    --pmessages "$((N / 2))" --confirm --persistent --queue startup --keep-queue --duration 600 \
    --json 2>/dev/null | tail -1
else
  # Publishing is all that is wanted: stop the tool once every message is pending.
  "$TARGET/release/warren-perf" --uri "$URI" --mode delayed --producers 2 --size "$SIZE" \
    --pmessages "$((N / 2))" --confirm --persistent --delay-min-ms 3600000 --delay-max-ms 7200000 \
    --duration 600 >/dev/null 2>&1 &
  TOOL=$!
  until [ "$(curl -s -u guest:guest "$ADMIN/api/scheduled" | python3 -c \
      'import json,sys; print(sum(e["pending"] for e in json.load(sys.stdin)))' 2>/dev/null)" \
      -ge "$N" ] 2>/dev/null; do sleep 1; done
  sleep 1
  kill $TOOL 2>/dev/null || true
fi
echo "data directory: $(du -sh "$DATA/d" | cut -f1)"

kill $PID; wait $PID 2>/dev/null || true
start "$DATA/graceful.log"
echo "after a graceful stop: listening after ${STARTED_MS} ms, RSS $((RSS_KIB / 1024)) MiB"
grep "restored what" "$DATA/graceful.log" | sed 's/.*INFO warren::server: /  /'

kill -9 $PID; wait $PID 2>/dev/null || true
start "$DATA/kill.log"
echo "after kill -9: listening after ${STARTED_MS} ms, RSS $((RSS_KIB / 1024)) MiB"
grep "restored what" "$DATA/kill.log" | sed 's/.*INFO warren::server: /  /'
