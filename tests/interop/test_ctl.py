"""`warren ctl` against a Warren started here: users, vhosts, permissions, listings, closing a
connection, definitions and the scheduled-message commands, through the binary as an
operator runs it, with what it changed checked over AMQP (pika) or the API.

Needs the binary: WARREN_BIN (run.sh exports it when it builds Warren itself).
"""

import json
import re
import socket
import subprocess
import time
import uuid

import pika
import pika.exceptions
import pytest

from warren_process import BIN, Warren

pytestmark = pytest.mark.skipif(
    not BIN, reason="needs WARREN_BIN (set by run.sh when it builds and runs Warren itself)"
)


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def warren(tmp_path_factory):
    w = Warren(tmp_path_factory.mktemp("ctl-data"))
    yield w
    w.stop()


@pytest.fixture
def ctl(warren):
    """ctl(*args) → CompletedProcess; check=False to look at a failure."""

    def run(*args, check=True, user="guest", password="guest", stdin=None):
        done = subprocess.run(
            [BIN, "ctl", "--management", f"127.0.0.1:{warren.management_port}",
             "--username", user, "--password", password, *args],
            capture_output=True, text=True, timeout=60, input=stdin,
        )
        if check and done.returncode != 0:
            pytest.fail(f"warren ctl {' '.join(args)} failed ({done.returncode}):\n"
                        f"{done.stdout}\n{done.stderr}")
        return done

    return run


def table(done):
    """The rows of a -q listing: header skipped, tab-separated cells."""
    lines = [line for line in done.stdout.splitlines() if line]
    return [line.split("\t") for line in lines[1:]]


def connect(warren, user="guest", password="guest", vhost="/"):
    return pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=warren.port, virtual_host=vhost,
        credentials=pika.PlainCredentials(user, password)))


def test_a_user_made_with_ctl_logs_in_to_its_vhost(ctl, warren):
    user, vhost = unique("ctl-user"), unique("ctl-vh")
    ctl("add_user", user, "pw1")
    ctl("add_vhost", vhost)
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError):
        connect(warren, user, "pw1", vhost)
    ctl("set_permissions", "-p", vhost, user, "^ctl-", ".*", ".*")
    conn = connect(warren, user, "pw1", vhost)
    conn.channel().queue_declare(queue="ctl-mine")
    conn.close()
    assert [user, "^ctl-", ".*", ".*"] in table(ctl("-q", "list_permissions", "-p", vhost))
    ctl("set_user_tags", user, "monitoring")
    ctl("change_password", user, "pw2")
    rows = table(ctl("-q", "list_users"))
    assert [user, "[monitoring]"] in rows
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        connect(warren, user, "pw1", vhost)
    connect(warren, user, "pw2", vhost).close()
    ctl("clear_permissions", "-p", vhost, user)
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError):
        connect(warren, user, "pw2", vhost)
    ctl("delete_vhost", vhost)
    ctl("delete_user", user)
    assert all(row[0] != user for row in table(ctl("-q", "list_users")))
    assert vhost not in ctl("-q", "list_vhosts").stdout


def test_listings_show_what_a_client_declared(ctl, warren):
    q, x = unique("ctl-q"), unique("ctl-x")
    conn = connect(warren)
    ch = conn.channel()
    ch.queue_declare(queue=q, durable=True)
    ch.exchange_declare(exchange=x, exchange_type="fanout")
    ch.queue_bind(queue=q, exchange=x, routing_key="k")
    for _ in range(3):
        ch.basic_publish(exchange=x, routing_key="", body=b"m")
    time.sleep(0.2)
    assert [q, "3", "true"] in table(ctl("-q", "list_queues", "name", "messages", "durable"))
    assert [x, "fanout"] in table(ctl("-q", "list_exchanges"))
    bindings = table(ctl("-q", "list_bindings"))
    assert any(row[0] == x and row[2] == q and row[4] == "k" for row in bindings), bindings
    ctl("purge_queue", q)
    assert [q, "0"] in table(ctl("-q", "list_queues"))
    ctl("delete_queue", q)
    assert all(row[0] != q for row in table(ctl("-q", "list_queues")))
    conn.close()


def test_close_connection_reaches_the_client_with_its_reason(ctl, warren):
    conn = connect(warren)
    rows = table(ctl("-q", "list_connections", "name", "user", "state"))
    names = [row[0] for row in rows if row[1] == "guest"]
    assert names, rows
    for name in names:
        ctl("close_connection", name, "maintenance window")
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        conn.process_data_events(time_limit=5)
        conn.channel()
    assert closed.value.reply_code == 320
    assert "maintenance window" in closed.value.reply_text


def test_definitions_export_and_import(ctl, warren, tmp_path):
    q = unique("ctl-q")
    conn = connect(warren)
    conn.channel().queue_declare(queue=q, durable=True, arguments={"x-message-ttl": 60000})
    conn.close()
    path = tmp_path / "defs.json"
    ctl("export_definitions", str(path))
    exported = json.loads(path.read_text())
    assert any(d["name"] == q and d["arguments"] == {"x-message-ttl": 60000}
               for d in exported["queues"])
    ctl("delete_queue", q)
    ctl("import_definitions", str(path))
    assert q in [row[0] for row in table(ctl("-q", "list_queues"))]
    ctl("delete_queue", q)


def test_errors_name_the_address_and_the_cause(ctl, warren):
    wrong = ctl("list_users", password="nope", check=False)
    assert wrong.returncode != 0
    assert "401" in wrong.stderr and f"127.0.0.1:{warren.management_port}" in wrong.stderr
    # A port just freed: nothing listens there.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    closed = f"127.0.0.1:{probe.getsockname()[1]}"
    probe.close()
    nowhere = subprocess.run([BIN, "ctl", "--management", closed, "list_users"],
                             capture_output=True, text=True, timeout=30)
    assert nowhere.returncode != 0 and closed in nowhere.stderr


def test_a_large_definitions_file_imports_in_chunks_with_progress(ctl, warren, tmp_path):
    vhost = unique("ctl-bulk")
    names = [f"bulk-{i:05d}" for i in range(3000)]
    defs = {
        "rabbit_version": "3.10.8",
        "vhosts": [{"name": vhost}],
        "permissions": [{"user": "guest", "vhost": vhost, "configure": ".*",
                         "write": ".*", "read": ".*"}],
        "exchanges": [{"name": "bulk-x", "vhost": vhost, "type": "direct", "durable": True,
                       "auto_delete": False, "internal": False, "arguments": {}}],
        "queues": [{"name": n, "vhost": vhost, "durable": True, "auto_delete": False,
                    "arguments": {}} for n in names],
        "bindings": [{"source": "bulk-x", "vhost": vhost, "destination": names[0],
                      "destination_type": "queue", "routing_key": "k", "arguments": {}}],
    }
    path = tmp_path / "bulk.json"
    path.write_text(json.dumps(defs))
    done = ctl("import_definitions", str(path))
    total = 3 + len(names) + 1
    progress = [line for line in done.stderr.splitlines() if line.startswith("imported ")]
    # 3004 objects, 500 a request: seven chunks, a line for each (stderr is not a TTY here).
    assert len(progress) == 7, done.stderr
    assert progress[0] == f"imported 500/{total} objects (vhosts, permissions, exchanges, queues)"
    assert progress[-1] == f"imported {total}/{total} objects (queues, bindings)"
    assert "Successfully imported definitions." in done.stdout
    listed = {row[0] for row in table(ctl("-q", "list_queues", "-p", vhost, "name"))}
    assert listed == set(names)
    bindings = table(ctl("-q", "list_bindings", "-p", vhost))
    assert any(row[0] == "bulk-x" and row[2] == names[0] for row in bindings), bindings
    # --no-progress: the same import (everything exists now), silent on stderr.
    again = ctl("import_definitions", "--no-progress", str(path))
    assert "imported " not in again.stderr, again.stderr
    ctl("delete_vhost", vhost)


def test_a_refused_chunk_stops_the_import_and_says_what_was_imported(ctl, warren, tmp_path):
    vhost = unique("ctl-half")
    good = [{"name": f"half-{i}", "vhost": vhost, "durable": True, "arguments": {}}
            for i in range(4)]
    bad = {"name": "half-bad", "vhost": vhost, "durable": True,
           "arguments": {"x-max-length": "lots"}}
    after = {"name": "half-after", "vhost": vhost, "durable": True, "arguments": {}}
    path = tmp_path / "half.json"
    path.write_text(json.dumps({"vhosts": [{"name": vhost}],
                                "queues": [*good, bad, after]}))
    done = ctl("import_definitions", "--chunk-size", "3", str(path), check=False)
    assert done.returncode == 1, done
    assert "import stopped: imported 3 of 7 objects (vhosts 1, queues 2); objects 4-6 " \
        "(queues) were refused and nothing after them was sent: 400" in done.stderr, done.stderr
    listed = {row[0] for row in table(ctl("-q", "list_queues", "-p", vhost, "name"))}
    assert listed == {"half-0", "half-1"}
    ctl("delete_vhost", vhost)


def test_a_bad_definitions_file_changes_nothing(ctl, warren, tmp_path):
    vhost = unique("ctl-typo")
    path = tmp_path / "typo.json"
    path.write_text(json.dumps({"vhosts": [{"name": vhost}], "queus": [{"name": "q"}]}))
    done = ctl("import_definitions", str(path), check=False)
    assert done.returncode == 1
    assert "unknown key 'queus'" in done.stderr, done.stderr
    assert vhost not in ctl("-q", "list_vhosts").stdout


def test_status_shows_memory_alarms_listeners_uptime_and_rates(ctl, warren):
    status = ctl("status").stdout
    lines = status.splitlines()
    assert "Product: Warren" in status, status
    assert re.search(r"^Uptime: \d+[dhms]( \d+[hms])? \(\d+ seconds\)$", status, re.M), status
    section = {}
    current = None
    for line in lines:
        if line and current is None:
            current = line
            section[current] = []
        elif line:
            section[current].append(line)
        elif current is not None and section[current]:
            current = None
    assert section["Memory"][0].startswith("Used: "), section
    assert section["Alarms"] == ["(none)"], section
    assert f"Interface: [127.0.0.1], port: {warren.port}, protocol: amqp" in section["Listeners"]
    assert any(f"port: {warren.management_port}, protocol: http" in line
               for line in section["Listeners"]), section
    rates = dict(line.split(": ") for line in section["Message rates (per second)"])
    assert list(rates) == ["publish", "deliver_get", "ack", "confirm", "redeliver",
                           "return_unroutable"]
    assert all(float(r) >= 0.0 for r in rates.values()), rates
    facts = json.loads(ctl("--formatter", "json", "status").stdout)
    assert facts["alarms"]["status"] == "ok"
    assert facts["memory"]["used"] > 0
    assert facts["uptime_ms"] >= 0
    assert {"protocol": "amqp", "ip_address": "127.0.0.1", "port": warren.port} \
        in facts["listeners"]
    assert set(facts["message_rates"]) == set(rates)
    assert all(isinstance(r, float) for r in facts["message_rates"].values())


def test_status_and_scheduled(ctl, warren):
    status = ctl("status").stdout
    assert "Warren" in status, status
    x = unique("ctl-delayed")
    conn = connect(warren)
    ch = conn.channel()
    ch.exchange_declare(exchange=x, exchange_type="x-delayed-message",
                        arguments={"x-delayed-type": "direct"})
    for key in ("a", "b", "a"):
        ch.basic_publish(exchange=x, routing_key=key, body=b"later",
                         properties=pika.BasicProperties(headers={"x-delay": 3_600_000}))
    time.sleep(0.2)
    assert [x, "3"] in [row[1:3] for row in table(ctl("-q", "scheduled", "counts"))]
    listed = table(ctl("-q", "scheduled", "list", "--exchange", x))
    assert len(listed) == 3, listed
    cancelled = ctl("scheduled", "cancel-matching", "--exchange", x, "--routing-key", "a")
    assert "2" in cancelled.stdout, cancelled.stdout
    assert len(table(ctl("-q", "scheduled", "list", "--exchange", x))) == 1
    conn.close()
