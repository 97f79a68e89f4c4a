"""The disk alarm, seen by pika: Warren started here, on ephemeral ports and a data directory
of its own, with --disk-free-limit 1000TB (more than any disk has, so the alarm is raised at
start) or the default limit.

A connection that publishes while the alarm is raised hears connection.blocked ("low on
disk") and is no longer read, so what it publishes after that reaches no queue; a connection
that only consumes keeps consuming and acking. Without the alarm nothing is blocked.

Needs the binary: WARREN_BIN, which tests/interop/run.sh exports when it builds Warren itself
(not when it is given an external AMQP_URI); skipped otherwise.
"""

import time
import uuid

import pika
import pika.exceptions
import pytest

from warren_process import BIN, Warren

pytestmark = pytest.mark.skipif(
    not BIN, reason="needs WARREN_BIN (set by run.sh when it builds and runs Warren itself)"
)

ALARM = "--disk-free-limit", "1000TB"
PERSISTENT = pika.BasicProperties(delivery_mode=2)


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


@pytest.fixture
def warrens():
    """Starts Warrens for a test and stops whatever is left of them after it."""
    started = []

    def start(data_dir, *flags):
        w = Warren(data_dir, *flags)
        started.append(w)
        return w

    yield start
    for w in started:
        w.kill()


def depth(conn, queue):
    ch = conn.channel()
    count = ch.queue_declare(queue, passive=True).method.message_count
    ch.close()
    return count


def wait_for(conn, condition, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    return condition()


def test_a_publishing_connection_is_blocked_and_a_consuming_one_is_not(tmp_path, warrens):
    w = warrens(tmp_path / "data", *ALARM)
    assert w.logged("disk alarm raised"), w.log()
    q = unique("alarm")
    consumer = w.connect()
    consumer.channel().queue_declare(q, durable=True)

    publisher = w.connect(blocked_connection_timeout=30)
    blocked = []
    publisher.add_on_connection_blocked_callback(
        lambda _conn, frame: blocked.append(frame.method.reason)
    )
    pch = publisher.channel()
    # The first publish is what makes this a publishing connection: it is read before the
    # block, so it may be enqueued; the alarm promises nothing about it.
    pch.basic_publish("", q, b"first", properties=PERSISTENT)
    assert wait_for(publisher, lambda: blocked), f"no connection.blocked; log:\n{w.log()}"
    assert blocked == ["low on disk"]

    for n in range(3):
        pch.basic_publish("", q, f"blocked-{n}".encode(), properties=PERSISTENT)
    publisher.process_data_events(time_limit=0.5)

    # The consumer-only connection is served: it declares, consumes and acks.
    cch = consumer.channel()
    got = []
    for method, _props, body in cch.consume(q, inactivity_timeout=0.5):
        if method is None:
            break
        got.append(body)
        cch.basic_ack(method.delivery_tag)
    cch.cancel()
    assert all(not b.startswith(b"blocked-") for b in got), got
    assert depth(consumer, q) == 0, "nothing published while blocked was enqueued"
    consumer.close()


def test_a_consumer_drains_a_durable_queue_under_the_alarm(tmp_path, warrens):
    data = tmp_path / "data"
    q = unique("kept")
    bodies = [f"kept-{n}".encode() for n in range(5)]

    w = warrens(data, "--disk-free-limit", "0")
    conn = w.connect()
    ch = conn.channel()
    ch.queue_declare(q, durable=True)
    ch.confirm_delivery()
    for body in bodies:
        ch.basic_publish("", q, body, properties=PERSISTENT)
    conn.close()
    w.stop()

    w = warrens(data, *ALARM)
    assert w.logged("disk alarm raised"), w.log()
    conn = w.connect(blocked_connection_timeout=30)
    blocked = []
    conn.add_on_connection_blocked_callback(
        lambda _conn, frame: blocked.append(frame.method.reason)
    )
    ch = conn.channel()
    try:
        kept = depth(conn, q)
    except pika.exceptions.ChannelClosedByBroker as e:
        pytest.fail(f"the durable queue was not restored ({e}); log:\n{w.log()}")
    assert kept == len(bodies), f"the durable queue kept its messages; log:\n{w.log()}"
    got = []
    for method, _props, body in ch.consume(q, inactivity_timeout=1.0):
        if method is None:
            break
        got.append(body)
        ch.basic_ack(method.delivery_tag)
        if len(got) == len(bodies):
            break
    ch.cancel()
    ch.close()
    assert got == bodies
    # Acked, not just delivered: closing the channel requeued nothing.
    assert depth(conn, q) == 0
    assert blocked == [], "a connection that only consumes is not blocked"
    conn.close()


def test_without_the_alarm_publishing_is_not_blocked(tmp_path, warrens):
    w = warrens(tmp_path / "data")
    q = unique("free")
    conn = w.connect(blocked_connection_timeout=30)
    blocked = []
    conn.add_on_connection_blocked_callback(
        lambda _conn, frame: blocked.append(frame.method.reason)
    )
    ch = conn.channel()
    ch.queue_declare(q, durable=True)
    ch.confirm_delivery()
    for n in range(3):
        # Raises on a nack; returns once acked.
        ch.basic_publish("", q, f"free-{n}".encode(), properties=PERSISTENT)
    conn.process_data_events(time_limit=0.3)
    assert blocked == []
    assert depth(conn, q) == 3
    conn.close()
    assert "disk alarm raised" not in w.log()
