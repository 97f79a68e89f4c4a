#!/usr/bin/env bash
# Side-by-side AMQP throughput and latency of Warren and RabbitMQ, same tool, same load.
#
#   perf/scripts/side-by-side.sh [ROUNDS] [DURATION_S]
#
# Needs release builds (`cargo build --release -p warren -p warren-perf`) and a RabbitMQ on
# RABBIT_URI (default port 5673). Starts Warren itself on WARREN_PORT (default 5680). Each
# round runs every load against both brokers, alternating which goes first, so that drift on
# a shared machine hits both; the table gives the median over rounds.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
DURATION=${2:-10}
TARGET=${CARGO_TARGET_DIR:-target}
PERF="$TARGET/release/warren-perf"
WARREN="$TARGET/release/warren"
WARREN_PORT=${WARREN_PORT:-5680}
RABBIT_URI=${RABBIT_URI:-amqp://guest:guest@127.0.0.1:5673/%2f}
WARREN_URI="amqp://guest:guest@127.0.0.1:$WARREN_PORT/%2f"
OUT=$(mktemp -d)

DATA=$(mktemp -d)
"$WARREN" --listen "127.0.0.1:$WARREN_PORT" --management-listen 127.0.0.1:0 \
  --prometheus-listen 127.0.0.1:0 --data-dir "$DATA" --log-level warn >"$OUT/warren.log" 2>&1 &
WARREN_PID=$!
trap 'kill $WARREN_PID 2>/dev/null || true' EXIT
sleep 1

declare -A LOADS=(
  [1-transient-16B-1p1c-autoack]="--size 16 --producers 1 --consumers 1"
  [2-1KiB-2p2c-manualack-prefetch100]="--size 1024 --producers 2 --consumers 2 --manual-ack --prefetch 100"
  [3-1KiB-2p2c-manualack-prefetch100-confirms]="--size 1024 --producers 2 --consumers 2 --manual-ack --prefetch 100 --confirm"
)

for round in $(seq 1 "$ROUNDS"); do
  for load in $(printf '%s\n' "${!LOADS[@]}" | sort); do
    if ((round % 2)); then order="warren rabbitmq"; else order="rabbitmq warren"; fi
    for broker in $order; do
      uri=$WARREN_URI; [ "$broker" = rabbitmq ] && uri=$RABBIT_URI
      # shellcheck disable=SC2086
      "$PERF" --uri "$uri" --duration "$DURATION" --json ${LOADS[$load]} 2>/dev/null | tail -1 \
        | sed "s/^{/{\"broker\":\"$broker\",\"load\":\"$load\",/" >>"$OUT/results.jsonl"
    done
  done
done

python3 - "$OUT/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
loads = sorted({r["load"] for r in rows})
print(f"{'load':<46} {'broker':<9} {'publish/s':>10} {'consume/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
for load in loads:
    for broker in ("warren", "rabbitmq"):
        rs = [r for r in rows if r["load"] == load and r["broker"] == broker]
        med = lambda k: statistics.median(r[k] for r in rs)
        print(f"{load:<46} {broker:<9} {med('publish_rate'):>10.0f} {med('consume_rate'):>10.0f} "
              f"{med('latency_p50_ms'):>8.1f} {med('latency_p99_ms'):>8.1f}")
PY
echo "raw results: $OUT/results.jsonl"
