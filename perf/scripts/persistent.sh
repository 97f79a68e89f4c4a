#!/usr/bin/env bash
# Persistent messages side by side: Warren and RabbitMQ, same tool, same load, one run.
#
#   perf/scripts/persistent.sh [ROUNDS] [DURATION_S]
#
# The load: 1 KiB persistent messages into a durable queue, publisher confirms, 2 producers
# and 2 consumers, manual ack, publishes pipelined (1000 unconfirmed per producer). Each round
# starts Warren on a fresh data directory and runs the load against both brokers, alternating
# which goes first; the table gives medians over rounds. Syncs are counted with strace
# (`fdatasync` and `fsync` of the broker's threads) over the measured run, so "syncs/s" and
# "messages per sync" say whether confirms really waited for the disk.
#
# Needs release builds (`cargo build --release -p warren -p warren-perf`), strace, and a
# RabbitMQ on RABBIT_URI (`../shared/reference/rabbitmq.sh start 1`: port 5673).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
DURATION=${2:-15}
TARGET=${CARGO_TARGET_DIR:-target}
PERF="$TARGET/release/warren-perf"
WARREN="$TARGET/release/warren"
WARREN_PORT=${WARREN_PORT:-5681}
RABBIT_URI=${RABBIT_URI:-amqp://guest:guest@127.0.0.1:5673/%2f}
WARREN_URI="amqp://guest:guest@127.0.0.1:$WARREN_PORT/%2f"
LOAD="--size 1024 --producers 2 --consumers 2 --confirm --persistent --manual-ack"
OUT=$(mktemp -d)
WARREN_PID=""
trap '[ -n "$WARREN_PID" ] && kill $WARREN_PID 2>/dev/null; true' EXIT

# Runs the load against $1 (warren|rabbitmq) with strace counting syncs of $2 (a pid).
run() {
  local broker=$1 pid=$2 uri=$WARREN_URI
  [ "$broker" = rabbitmq ] && uri=$RABBIT_URI
  strace -f -c -e trace=fdatasync,fsync -p "$pid" -o "$OUT/strace.txt" 2>/dev/null &
  local tracer=$!
  sleep 0.5
  # shellcheck disable=SC2086
  "$PERF" --uri "$uri" --duration "$DURATION" --json $LOAD 2>/dev/null | tail -1 >"$OUT/run.json"
  kill -INT $tracer 2>/dev/null || true
  wait $tracer 2>/dev/null || true
  local syncs
  syncs=$(awk '$NF ~ /^(fdatasync|fsync)$/ {s += $4} END {print s + 0}' "$OUT/strace.txt")
  sed "s/^{/{\"broker\":\"$broker\",\"syncs\":$syncs,/" "$OUT/run.json" >>"$OUT/results.jsonl"
}

RABBIT_PID=${RABBIT_PID:-$(pgrep -f beam.smp | head -1 || true)}
for round in $(seq 1 "$ROUNDS"); do
  DATA=$(mktemp -d)
  "$WARREN" --listen "127.0.0.1:$WARREN_PORT" --management-listen 127.0.0.1:0 --prometheus-listen 127.0.0.1:0 --data-dir "$DATA" \
    --log-level warn >"$OUT/warren.log" 2>&1 &
  WARREN_PID=$!
  sleep 1
  if ((round % 2)); then order="warren rabbitmq"; else order="rabbitmq warren"; fi
  for broker in $order; do
    pid=$WARREN_PID
    [ "$broker" = rabbitmq ] && pid=$RABBIT_PID
    run "$broker" "$pid"
  done
  kill $WARREN_PID; wait $WARREN_PID 2>/dev/null || true
  WARREN_PID=""
  rm -rf "$DATA"
done

python3 - "$OUT/results.jsonl" "$DURATION" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
duration = float(sys.argv[2])
print(f"{'broker':<9} {'confirmed/s':>11} {'consumed/s':>10} {'syncs/s':>8} {'msgs/sync':>9} "
      f"{'p50 ms':>8} {'p99 ms':>8}  rounds (confirmed/s)")
for broker in ("warren", "rabbitmq"):
    rs = [r for r in rows if r["broker"] == broker]
    if not rs:
        continue
    med = lambda f: statistics.median(f(r) for r in rs)
    confirmed = lambda r: r["confirmed"] / r["publish_elapsed_s"]
    syncs = med(lambda r: r["syncs"] / duration)
    per_sync = med(lambda r: confirmed(r) / max(r["syncs"] / duration, 1e-9))
    rounds = ", ".join(f"{confirmed(r):.0f}" for r in rs)
    print(f"{broker:<9} {med(confirmed):>11.0f} "
          f"{med(lambda r: r['consume_rate']):>10.0f} {syncs:>8.0f} {per_sync:>9.1f} "
          f"{med(lambda r: r['latency_p50_ms']):>8.1f} {med(lambda r: r['latency_p99_ms']):>8.1f}"
          f"  {rounds}")
PY
echo "raw results: $OUT/results.jsonl"
