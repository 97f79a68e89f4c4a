"""Interop suite: a pika (Python) client against the broker named by AMQP_URI.

Written for RabbitMQ first (AMQP_URI=amqp://guest:guest@127.0.0.1:5673/%2f python3 -m pytest
tests/interop) and run against Warren by tests/interop/run.sh. Every name is unique per test so
the suite can share a broker with other runs.
"""

import os
import uuid

import pika
import pika.exceptions
import pytest

URI = os.environ.get("AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/%2f")


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


@pytest.fixture
def conn():
    c = pika.BlockingConnection(pika.URLParameters(URI))
    yield c
    if c.is_open:
        c.close()


@pytest.fixture
def ch(conn):
    return conn.channel()


def closed_with(excinfo, code, text_prefix=None):
    err = excinfo.value
    assert err.reply_code == code, (err.reply_code, err.reply_text)
    if text_prefix is not None:
        assert err.reply_text.startswith(text_prefix), err.reply_text


def drain(ch, queue):
    bodies = []
    while True:
        method, _props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return bodies
        bodies.append(body)


def test_connection_negotiates_and_announces_capabilities(conn):
    props = conn._impl.server_properties
    caps = props["capabilities"]
    for cap in (
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
        "per_consumer_qos",
    ):
        assert caps.get(cap) is True, cap
    assert conn._impl.params.frame_max > 0


def test_bad_credentials_are_refused():
    params = pika.URLParameters(URI.replace("guest:guest", "guest:wrong"))
    # pika reports a 403 close during the handshake as a probable authentication error.
    with pytest.raises(
        (pika.exceptions.ProbableAuthenticationError, pika.exceptions.AuthenticationError)
    ) as excinfo:
        pika.BlockingConnection(params)
    assert "403" in str(excinfo.value) and "ACCESS_REFUSED" in str(excinfo.value)


def test_declare_publish_consume_ack(ch):
    q = ch.queue_declare(queue="", exclusive=True).method.queue
    assert q.startswith("amq.gen-") and len(q) == len("amq.gen-") + 22
    x = unique("x")
    ch.exchange_declare(exchange=x, exchange_type="direct", auto_delete=True)
    ch.queue_bind(queue=q, exchange=x, routing_key="k")
    for i in range(5):
        ch.basic_publish(exchange=x, routing_key="k", body=str(i).encode())
    got = []
    for method, _props, body in ch.consume(q, inactivity_timeout=5):
        assert method is not None, "timed out waiting for a delivery"
        assert method.exchange == x and method.routing_key == "k"
        assert not method.redelivered
        got.append(body)
        ch.basic_ack(method.delivery_tag)
        if len(got) == 5:
            break
    ch.cancel()
    assert got == [b"0", b"1", b"2", b"3", b"4"]


def test_properties_and_headers_round_trip(ch):
    q = ch.queue_declare(queue="", exclusive=True).method.queue
    props = pika.BasicProperties(
        content_type="application/json",
        content_encoding="utf-8",
        headers={"s": "text", "n": 42, "neg": -7, "b": True, "nested": {"a": [1, "two"]}},
        delivery_mode=2,
        priority=3,
        correlation_id="c-1",
        reply_to="r",
        expiration="60000",
        message_id="m-1",
        timestamp=1700000000,
        type="kind",
        user_id="guest",
        app_id="pika-tests",
    )
    ch.basic_publish(exchange="", routing_key=q, body=b"{}", properties=props)
    method, got, body = ch.basic_get(q, auto_ack=True)
    assert method is not None and body == b"{}"
    for field in (
        "content_type",
        "content_encoding",
        "delivery_mode",
        "priority",
        "correlation_id",
        "reply_to",
        "expiration",
        "message_id",
        "timestamp",
        "type",
        "user_id",
        "app_id",
    ):
        assert getattr(got, field) == getattr(props, field), field
    assert got.headers["s"] == b"text" or got.headers["s"] == "text"
    assert got.headers["n"] == 42 and got.headers["neg"] == -7 and got.headers["b"] is True
    assert got.headers["nested"]["a"][0] == 1


def test_large_body_arrives_intact(ch):
    q = ch.queue_declare(queue="", exclusive=True).method.queue
    body = bytes(i % 251 for i in range((1 << 20) + 3))
    ch.basic_publish(exchange="", routing_key=q, body=body)
    method, _props, got = ch.basic_get(q, auto_ack=True)
    assert method is not None
    assert got == body


def test_confirms_ack_routable_and_return_unroutable_mandatory(ch):
    ch.confirm_delivery()
    q = ch.queue_declare(queue="", exclusive=True).method.queue
    ch.basic_publish(exchange="", routing_key=q, body=b"ok", mandatory=True)
    with pytest.raises(pika.exceptions.UnroutableError) as excinfo:
        ch.basic_publish(exchange="", routing_key=unique("nowhere"), body=b"lost", mandatory=True)
    returned = excinfo.value.messages[0]
    assert returned.method.reply_code == 312
    assert returned.method.reply_text == "NO_ROUTE"
    assert returned.body == b"lost"
    # Non-mandatory unroutable is simply acked.
    ch.basic_publish(exchange="", routing_key=unique("nowhere"), body=b"dropped")
    assert drain(ch, q) == [b"ok"]


def test_basic_get_and_get_empty(ch):
    q = ch.queue_declare(queue="", exclusive=True).method.queue
    assert ch.basic_get(q) == (None, None, None)
    ch.basic_publish(exchange="", routing_key=q, body=b"a")
    ch.basic_publish(exchange="", routing_key=q, body=b"b")
    ch.queue_declare(queue=q, passive=True)  # a round trip: both are enqueued
    method, _props, body = ch.basic_get(q)
    assert body == b"a" and method.message_count == 1
    ch.basic_ack(method.delivery_tag)
    method, _props, body = ch.basic_get(q, auto_ack=True)
    assert body == b"b" and method.message_count == 0
    assert ch.basic_get(q) == (None, None, None)


def test_nack_requeue_redelivers_with_redelivered_flag(ch):
    q = ch.queue_declare(queue="", exclusive=True).method.queue
    ch.basic_publish(exchange="", routing_key=q, body=b"again")
    method, _props, _body = next(ch.consume(q, inactivity_timeout=5))
    assert method is not None and not method.redelivered
    ch.basic_nack(method.delivery_tag, requeue=True)
    method, _props, body = next(ch.consume(q, inactivity_timeout=5))
    assert method is not None and method.redelivered and body == b"again"
    ch.basic_ack(method.delivery_tag)
    ch.cancel()


def test_unacked_messages_come_back_redelivered_after_channel_close(conn):
    ch = conn.channel()
    q = ch.queue_declare(queue="", exclusive=True).method.queue
    ch.basic_publish(exchange="", routing_key=q, body=b"held")
    other = conn.channel()
    method, _props, _body = other.basic_get(q)
    assert method is not None
    other.close()
    method, _props, body = ch.basic_get(q, auto_ack=True)
    assert method is not None and method.redelivered and body == b"held"


def test_prefetch_limits_unacked_deliveries(ch):
    q = ch.queue_declare(queue="", exclusive=True).method.queue
    for i in range(5):
        ch.basic_publish(exchange="", routing_key=q, body=str(i).encode())
    ch.basic_qos(prefetch_count=2)
    got = []

    def on_message(chan, method, _props, body):
        got.append((method.delivery_tag, body))

    ch.basic_consume(q, on_message)
    ch.connection.process_data_events(time_limit=0.3)
    assert len(got) == 2
    ch.basic_ack(got[-1][0], multiple=True)
    ch.connection.process_data_events(time_limit=0.3)
    assert len(got) == 4


def test_passive_declare_of_missing_queue_is_404(ch):
    q = unique("missing")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
        ch.queue_declare(queue=q, passive=True)
    closed_with(excinfo, 404, f"NOT_FOUND - no queue '{q}' in vhost '/'")


def test_inequivalent_redeclare_is_406(ch, conn):
    x = unique("x")
    ch.exchange_declare(exchange=x, exchange_type="direct", auto_delete=True)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
        ch.exchange_declare(exchange=x, exchange_type="fanout", auto_delete=True)
    closed_with(
        excinfo,
        406,
        f"PRECONDITION_FAILED - inequivalent arg 'type' for exchange '{x}' in vhost '/'",
    )
    conn.channel().exchange_delete(x)


def test_reserved_amq_prefix_is_403(ch):
    name = unique("amq.mine")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
        ch.exchange_declare(exchange=name, exchange_type="direct")
    closed_with(excinfo, 403, "ACCESS_REFUSED")


def test_binding_to_the_default_exchange_is_403(ch):
    q = ch.queue_declare(queue="", exclusive=True).method.queue
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
        ch.queue_bind(queue=q, exchange="", routing_key=q)
    closed_with(excinfo, 403, "ACCESS_REFUSED - operation not permitted on the default exchange")


def test_exclusive_queue_is_locked_to_other_connections_405(ch):
    q = unique("excl")
    ch.queue_declare(queue=q, exclusive=True)
    other = pika.BlockingConnection(pika.URLParameters(URI))
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
            other.channel().queue_declare(queue=q, exclusive=True)
        closed_with(excinfo, 405, "RESOURCE_LOCKED")
    finally:
        other.close()


def test_unknown_delivery_tag_closes_channel_406(ch):
    ch.basic_ack(delivery_tag=99)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
        ch.queue_declare(queue="", exclusive=True)
    closed_with(excinfo, 406, "PRECONDITION_FAILED - unknown delivery tag 99")


def test_tx_commit_and_rollback(conn):
    ch = conn.channel()
    q = ch.queue_declare(queue="", exclusive=True).method.queue
    ch.tx_select()
    ch.basic_publish(exchange="", routing_key=q, body=b"rolled back")
    ch.tx_rollback()
    ch.basic_publish(exchange="", routing_key=q, body=b"committed")
    ch.tx_commit()
    assert drain(conn.channel(), q) == [b"committed"]


def test_confirm_and_tx_on_one_channel_is_406(ch):
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
        ch.tx_select()
    closed_with(excinfo, 406, "PRECONDITION_FAILED")


def test_alternate_exchange_and_exchange_to_exchange_binding(ch):
    ae = unique("ae")
    ch.exchange_declare(exchange=ae, exchange_type="fanout", auto_delete=True)
    main = unique("main")
    ch.exchange_declare(
        exchange=main,
        exchange_type="direct",
        auto_delete=True,
        arguments={"alternate-exchange": ae},
    )
    dest = unique("dest")
    ch.exchange_declare(exchange=dest, exchange_type="fanout", auto_delete=True)
    ch.exchange_bind(destination=dest, source=main, routing_key="known")
    unrouted = ch.queue_declare(queue="", exclusive=True).method.queue
    ch.queue_bind(queue=unrouted, exchange=ae)
    routed = ch.queue_declare(queue="", exclusive=True).method.queue
    ch.queue_bind(queue=routed, exchange=dest)
    ch.confirm_delivery()
    ch.basic_publish(exchange=main, routing_key="known", body=b"via e2e")
    ch.basic_publish(exchange=main, routing_key="unknown", body=b"via ae", mandatory=True)
    assert drain(ch, routed) == [b"via e2e"]
    assert drain(ch, unrouted) == [b"via ae"]


def test_deleting_a_queue_cancels_its_consumer(conn):
    ch = conn.channel()
    q = unique("doomed")
    ch.queue_declare(queue=q)
    cancelled = []
    ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    tag = ch.basic_consume(q, lambda *a: None)
    conn.channel().queue_delete(q)
    conn.process_data_events(time_limit=0.5)
    assert cancelled == [tag]


def test_retry_through_a_ttl_queue_counts_deaths_in_x_death(ch):
    """The retry-with-backoff pattern client libraries build on dead-lettering: a rejected
    message waits in a TTL'd retry queue that dead-letters it back to the work queue, and the
    x-death entry for (work, rejected) counts the attempts."""
    work, retry = unique("work"), unique("retry")
    ch.queue_declare(
        work,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": retry},
    )
    ch.queue_declare(
        retry,
        arguments={
            "x-message-ttl": 50,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": work,
        },
    )
    ch.basic_publish("", work, b"job", pika.BasicProperties(headers={"attempt": "first"}))
    counts = []
    for _ in range(3):
        for _ in range(200):
            method, props, body = ch.basic_get(work)
            if method is not None:
                break
            ch.connection.sleep(0.02)
        assert method is not None, "the message came back from the retry queue"
        assert body == b"job"
        deaths = (props.headers or {}).get("x-death", [])
        counts.append([(d["queue"], d["reason"], d["count"]) for d in deaths])
        ch.basic_reject(method.delivery_tag, requeue=False)
    assert counts[0] == []
    assert counts[1] == [(retry, "expired", 1), (work, "rejected", 1)]
    assert counts[2] == [(retry, "expired", 2), (work, "rejected", 2)]
    assert props.headers["x-first-death-reason"] == "rejected"
    assert props.headers["x-first-death-queue"] == work
    assert props.headers["attempt"] == "first"


def test_max_length_reject_publish_nacks_confirmed_publishes(ch):
    q = unique("full")
    ch.queue_declare(q, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    ch.confirm_delivery()
    ch.basic_publish("", q, b"fits")
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", q, b"refused")
    assert drain(ch, q) == [b"fits"]
