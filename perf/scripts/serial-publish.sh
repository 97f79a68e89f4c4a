#!/usr/bin/env bash
# Serial publishing (each basic_publish awaited: --publish-window 1) against pipelined
# publishing, Warren side by side with RabbitMQ, same tool, same machine, one run.
#
#   perf/scripts/serial-publish.sh [ROUNDS] [DURATION_S]
#
# Loads (16 B bodies and one producer unless said otherwise):
#   delayed-w1    into an x-delayed-message exchange, x-delay 30 s, no consumer (Warren only:
#                 Debian's RabbitMQ has no delayed-message plugin)
#   plain-w1      into a queue with no consumer
#   consume-w1    into a queue with a consumer in the same program (auto-ack)
#   pipelined     into a queue with a consumer, default window (256 publishes in flight)
#   pipelined-ack the side-by-side loads 2 and 3: 1 KiB, 2 producers / 2 consumers, manual
#   pipelined-cnf ack, prefetch 100 (and publisher confirms)
#
# Warren builds: WARREN_BINS="name=path ..." (default: warren=target/release/warren), each
# started on a free port with a free admin port and a temporary data directory, so a build
# before a change and after it can be measured in the same run. RabbitMQ on RABBIT_URI
# (default amqp://guest:guest@127.0.0.1:5673/%2f) is included when it answers. Each round runs
# every load against every broker, reversing the order every other round; the table gives
# medians over rounds, and the broker's CPU time per run (from /proc) as a share of one core.
# ONLY=regex restricts the loads (e.g. ONLY=pipelined).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-5}
DURATION=${2:-5}
TARGET=${CARGO_TARGET_DIR:-target}
PERF="$TARGET/release/warren-perf"
WARREN_BINS=${WARREN_BINS:-warren=$TARGET/release/warren}
RABBIT_URI=${RABBIT_URI:-amqp://guest:guest@127.0.0.1:5673/%2f}
OUT=$(mktemp -d)
TICKS=$(getconf CLK_TCK)

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

declare -A URI PID
BROKERS=()
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT
for entry in $WARREN_BINS; do
  name=${entry%%=*} bin=${entry#*=}
  port=$(free_port) admin=$(free_port)
  "$bin" --listen "127.0.0.1:$port" --management-listen "127.0.0.1:$admin" --prometheus-listen 127.0.0.1:0 --data-dir "$(mktemp -d)" \
    --log-level warn >"$OUT/$name.log" 2>&1 &
  PID[$name]=$! URI[$name]="amqp://guest:guest@127.0.0.1:$port/%2f"
  PIDS+=("$!") BROKERS+=("$name")
done
sleep 1
rabbit_port=${RABBIT_URI##*:}; rabbit_port=${rabbit_port%%/*}
if (echo >"/dev/tcp/127.0.0.1/$rabbit_port") 2>/dev/null; then
  PID[rabbitmq]=$(pgrep -f beam.smp | head -1) URI[rabbitmq]=$RABBIT_URI
  BROKERS+=(rabbitmq)
fi

declare -A LOADS=(
  [1-delayed-w1]="--mode delayed --consumers 0 --delay-min-ms 30000 --delay-max-ms 30000 --pmessages 1000000000 --publish-window 1"
  [2-plain-w1]="--consumers 0 --publish-window 1"
  [3-consume-w1]="--consumers 1 --publish-window 1"
  [4-pipelined]="--consumers 1"
  [5-pipelined-ack]="--size 1024 --producers 2 --consumers 2 --manual-ack --prefetch 100"
  [6-pipelined-cnf]="--size 1024 --producers 2 --consumers 2 --manual-ack --prefetch 100 --confirm"
)

for round in $(seq 1 "$ROUNDS"); do
  order=("${BROKERS[@]}")
  if ((round % 2 == 0)); then
    order=(); for ((i = ${#BROKERS[@]} - 1; i >= 0; i--)); do order+=("${BROKERS[i]}"); done
  fi
  for load in $(printf '%s\n' "${!LOADS[@]}" | sort | grep -E "${ONLY:-.}"); do
    for broker in "${order[@]}"; do
      [[ $broker == rabbitmq && $load == *delayed* ]] && continue
      before=$(cpu_ticks "${PID[$broker]}")
      # shellcheck disable=SC2086
      line=$("$PERF" --uri "${URI[$broker]}" --duration "$DURATION" --json ${LOADS[$load]} 2>/dev/null | tail -1)
      cpu=$(( $(cpu_ticks "${PID[$broker]}") - before ))
      echo "$line" | sed "s/^{/{\"broker\":\"$broker\",\"load\":\"$load\",\"round\":$round,\"cpu_ticks\":$cpu,/" >>"$OUT/results.jsonl"
    done
  done
done

python3 - "$OUT/results.jsonl" "$TICKS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ticks = int(sys.argv[2])
def med(rs, k):
    vals = [r[k] for r in rs if r.get(k) is not None]
    return statistics.median(vals) if vals else None
def fmt(v, spec):
    return format("-", ">" + spec.split(".")[0]) if v is None else format(v, spec)
print(f"{'load':<16} {'broker':<10} {'runs':>4} {'publish/s':>10} {'consume/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'broker CPU':>10}")
for load in sorted({r["load"] for r in rows}):
    for broker in dict.fromkeys(r["broker"] for r in rows):
        rs = [r for r in rows if r["load"] == load and r["broker"] == broker]
        if not rs:
            continue
        cpu = med([dict(c=r["cpu_ticks"] / ticks / r["elapsed_s"]) for r in rs], "c")
        cpu = None if cpu is None else cpu * 100
        consume = med(rs, "consume_rate") if rs[0]["consumers"] else None
        print(f"{load[2:]:<16} {broker:<10} {len(rs):>4} {fmt(med(rs, 'publish_rate'), '10.0f')} "
              f"{fmt(consume, '10.0f')} {fmt(med(rs, 'latency_p50_ms'), '8.3f')} "
              f"{fmt(med(rs, 'latency_p99_ms'), '8.3f')} {fmt(cpu, '9.0f')}%")
PY
echo "raw results: $OUT/results.jsonl"
