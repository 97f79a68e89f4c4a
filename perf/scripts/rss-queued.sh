#!/usr/bin/env bash
# Broker memory with N queued messages of SIZE bytes and no consumer: RSS before and after.
#
#   perf/scripts/rss-queued.sh PID URI [N] [SIZE]
#
# PID is the broker process (Warren's `warren`, RabbitMQ's `beam.smp`); URI its AMQP URI.
set -euo pipefail
cd "$(dirname "$0")/../.."
PID=$1 URI=$2 N=${3:-1000000} SIZE=${4:-16}
PERF="${CARGO_TARGET_DIR:-target}/release/warren-perf"
rss() { awk '/VmRSS/ {print $2}' "/proc/$PID/status"; }
before=$(rss)
"$PERF" --uri "$URI" --producers 1 --consumers 0 --size "$SIZE" --pmessages "$N" --duration 120 \
  --queue warren-perf-rss --keep-queue --json 2>/dev/null | tail -1
sleep 2
after=$(rss)
echo "rss_before_kib=$before rss_after_kib=$after delta_bytes_per_message=$(( (after - before) * 1024 / N ))"
