"""The Prometheus endpoint scraped as a monitoring system does, with traffic from pika:
rabbitmq_prometheus's family names and types in /metrics, and a queue pika fills seen in
/metrics/per-object with its vhost and queue labels.

The broker: AMQP_URI (as tests/interop/run.sh exports it) and its endpoint at
PROMETHEUS_URL. Against RabbitMQ (which refreshes its queue figures every few seconds):
  AMQP_URI=amqp://guest:guest@127.0.0.1:5672/%2f PROMETHEUS_URL=http://127.0.0.1:15692 \\
    python -m pytest tests/interop/test_prometheus.py
"""

import os
import re
import time
import urllib.request
import uuid

import pika
import pytest

PROMETHEUS_URL = os.environ.get("PROMETHEUS_URL", "").rstrip("/")

pytestmark = pytest.mark.skipif(
    not PROMETHEUS_URL, reason="needs PROMETHEUS_URL (the Prometheus endpoint, exported by run.sh)"
)

FAMILIES = {
    "rabbitmq_connections": "gauge",
    "rabbitmq_queues": "gauge",
    "rabbitmq_queue_messages_ready": "gauge",
    "rabbitmq_global_messages_received_total": "counter",
    "rabbitmq_global_messages_delivered_total": "counter",
    "rabbitmq_process_resident_memory_bytes": "gauge",
    "rabbitmq_build_info": "untyped",
}

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(path):
    """(content type, {family: type}, [(name, {label: value}, value)])."""
    with urllib.request.urlopen(PROMETHEUS_URL + path, timeout=10) as response:
        content_type = response.headers.get("Content-Type", "")
        text = response.read().decode()
    types, samples = {}, []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
        elif line and not line.startswith("#"):
            m = SAMPLE.match(line)
            assert m, line
            labels = dict(LABEL.findall(m.group(2) or ""))
            samples.append((m.group(1), labels, float(m.group(3))))
    return content_type, types, samples


def connect():
    return pika.BlockingConnection(pika.URLParameters(os.environ["AMQP_URI"]))


def test_rabbitmq_families_are_served_with_their_types():
    content_type, types, _ = scrape("/metrics")
    assert content_type.startswith("text/plain; version=0.0.4"), content_type
    for name, kind in FAMILIES.items():
        assert types.get(name) == kind, (name, types.get(name))


def test_a_queue_filled_by_pika_is_seen_per_object():
    queue = f"prom-{uuid.uuid4().hex[:12]}"
    connection = connect()
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare(queue)
        for i in range(3):
            channel.basic_publish("", queue, f"m{i}".encode())
        deadline = time.monotonic() + 30
        while True:
            _, _, samples = scrape("/metrics/per-object")
            ready = [v for (name, labels, v) in samples
                     if name == "rabbitmq_queue_messages_ready"
                     and labels == {"vhost": "/", "queue": queue}]
            if ready == [3.0]:
                break
            assert time.monotonic() < deadline, f"ready of {queue}: {ready}"
            time.sleep(0.2)
        channel.queue_delete(queue)
    finally:
        connection.close()
