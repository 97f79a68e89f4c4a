"""Tenancy seen by pika: users, vhosts and permissions made through the management API
(RabbitMQ's shapes: PUT /api/vhosts/{v}, PUT /api/users/{u} {"password","tags"},
PUT /api/permissions/{v}/{u} {"configure","write","read"}), then AMQP connections as those
users, in those vhosts.

What a client sees: the 403 ACCESS_REFUSED texts that close a channel when a permission is
missing, 530 NOT_ALLOWED at connection.open for a vhost without permissions or a missing one
(pika's ProbableAccessDeniedError), a wrong password as pika's ProbableAuthenticationError
with RabbitMQ's 403 text, a permission change reaching an open connection, and two vhosts as
separate namespaces.

The broker: AMQP_URI (as tests/interop/run.sh exports it) or AMQP_HOST/AMQP_PORT, and the
management API at MGMT_URL (guest/guest unless MGMT_USER/MGMT_PASS). Every name made here
starts with "perm-" and is deleted afterwards, so the suite can run against a shared RabbitMQ:
  AMQP_PORT=5673 MGMT_URL=http://127.0.0.1:15673 python -m pytest tests/interop/test_tenancy.py
"""

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pika
import pika.exceptions
import pytest

MGMT_URL = os.environ.get("MGMT_URL", "").rstrip("/")
MGMT_USER = os.environ.get("MGMT_USER", "guest")
MGMT_PASS = os.environ.get("MGMT_PASS", "guest")

pytestmark = pytest.mark.skipif(
    not MGMT_URL, reason="needs MGMT_URL (the management API, exported by run.sh)"
)


def amqp_address():
    """(host, port) of the broker: AMQP_URI's, overridden by AMQP_HOST/AMQP_PORT."""
    host, port = "127.0.0.1", 5672
    uri = os.environ.get("AMQP_URI")
    if uri:
        parsed = urllib.parse.urlparse(uri)
        host, port = parsed.hostname or host, parsed.port or port
    host = os.environ.get("AMQP_HOST", host)
    port = int(os.environ.get("AMQP_PORT", port))
    return host, port


def unique(what):
    return f"perm-{what}-{uuid.uuid4().hex[:12]}"


def api(method, path, body=None):
    """(status, parsed JSON body or None) of a management API call as the admin."""
    request = urllib.request.Request(
        MGMT_URL + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
    )
    token = base64.b64encode(f"{MGMT_USER}:{MGMT_PASS}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    return status, (json.loads(raw) if raw else None)


def segment(name):
    return urllib.parse.quote(name, safe="")


class Tenancy:
    """Makes vhosts, users and permissions, and deletes them all at the end."""

    def __init__(self):
        self.vhosts, self.users = [], []

    def vhost(self):
        name = unique("vhost")
        status, body = api("PUT", f"/api/vhosts/{segment(name)}", {})
        assert status in (201, 204), (status, body)
        self.vhosts.append(name)
        return name

    def user(self, password="secret"):
        name = unique("user")
        status, body = api(
            "PUT", f"/api/users/{segment(name)}", {"password": password, "tags": ""}
        )
        assert status in (201, 204), (status, body)
        self.users.append(name)
        return name

    def permit(self, vhost, user, configure=".*", write=".*", read=".*"):
        status, body = api(
            "PUT",
            f"/api/permissions/{segment(vhost)}/{segment(user)}",
            {"configure": configure, "write": write, "read": read},
        )
        assert status in (201, 204), (status, body)

    def cleanup(self):
        for vhost in self.vhosts:
            api("DELETE", f"/api/vhosts/{segment(vhost)}")
        for user in self.users:
            api("DELETE", f"/api/users/{segment(user)}")


@pytest.fixture
def tenancy():
    t = Tenancy()
    yield t
    t.cleanup()


def connect(user, vhost, password="secret"):
    host, port = amqp_address()
    return pika.BlockingConnection(
        pika.ConnectionParameters(
            host,
            port,
            vhost,
            pika.PlainCredentials(user, password),
            connection_attempts=1,
            blocked_connection_timeout=10,
        )
    )


def refused(kind, name, vhost, user):
    return f"ACCESS_REFUSED - access to {kind} '{name}' in vhost '{vhost}' refused for user '{user}'"


def closed_by_broker(operation):
    """The (code, text) of the channel close that `operation` provokes."""
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        operation()
    return info.value.reply_code, info.value.reply_text


def test_a_user_works_in_its_own_vhost(tenancy):
    vhost, user = tenancy.vhost(), tenancy.user()
    tenancy.permit(vhost, user)
    conn = connect(user, vhost)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare("perm-work")
        ch.basic_publish("", "perm-work", b"hello")
        method, _props, body = ch.basic_get("perm-work", auto_ack=True)
        assert method is not None and body == b"hello"
    finally:
        conn.close()


def test_missing_permissions_close_the_channel_with_rabbitmqs_403_texts(tenancy):
    vhost, user = tenancy.vhost(), tenancy.user()
    tenancy.permit(vhost, "guest")
    admin = connect("guest", vhost, password=MGMT_PASS)
    try:
        admin_ch = admin.channel()
        admin_ch.queue_declare("perm-theirs")
        admin_ch.exchange_declare("perm-x", "direct")
    finally:
        admin.close()
    tenancy.permit(vhost, user, configure="^perm-mine", write="^perm-mine", read="^perm-mine")
    conn = connect(user, vhost)
    try:
        cases = [
            ("queue", "perm-theirs", lambda ch: ch.queue_declare("perm-theirs")),
            ("exchange", "perm-other", lambda ch: ch.exchange_declare("perm-other", "fanout")),
            ("queue", "perm-theirs", lambda ch: ch.queue_delete("perm-theirs")),
            ("queue", "perm-theirs", lambda ch: ch.queue_purge("perm-theirs")),
            ("queue", "perm-theirs", lambda ch: ch.basic_get("perm-theirs")),
            ("queue", "perm-theirs",
             lambda ch: ch.basic_consume("perm-theirs", lambda *_: None)),
            ("queue", "perm-theirs", lambda ch: ch.queue_bind("perm-theirs", "perm-x", "k")),
            # basic.publish is asynchronous: the close arrives while pika waits for the
            # next reply.
            ("exchange", "amq.default",
             lambda ch: (ch.basic_publish("", "perm-theirs", b"no"),
                         ch.queue_declare("perm-theirs", passive=True))),
            ("exchange", "perm-x",
             lambda ch: (ch.basic_publish("perm-x", "k", b"no"),
                         ch.queue_declare("perm-theirs", passive=True))),
        ]
        for kind, name, operation in cases:
            ch = conn.channel()
            assert closed_by_broker(lambda: operation(ch)) == (
                403, refused(kind, name, vhost, user)
            ), (kind, name)
        # Passive declares are not checked.
        ch = conn.channel()
        ok = ch.queue_declare("perm-theirs", passive=True)
        assert ok.method.message_count == 0, "the refused publishes were not routed"
        ch.exchange_declare("perm-x", passive=True)
        # A server-named queue is checked under the name the server generated.
        code, text = closed_by_broker(lambda: ch.queue_declare("", exclusive=True))
        assert code == 403 and text.startswith("ACCESS_REFUSED - access to queue 'amq.gen-"), text
        assert text.endswith(f"' in vhost '{vhost}' refused for user '{user}'"), text
    finally:
        conn.close()


def test_a_permission_change_reaches_an_open_connection(tenancy):
    vhost, user = tenancy.vhost(), tenancy.user()
    tenancy.permit(vhost, user, configure="^$", write="^$", read="^$")
    conn = connect(user, vhost)
    try:
        ch = conn.channel()
        assert closed_by_broker(lambda: ch.queue_declare("perm-later")) == (
            403, refused("queue", "perm-later", vhost, user)
        )
        tenancy.permit(vhost, user, configure="^perm-later$", write="^$", read="^$")
        ch = conn.channel()
        ch.queue_declare("perm-later")
    finally:
        conn.close()


def test_a_vhost_without_permissions_is_refused_with_530(tenancy):
    allowed, other, user = tenancy.vhost(), tenancy.vhost(), tenancy.user()
    tenancy.permit(allowed, user)
    connect(user, allowed).close()
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as info:
        connect(user, other)
    assert f"NOT_ALLOWED - access to vhost '{other}' refused for user '{user}'" in str(info.value)
    assert "530" in str(info.value)


def test_a_missing_vhost_is_refused_with_530(tenancy):
    user = tenancy.user()
    missing = unique("missing")
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as info:
        connect(user, missing)
    assert f"NOT_ALLOWED - vhost {missing} not found" in str(info.value)
    assert "530" in str(info.value)


def test_a_wrong_password_is_an_authentication_error_with_rabbitmqs_text(tenancy):
    vhost, user = tenancy.vhost(), tenancy.user(password="right")
    tenancy.permit(vhost, user)
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as info:
        connect(user, vhost, password="wrong")
    assert (
        "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. "
        "For details see the broker logfile." in str(info.value)
    )
    assert "403" in str(info.value)


def test_the_same_names_in_two_vhosts_are_separate(tenancy):
    a, b, user = tenancy.vhost(), tenancy.vhost(), tenancy.user()
    tenancy.permit(a, user)
    tenancy.permit(b, user)
    conn_a, conn_b = connect(user, a), connect(user, b)
    try:
        ch_a, ch_b = conn_a.channel(), conn_b.channel()
        ch_a.confirm_delivery()
        ch_a.exchange_declare("perm-shared", "direct")
        # The same name with another type: a's exchange is not b's.
        ch_b.exchange_declare("perm-shared", "fanout")
        for ch in (ch_a, ch_b):
            ch.queue_declare("perm-shared")
        ch_a.queue_bind("perm-shared", "perm-shared", "k")
        ch_a.basic_publish("perm-shared", "k", b"in a")
        assert ch_b.queue_declare("perm-shared", passive=True).method.message_count == 0
        _method, _props, body = ch_a.basic_get("perm-shared", auto_ack=True)
        assert body == b"in a"
        ch_a.queue_delete("perm-shared")
        assert ch_b.queue_declare("perm-shared", passive=True).method.queue == "perm-shared"
    finally:
        conn_a.close()
        conn_b.close()


def test_a_message_can_only_claim_its_publishers_user_id(tenancy):
    vhost, user = tenancy.vhost(), tenancy.user()
    tenancy.permit(vhost, user)
    conn = connect(user, vhost)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare("perm-claims")
        ch.basic_publish("", "perm-claims", b"mine", pika.BasicProperties(user_id=user))
        method, props, _body = ch.basic_get("perm-claims", auto_ack=True)
        assert method is not None and props.user_id == user
        code, text = closed_by_broker(lambda: ch.basic_publish(
            "", "perm-claims", b"forged", pika.BasicProperties(user_id="someone-else")))
        assert code == 406
        assert text == (f"PRECONDITION_FAILED - user_id property set to 'someone-else' "
                        f"but authenticated user was '{user}'")
    finally:
        conn.close()
