#!/usr/bin/env bash
# Delayed delivery at scale: N pending 16-byte messages with delays spread over 20–40 s
# through an x-delayed-message exchange; publish rate, firing lateness, and broker RSS.
#
#   perf/scripts/delayed-pending.sh [N] [extra warren-perf flags, e.g. --confirm]
#
# Starts a release Warren on WARREN_PORT (default 5690). RSS is sampled every 200 ms; the
# per-message figure is (peak RSS − idle RSS − N × 16 B) / N, i.e. overhead beyond the body.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-1000000}; shift || true
TARGET=${CARGO_TARGET_DIR:-target}
PORT=${WARREN_PORT:-5690}
DATA=$(mktemp -d)
"$TARGET/release/warren" --listen "127.0.0.1:$PORT" --management-listen "127.0.0.1:$((PORT + 10000))" --prometheus-listen 127.0.0.1:0 \
  --data-dir "$DATA" --log-level warn >/dev/null 2>&1 &
PID=$!
trap 'kill $PID $SAMPLER 2>/dev/null || true' EXIT
sleep 1
rss() { awk '/VmRSS/ {print $2}' "/proc/$PID/status"; }
IDLE=$(rss)
( peak=0; while kill -0 $PID 2>/dev/null; do r=$(rss); ((r > peak)) && peak=$r && echo "$peak" >"$DATA/peak"; sleep 0.2; done ) &
SAMPLER=$!
"$TARGET/release/warren-perf" --uri "amqp://guest:guest@127.0.0.1:$PORT/%2f" --mode delayed \
  --pmessages "$N" --size 16 --delay-min-ms 20000 --delay-max-ms 40000 --json "$@" 2>/dev/null | tail -1
PEAK=$(cat "$DATA/peak")
echo "rss_idle_kib=$IDLE rss_peak_kib=$PEAK overhead_bytes_per_pending=$(( ((PEAK - IDLE) * 1024 - N * 16) / N ))"
