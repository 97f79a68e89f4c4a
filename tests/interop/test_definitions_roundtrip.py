"""Definitions moving between RabbitMQ and Warren: a RabbitMQ 3.10 export imported into
Warren (at start with --load-definitions, and with POST /api/definitions), its user logging
in over AMQP with pika, its exchange, queue and binding routing a message, and Warren's own
export holding the same objects.

Two tests. One reads a sample export committed under fixtures/ (made from RabbitMQ 3.10.8
with only the defs- objects and guest), so it needs no RabbitMQ. The other makes the objects
on a live RabbitMQ (REFERENCE_MGMT, e.g. http://127.0.0.1:15673, guest/guest, with AMQP on
REFERENCE_AMQP_PORT or 5673) and exports them itself; it is skipped when REFERENCE_MGMT is
not set or does not answer. Both need the binary: WARREN_BIN (set by run.sh).
"""

import base64
import json
import os
import pathlib
import urllib.error
import urllib.request

import pika
import pika.exceptions
import pytest

from warren_process import BIN, Warren

REFERENCE = os.environ.get("REFERENCE_MGMT", "").rstrip("/")
FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "rabbitmq-3.10-definitions.json"

pytestmark = pytest.mark.skipif(
    not BIN, reason="needs WARREN_BIN (set by run.sh when it builds and runs Warren itself)"
)

USER, PASSWORD, VHOST = "defs-ref", "defs-pw", "defs-vh"
QUEUE, EXCHANGE, KEY = "defs-q", "defs-topic", "a.*.c"


def call(base, method, path, body=None, user="guest", password="guest"):
    """One API request: (status, parsed JSON or None)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, text = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read()
    return status, (json.loads(text) if text else None)


def assert_routes(port):
    """defs-ref logs in to defs-vh, publishes to the topic exchange and gets it back."""
    credentials = pika.PlainCredentials(USER, PASSWORD)
    params = pika.ConnectionParameters("127.0.0.1", port, VHOST, credentials)
    connection = pika.BlockingConnection(params)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(EXCHANGE, "a.b.c", b"through-the-binding", mandatory=True)
        method, _, body = channel.basic_get(QUEUE, auto_ack=True)
        assert method is not None, "the message was not routed to the imported queue"
        assert body == b"through-the-binding"
    finally:
        connection.close()


def only_defs(defs):
    """The parts of an export this test made, in a form two brokers' exports compare in:
    lists sorted, vhosts by name only (3.10 writes no metadata), version fields dropped."""
    def ours(o):
        return o.get("vhost") == VHOST

    def ordered(items):
        return sorted(items, key=lambda o: json.dumps(o, sort_keys=True))

    users = [{k: u[k] for k in ("name", "password_hash", "hashing_algorithm")}
             | {"tags": sorted(u["tags"] if isinstance(u["tags"], list)
                               else [t for t in u["tags"].split(",") if t])}
             for u in defs["users"] if u["name"] == USER]
    return {
        "users": users,
        "vhosts": [v["name"] for v in defs["vhosts"] if v["name"] == VHOST],
        "permissions": ordered(p for p in defs["permissions"] if ours(p)),
        "queues": ordered(q for q in defs["queues"] if ours(q)),
        "exchanges": ordered(x for x in defs["exchanges"] if ours(x)),
        "bindings": ordered(b for b in defs["bindings"] if ours(b)),
    }


def check_both_ways_in(defs, tmp_path):
    """Imports `defs` into one Warren at start and into another over HTTP; each routes, and
    each exports the same objects."""
    expected = only_defs(defs)
    path = tmp_path / "definitions.json"
    path.write_text(json.dumps(defs))
    at_start = Warren(tmp_path / "loaded", "--load-definitions", str(path))
    try:
        assert_routes(at_start.port)
        status, exported = call(at_start.management_url, "GET", "/api/definitions")
        assert status == 200
        assert only_defs(exported) == expected
    finally:
        at_start.stop()
    posted = Warren(tmp_path / "posted")
    try:
        status, body = call(posted.management_url, "POST", "/api/definitions", defs)
        assert status == 204, body
        assert_routes(posted.port)
        status, exported = call(posted.management_url, "GET", "/api/definitions")
        assert status == 200
        assert only_defs(exported) == expected
        # Importing the same file again changes nothing.
        assert call(posted.management_url, "POST", "/api/definitions", defs)[0] == 204
        assert only_defs(call(posted.management_url, "GET", "/api/definitions")[1]) == expected
    finally:
        posted.stop()


def test_a_committed_rabbitmq_export_imports_into_warren(tmp_path):
    defs = json.loads(FIXTURE.read_text())
    assert defs["rabbit_version"].startswith("3.10"), "the fixture is a 3.10 export"
    check_both_ways_in(defs, tmp_path)


def reference_reachable():
    if not REFERENCE:
        return False
    try:
        return call(REFERENCE, "GET", "/api/overview")[0] == 200
    except OSError:
        return False


@pytest.mark.skipif(not reference_reachable(),
                    reason="needs a RabbitMQ management API in REFERENCE_MGMT (CI has none)")
def test_an_export_from_a_live_rabbitmq_round_trips_through_warren(tmp_path):
    v = "/api/vhosts/" + VHOST
    try:
        assert call(REFERENCE, "PUT", v, {"description": "defs round trip"})[0] in (201, 204)
        status, _ = call(REFERENCE, "PUT", f"/api/users/{USER}",
                         {"password": PASSWORD, "tags": "management"})
        assert status in (201, 204)
        assert call(REFERENCE, "PUT", f"/api/permissions/{VHOST}/{USER}",
                    {"configure": ".*", "write": ".*", "read": ".*"})[0] in (201, 204)
        assert call(REFERENCE, "PUT", f"/api/queues/{VHOST}/{QUEUE}",
                    {"durable": True, "arguments": {"x-message-ttl": 60000}})[0] in (201, 204)
        assert call(REFERENCE, "PUT", f"/api/exchanges/{VHOST}/{EXCHANGE}",
                    {"type": "topic", "durable": True})[0] in (201, 204)
        assert call(REFERENCE, "POST", f"/api/bindings/{VHOST}/e/{EXCHANGE}/q/{QUEUE}",
                    {"routing_key": KEY})[0] == 201
        status, full = call(REFERENCE, "GET", "/api/definitions")
        assert status == 200
    finally:
        call(REFERENCE, "DELETE", v)
        call(REFERENCE, "DELETE", f"/api/users/{USER}")
    # Only what this test made: the reference is shared, other objects are not ours.
    defs = dict(full)
    # guest comes along, as in any RabbitMQ export: definitions loaded at boot replace
    # Warren's defaults, so the test's own API calls log in as the reference's guest.
    defs["users"] = [u for u in full["users"] if u["name"] in (USER, "guest")]
    defs["vhosts"] = [x for x in full["vhosts"] if x["name"] == VHOST]
    for kind in ("permissions", "queues", "exchanges", "bindings", "policies", "parameters"):
        defs[kind] = [o for o in full[kind] if o.get("vhost") == VHOST]
    defs["permissions"] = [p for p in defs["permissions"] if p["user"] == USER]
    assert only_defs(defs)["queues"], "the reference exported the queue"
    check_both_ways_in(defs, tmp_path)


def test_sha512_and_md5_hashes_import_and_log_in(tmp_path):
    """Older RabbitMQ exports (MD5, before 3.6) and SHA-512 ones: the hash is RabbitMQ's
    `base64(salt | H(salt | password))`, made here with hashlib, not with Warren's code."""
    import hashlib

    def rabbit_hash(algorithm, password, salt=b"\x0b\xad\xf0\x0d"):
        digest = hashlib.new(algorithm, salt + password.encode()).digest()
        return base64.b64encode(salt + digest).decode()

    users = [("defs-sha512", "pw-512", "sha512"), ("defs-md5", "pw-md5", "md5")]
    defs = {
        "users": [{"name": name, "password_hash": rabbit_hash(algo, pw),
                   "hashing_algorithm": f"rabbit_password_hashing_{algo}", "tags": ""}
                  for name, pw, algo in users],
        "permissions": [{"user": name, "vhost": "/", "configure": ".*", "write": ".*",
                         "read": ".*"} for name, _, _ in users],
    }
    warren = Warren(tmp_path / "hashes")
    try:
        assert call(warren.management_url, "POST", "/api/definitions", defs)[0] == 204
        for name, pw, _ in users:
            conn = pika.BlockingConnection(pika.ConnectionParameters(
                "127.0.0.1", warren.port, "/", pika.PlainCredentials(name, pw)))
            conn.close()
            with pytest.raises(pika.exceptions.ProbableAuthenticationError):
                pika.BlockingConnection(pika.ConnectionParameters(
                    "127.0.0.1", warren.port, "/", pika.PlainCredentials(name, pw + "x")))
    finally:
        warren.stop()
