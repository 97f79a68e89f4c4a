"""The stock rabbitmqadmin (the management API's own command-line client, shipped in Debian's
rabbitmq-server package) against Warren: listing, declaring, publishing, getting, exporting
and importing, with nothing changed in the tool.

Runs against a Warren started here (WARREN_BIN), or against any broker whose management API
is at RABBITMQADMIN_TARGET=host:port (to check the test itself against RabbitMQ). The tool is
found as RABBITMQADMIN, then on PATH (run.sh fetches it when it is missing).
"""

import json
import os
import shutil
import subprocess
import uuid

import pytest

from warren_process import BIN, Warren

TOOL = os.environ.get("RABBITMQADMIN") or shutil.which("rabbitmqadmin")
TARGET = os.environ.get("RABBITMQADMIN_TARGET")

pytestmark = [
    pytest.mark.skipif(not TOOL, reason="rabbitmqadmin not found (run.sh fetches it)"),
    pytest.mark.skipif(not (BIN or TARGET), reason="needs WARREN_BIN or RABBITMQADMIN_TARGET"),
]


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def admin(tmp_path_factory):
    """rabbitmqadmin pointed at the broker: admin(*args) → stdout; fails on a non-zero exit."""
    warren = None
    if TARGET:
        host, port = TARGET.rsplit(":", 1)
    else:
        warren = Warren(tmp_path_factory.mktemp("rabbitmqadmin-data"))
        host, port = "127.0.0.1", str(warren.management_port)

    def run(*args, check=True):
        done = subprocess.run(
            ["python3", TOOL, "-H", host, "-P", port, "-u", "guest", "-p", "guest", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and done.returncode != 0:
            pytest.fail(f"rabbitmqadmin {' '.join(args)} failed ({done.returncode}):\n"
                        f"{done.stdout}\n{done.stderr}")
        return done

    yield run
    if warren is not None:
        warren.stop()


def rows(admin, *args):
    """A listing as JSON rows (rabbitmqadmin's raw_json format)."""
    return json.loads(admin("-f", "raw_json", "list", *args).stdout)


def test_declares_and_lists_queues_exchanges_and_bindings(admin):
    q, x = unique("adm-q"), unique("adm-x")
    admin("declare", "queue", f"name={q}", "durable=true", 'arguments={"x-max-length": 10}')
    admin("declare", "exchange", f"name={x}", "type=topic", "durable=true")
    admin("declare", "binding", f"source={x}", f"destination={q}", "routing_key=orders.#")
    queue = next(r for r in rows(admin, "queues") if r["name"] == q)
    assert queue["durable"] is True
    assert queue["arguments"] == {"x-max-length": 10}
    exchange = next(r for r in rows(admin, "exchanges") if r["name"] == x)
    assert exchange["type"] == "topic"
    binding = [b for b in rows(admin, "bindings") if b["source"] == x]
    assert [(b["destination"], b["routing_key"]) for b in binding] == [(q, "orders.#")]
    assert rows(admin, "nodes")[0]["running"] is True
    # The default table output, as a person reads it, names the queue too.
    assert q in admin("list", "queues", "name", "messages").stdout
    admin("delete", "queue", f"name={q}")
    admin("delete", "exchange", f"name={x}")
    assert all(r["name"] != q for r in rows(admin, "queues"))


def test_publishes_and_gets_through_an_exchange(admin):
    q, x = unique("adm-q"), unique("adm-x")
    admin("declare", "queue", f"name={q}")
    admin("declare", "exchange", f"name={x}", "type=direct")
    admin("declare", "binding", f"source={x}", f"destination={q}", "routing_key=k")
    published = admin("publish", f"exchange={x}", "routing_key=k", "payload=hello warren")
    assert published.stdout.strip() == "Message published", published.stdout
    unroutable = admin("publish", f"exchange={x}", "routing_key=nowhere", "payload=lost")
    assert "not routed" in unroutable.stdout.lower(), unroutable.stdout
    got = json.loads(admin("-f", "raw_json", "get", f"queue={q}", "ackmode=ack_requeue_false").stdout)
    assert [m["payload"] for m in got] == ["hello warren"]
    assert got[0]["routing_key"] == "k" and got[0]["exchange"] == x
    # Taken with ack_requeue_false: gone.
    assert json.loads(admin("-f", "raw_json", "get", f"queue={q}").stdout) == []
    admin("delete", "queue", f"name={q}")
    admin("delete", "exchange", f"name={x}")


def test_users_vhosts_and_permissions(admin):
    vhost, user = unique("adm-vh"), unique("adm-user")
    admin("declare", "vhost", f"name={vhost}")
    admin("declare", "user", f"name={user}", "password=s3cret", "tags=monitoring")
    admin("declare", "permission", f"vhost={vhost}", f"user={user}",
          "configure=^adm-", "write=.*", "read=.*")
    assert vhost in [v["name"] for v in rows(admin, "vhosts")]
    listed = next(u for u in rows(admin, "users") if u["name"] == user)
    assert "monitoring" in listed["tags"]
    perms = [p for p in rows(admin, "permissions") if p["user"] == user]
    assert [(p["vhost"], p["configure"]) for p in perms] == [(vhost, "^adm-")]
    admin("delete", "user", f"name={user}")
    admin("delete", "vhost", f"name={vhost}")
    assert vhost not in [v["name"] for v in rows(admin, "vhosts")]


def test_exports_and_imports_definitions(admin, tmp_path):
    q, vhost = unique("adm-q"), unique("adm-vh")
    admin("declare", "vhost", f"name={vhost}")
    admin("declare", "permission", f"vhost={vhost}", "user=guest",
          "configure=.*", "write=.*", "read=.*")
    admin("-V", vhost, "declare", "queue", f"name={q}", "durable=true")
    exported = tmp_path / "definitions.json"
    admin("export", str(exported))
    definitions = json.loads(exported.read_text())
    assert any(d["name"] == q and d["vhost"] == vhost for d in definitions["queues"])
    assert any(u["name"] == "guest" and u["password_hash"] for u in definitions["users"])
    admin("-V", vhost, "delete", "queue", f"name={q}")
    admin("import", str(exported))
    assert any(r["name"] == q and r["vhost"] == vhost for r in rows(admin, "queues"))
    admin("delete", "vhost", f"name={vhost}")
