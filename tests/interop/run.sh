#!/usr/bin/env bash
# Runs the pika interop suite (tests/interop/test_pika.py) against a freshly built Warren.
#
#   tests/interop/run.sh            # build warren, start it on a free port, run the suite
#   AMQP_URI=amqp://... run.sh      # run the suite against that broker instead (e.g. RabbitMQ)
#
# test_disk_alarm.py and test_memory_alarm.py start Warrens of their own (the binary in
# WARREN_BIN, exported here when this script builds Warren); with an external AMQP_URI they
# are skipped. test_tenancy.py uses
# the management API at MGMT_URL (exported here for the Warren it starts; with an external
# AMQP_URI, pass MGMT_URL too or it is skipped).
#
# Installs pika, pytest, trustme (test_tls.py's certificates) and selenium (test_console.py's
# browser driver) into target/interop-venv (falling back to `pip install --user`), Debian's
# chromium and chromium-driver when they are missing (test_console.py), and exits with the
# suite's status; "no tests collected" counts as a failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

# --- Python with pika and pytest --------------------------------------------------------
VENV="$ROOT/target/interop-venv"
PY=""
if [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" >/dev/null 2>&1; then
    PY="$VENV/bin/python"
    if ! "$PY" -c 'import pika, pytest, trustme, selenium' >/dev/null 2>&1; then
        "$PY" -m pip install --quiet --disable-pip-version-check pika pytest trustme selenium
    fi
else
    echo "interop: no venv support, installing pika and pytest with pip --user" >&2
    PY=python3
    if ! "$PY" -c 'import pika, pytest, trustme, selenium' >/dev/null 2>&1; then
        "$PY" -m pip install --quiet --user pika pytest trustme selenium ||
            "$PY" -m pip install --quiet --user --break-system-packages pika pytest trustme selenium
    fi
fi

# --- rabbitmqadmin -------------------------------------------------------------------------
# The stock management CLI (test_rabbitmqadmin.py). It is one Python file in Debian's
# rabbitmq-server package: when it is not installed, the package is downloaded (not
# installed, so no Erlang) and the script taken out of it.
if [ -z "${RABBITMQADMIN:-}" ] && ! command -v rabbitmqadmin >/dev/null 2>&1; then
    FETCH="$ROOT/target/rabbitmqadmin-pkg"
    if [ ! -x "$FETCH/usr/bin/rabbitmqadmin" ]; then
        mkdir -p "$FETCH"
        (cd "$FETCH" && { apt-get download rabbitmq-server >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 && apt-get download rabbitmq-server >/dev/null 2>&1; }; } &&
            dpkg-deb -x rabbitmq-server_*.deb . && rm -f rabbitmq-server_*.deb) ||
            echo "interop: could not fetch rabbitmqadmin; its tests will be skipped" >&2
    fi
    if [ -x "$FETCH/usr/bin/rabbitmqadmin" ]; then
        export RABBITMQADMIN="$FETCH/usr/bin/rabbitmqadmin"
    fi
fi

# --- A browser ------------------------------------------------------------------------------
# test_console.py drives the web console in headless Chromium through chromedriver: Debian's
# packages, installed when missing (CI runs as root). Without them its tests are skipped.
if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        { apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 &&
                apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1; }; } ||
            echo "interop: could not install chromium; the console's browser tests will be skipped" >&2
    else
        echo "interop: chromium/chromedriver missing and not installable here; the console's browser tests will be skipped" >&2
    fi
fi

# --- The broker ---------------------------------------------------------------------------
BROKER_PID=""
cleanup() {
    if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

if [ -z "${AMQP_URI:-}" ]; then
    cargo build --quiet -p warren --bin warren
    BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/warren"
    export WARREN_BIN="$BIN"
    PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
    MGMT_PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
    PROM_PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
    DATA_DIR=$(mktemp -d "${TMPDIR:-/tmp}/warren-interop.XXXXXX")
    LOG="$ROOT/target/interop-warren.log"
    # The management API on a free port rather than the default 15672, which may be taken on
    # a CI machine; test_tenancy.py makes its users and vhosts through it. Prometheus likewise
    # off its default 15692 (test_prometheus.py scrapes it).
    "$BIN" --listen "127.0.0.1:$PORT" --management-listen "127.0.0.1:$MGMT_PORT" \
        --prometheus-listen "127.0.0.1:$PROM_PORT" --data-dir "$DATA_DIR" >"$LOG" 2>&1 &
    BROKER_PID=$!
    # Wait (up to 30 s) for the port to accept connections.
    for _ in $(seq 1 300); do
        if "$PY" -c "import socket,sys; s=socket.socket(); s.settimeout(0.2); sys.exit(s.connect_ex(('127.0.0.1', $PORT)))" 2>/dev/null; then
            break
        fi
        if ! kill -0 "$BROKER_PID" 2>/dev/null; then
            echo "interop: warren exited before listening; its log:" >&2
            cat "$LOG" >&2
            exit 1
        fi
        sleep 0.1
    done
    export AMQP_URI="amqp://guest:guest@127.0.0.1:$PORT/%2f"
    export MGMT_URL="http://127.0.0.1:$MGMT_PORT"
    export PROMETHEUS_URL="http://127.0.0.1:$PROM_PORT"
else
    # An external broker: the disk-alarm tests, which need Warren's binary, are skipped.
    unset WARREN_BIN
fi

# --- The suite ----------------------------------------------------------------------------
echo "interop: running pika suite against $AMQP_URI" >&2
set +e
"$PY" -m pytest -q tests/interop
STATUS=$?
set -e
if [ "$STATUS" -eq 5 ]; then
    echo "interop: pytest collected no tests" >&2
    STATUS=1
fi
if [ "$STATUS" -ne 0 ] && [ -n "$BROKER_PID" ]; then
    echo "interop: warren's log is in $LOG" >&2
fi
exit "$STATUS"
