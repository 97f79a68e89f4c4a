#!/usr/bin/env bash
# Two Warren builds side by side under the same loads: how a change moved the hot path.
#
#   perf/scripts/build-vs-build.sh BEFORE_BIN AFTER_BIN [ROUNDS] [DURATION_S]
#
# BEFORE_BIN and AFTER_BIN are `warren` release binaries (e.g. one built from a worktree of
# the commit before the change). Both run at once on free loopback ports; each round runs
# every load against both, alternating which goes first, and the table gives the median over
# rounds. Needs a release `warren-perf` (`cargo build --release -p warren-perf`). ONLY=1 (a
# prefix of the load names below) runs only the matching loads.
set -euo pipefail
cd "$(dirname "$0")/../.."
BEFORE=${1:?usage: build-vs-build.sh BEFORE_BIN AFTER_BIN [ROUNDS] [DURATION_S]}
AFTER=${2:?usage: build-vs-build.sh BEFORE_BIN AFTER_BIN [ROUNDS] [DURATION_S]}
ROUNDS=${3:-5}
DURATION=${4:-10}
PERF="${CARGO_TARGET_DIR:-target}/release/warren-perf"
OUT=$(mktemp -d)

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT
declare -A URI
for which in before after; do
  bin=$BEFORE; [ "$which" = after ] && bin=$AFTER
  port=$(free_port)
  # Builds before issue 11 call the HTTP listener --admin-listen.
  http=--management-listen; "$bin" --help | grep -q -- --management-listen || http=--admin-listen
  # Builds before issue 13 have no Prometheus listener; later ones get a free port for it.
  prom=(); "$bin" --help | grep -q -- --prometheus-listen && prom=(--prometheus-listen 127.0.0.1:0)
  "$bin" --listen "127.0.0.1:$port" "$http" "127.0.0.1:$(free_port)" "${prom[@]}" \
    --data-dir "$(mktemp -d)" --log-level warn >"$OUT/$which.log" 2>&1 &
  PIDS+=($!)
  URI[$which]="amqp://guest:guest@127.0.0.1:$port/%2f"
done
sleep 1

declare -A LOADS=(
  [1-transient-16B-1p1c-autoack]="--size 16 --producers 1 --consumers 1"
  [2-1KiB-2p2c-manualack-prefetch100]="--size 1024 --producers 2 --consumers 2 --manual-ack --prefetch 100"
  [3-1KiB-2p2c-manualack-prefetch100-confirms]="--size 1024 --producers 2 --consumers 2 --manual-ack --prefetch 100 --confirm"
)

for round in $(seq 1 "$ROUNDS"); do
  for load in $(printf '%s\n' "${!LOADS[@]}" | sort | grep "^${ONLY:-}"); do
    if ((round % 2)); then order="before after"; else order="after before"; fi
    for which in $order; do
      # shellcheck disable=SC2086
      "$PERF" --uri "${URI[$which]}" --duration "$DURATION" --json ${LOADS[$load]} 2>/dev/null \
        | tail -1 | sed "s/^{/{\"build\":\"$which\",\"load\":\"$load\",/" >>"$OUT/results.jsonl"
    done
  done
done

python3 - "$OUT/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"{'load':<46} {'build':<7} {'publish/s':>10} {'consume/s':>10} {'p50 ms':>8} {'p99 ms':>8}  rounds (publish/s)")
for load in sorted({r["load"] for r in rows}):
    for build in ("before", "after"):
        rs = [r for r in rows if r["load"] == load and r["build"] == build]
        med = lambda k: statistics.median(r[k] for r in rs)
        each = " ".join(f"{r['publish_rate']:.0f}" for r in rs)
        print(f"{load:<46} {build:<7} {med('publish_rate'):>10.0f} {med('consume_rate'):>10.0f} "
              f"{med('latency_p50_ms'):>8.1f} {med('latency_p99_ms'):>8.1f}  {each}")
PY
echo "raw results: $OUT/results.jsonl"
