#!/usr/bin/env bash
# TTL expiry at scale, Warren beside RabbitMQ: a batch of MESSAGES 16-byte messages published
# as fast as possible into a queue with x-message-ttl 1000 ms that dead-letters (default
# exchange) into a second queue, while the producers keep publishing. Reports the expiry rate
# (dead letters arriving per second: overall, median and peak over 100 ms windows), the
# publish rate before and during expiry, the longest publisher stall, and the count check.
#
#   perf/scripts/ttl-expiry.sh [ROUNDS] [MESSAGES] [extra warren-perf flags, e.g. --confirm]
#
# Builds the release binaries, starts Warren on WARREN_PORT (default 5700) and uses the
# RabbitMQ on RABBIT_URI (default port 5673) as the baseline. Each round runs both brokers,
# alternating which goes first; the table gives medians over the rounds that passed. A run
# that fails (a broker without TTL or dead-lettering, a failed count check) is shown with
# its error and left out of the medians; the script goes on with the other broker.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}; shift || true
MESSAGES=${1:-1000000}; shift || true
TARGET=${CARGO_TARGET_DIR:-target}
PERF="$TARGET/release/warren-perf"
WARREN="$TARGET/release/warren"
WARREN_PORT=${WARREN_PORT:-5700}
RABBIT_URI=${RABBIT_URI:-amqp://guest:guest@127.0.0.1:5673/%2f}
WARREN_URI="amqp://guest:guest@127.0.0.1:$WARREN_PORT/%2f"
OUT=$(mktemp -d)

cargo build --release -q -p warren -p warren-perf

DATA=$(mktemp -d)
"$WARREN" --listen "127.0.0.1:$WARREN_PORT" --management-listen "127.0.0.1:$((WARREN_PORT + 10000))" --prometheus-listen 127.0.0.1:0 \
  --data-dir "$DATA" --log-level warn >"$OUT/warren.log" 2>&1 &
WARREN_PID=$!
trap 'kill $WARREN_PID 2>/dev/null || true' EXIT
sleep 1
kill -0 $WARREN_PID 2>/dev/null || echo "warren did not start (see $OUT/warren.log); its runs will fail" >&2

for round in $(seq 1 "$ROUNDS"); do
  if ((round % 2)); then order="warren rabbitmq"; else order="rabbitmq warren"; fi
  for broker in $order; do
    uri=$WARREN_URI; [ "$broker" = rabbitmq ] && uri=$RABBIT_URI
    log="$OUT/$broker-$round.log"
    echo "round $round: $broker" >&2
    # The summary is the last stdout line; a failed run prints its reason on stderr last.
    if "$PERF" ttl --uri "$uri" --messages "$MESSAGES" --ttl-ms 1000 --size 16 --producers 2 \
         --json "$@" >"$log" 2>"$log.err"; then
      tail -1 "$log" | sed "s/^{/{\"broker\":\"$broker\",\"round\":$round,/" >>"$OUT/results.jsonl"
    else
      why=$(tail -1 "$log.err" | sed 's/\\/\\\\/g; s/"/\\"/g')
      echo "{\"broker\":\"$broker\",\"round\":$round,\"failed\":\"$why\"}" >>"$OUT/results.jsonl"
    fi
  done
done

python3 - "$OUT/results.jsonl" "$MESSAGES" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"batch of {int(sys.argv[2]):,} messages, TTL 1000 ms, 2 producers, 16 B; medians over passed rounds")
cols = [("expiry_rate_overall", "expiry/s", 10), ("expiry_rate_median", "median/s", 10),
        ("expiry_rate_peak", "peak/s", 10), ("publish_rate_before", "pub before", 11),
        ("publish_rate_during", "pub during", 11), ("publish_rate_during_min", "pub min", 9),
        ("longest_stall_ms", "stall ms", 9)]
print(f"{'broker':<9} {'passed':>6} " + " ".join(f"{h:>{w}}" for _, h, w in cols))
for broker in ("warren", "rabbitmq"):
    ok = [r for r in rows if r["broker"] == broker and "failed" not in r]
    runs = sum(r["broker"] == broker for r in rows)
    cells = []
    for key, _, width in cols:
        values = [r[key] for r in ok if r.get(key) is not None]
        cells.append(f"{statistics.median(values):>{width}.0f}" if values else f"{'-':>{width}}")
    print(f"{broker:<9} {f'{len(ok)}/{runs}':>6} " + " ".join(cells))
for r in rows:
    if "failed" in r:
        print(f"{r['broker']} round {r['round']} failed: {r['failed']}")
PY
echo "raw results: $OUT/results.jsonl (logs beside it)"
