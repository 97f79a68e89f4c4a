"""The memory alarm, seen by pika: Warren started here (on ephemeral ports, a data directory
of its own) with an absolute --memory-high-watermark a little above what an idle broker of
the same build holds, so that a few dozen MiB of queued messages raise it.

A publishing connection then hears connection.blocked ("low on memory") and is not read; a
consumer on another connection drains the queue, the broker's memory falls back under the
watermark, and the publisher hears connection.unblocked.

Needs the binary: WARREN_BIN, which tests/interop/run.sh exports when it builds Warren itself
(not when it is given an external AMQP_URI); skipped otherwise.
"""

import time
import uuid

import pytest

from warren_process import BIN, Warren

pytestmark = pytest.mark.skipif(
    not BIN, reason="needs WARREN_BIN (set by run.sh when it builds and runs Warren itself)"
)

BODY = b"m" * (64 * 1024)
# Above the idle broker's resident set by this much: a backlog of a few hundred 64 KiB
# messages raises the alarm.
HEADROOM = 64 << 20


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def test_a_publisher_is_blocked_above_the_watermark_and_unblocked_once_drained(tmp_path):
    idle = Warren(tmp_path / "idle", "--memory-high-watermark", "1.0")
    time.sleep(0.5)
    idle_rss = rss(idle.proc.pid)
    idle.stop()
    watermark = idle_rss + HEADROOM
    w = Warren(tmp_path / "data", "--memory-high-watermark", str(watermark))
    try:
        assert w.logged("memory high watermark set to"), w.log()
        q = f"mem-{uuid.uuid4().hex[:12]}"
        publisher = w.connect(blocked_connection_timeout=60)
        events = []
        publisher.add_on_connection_blocked_callback(
            lambda _c, frame: events.append(("blocked", frame.method.reason))
        )
        publisher.add_on_connection_unblocked_callback(
            lambda _c, _frame: events.append(("unblocked",))
        )
        pch = publisher.channel()
        pch.queue_declare(q)
        sent = 0
        # At most ~8x the headroom: the alarm must have been raised long before.
        while not events and sent < 8 * HEADROOM // len(BODY):
            pch.basic_publish("", q, BODY)
            sent += 1
            publisher.process_data_events(time_limit=0)
        deadline = time.monotonic() + 10
        while not events and time.monotonic() < deadline:
            publisher.process_data_events(time_limit=0.05)
        assert events == [("blocked", "low on memory")], f"after {sent} publishes; log:\n{w.log()}"
        assert w.proc.poll() is None, "the broker is alive"

        # Another connection drains the queue while the publisher is blocked.
        consumer = w.connect()
        cch = consumer.channel()
        drained = 0
        for method, _props, _body in cch.consume(q, auto_ack=True, inactivity_timeout=2.0):
            if method is None:
                break
            drained += 1
        cch.cancel()
        assert drained > 0
        deadline = time.monotonic() + 30
        while ("unblocked",) not in events and time.monotonic() < deadline:
            publisher.process_data_events(time_limit=0.1)
        assert events[-1] == ("unblocked",), f"{events}; log:\n{w.log()}"
        assert "memory alarm cleared" in w.log()
        # Publishing works again.
        pch.confirm_delivery()
        pch.basic_publish("", q, b"after")
        consumer.close()
        publisher.close()
    finally:
        w.kill()
