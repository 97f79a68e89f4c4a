"""TLS, seen by pika and by an HTTPS client: AMQPS on --tls-listen, the management API over
HTTPS, client certificates with the EXTERNAL mechanism (the certificate's CN is the user),
and the certificate reloaded from its files while Warren runs.

The certificates are made here with trustme: a CA, a server certificate for 127.0.0.1 and
localhost, and client certificates with a chosen CN. Warren is started by this module, on
ephemeral ports and a data directory of its own.

Needs the binary: WARREN_BIN, which tests/interop/run.sh exports when it builds Warren itself
(not when it is given an external AMQP_URI); skipped otherwise.
"""

import base64
import json
import signal
import socket
import ssl
import time
import urllib.error
import urllib.request
import uuid

import pika
import pika.exceptions
import pytest

from warren_process import BIN, Warren

trustme = pytest.importorskip("trustme")

pytestmark = pytest.mark.skipif(
    not BIN, reason="needs WARREN_BIN (set by run.sh when it builds and runs Warren itself)"
)

CN_USER = "tls-cn-user"


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


class Pki:
    """A CA and the server's certificate and key, written to files Warren is started on."""

    def __init__(self, directory):
        self.ca = trustme.CA()
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self.ca_file = directory / "ca.pem"
        self.cert_file = directory / "server-cert.pem"
        self.key_file = directory / "server-key.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.server = self.issue_server()

    def issue_server(self):
        """A new server certificate (a new serial and key), written over the old files."""
        server = self.ca.issue_cert("127.0.0.1", "localhost")
        server.private_key_pem.write_to_path(str(self.key_file))
        self.cert_file.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
        return server

    def flags(self, *more):
        return ("--tls-cert", str(self.cert_file), "--tls-key", str(self.key_file),
                "--tls-ca", str(self.ca_file), *more)

    def client_context(self, cn=None):
        """Trusts the CA; with cn, presents a client certificate whose subject CN is cn."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        if cn is not None:
            self.ca.issue_cert(f"{cn}.clients.test", common_name=cn).configure_cert(context)
        return context


def tls_params(w, context, **params):
    return pika.ConnectionParameters(
        host="127.0.0.1", port=w.tls_port, ssl_options=pika.SSLOptions(context, "localhost"),
        connection_attempts=1, socket_timeout=10, **params)


def api(w, context, method, path, body=None, user="guest", password="guest"):
    """One HTTPS request to the management API: (status, parsed JSON or None)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"https://localhost:{w.https_port}{path}", data=data, method=method)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            status, text = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read()
    return status, (json.loads(text) if text else None)


def served_certificate(w, port=None):
    """The DER certificate a new TLS connection to the AMQPS port is given."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port or w.tls_port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.getpeercert(binary_form=True)


def round_trip(connection):
    """Declares a queue, publishes with confirms and gets the message back."""
    channel = connection.channel()
    channel.confirm_delivery()
    queue = unique("tls")
    channel.queue_declare(queue, exclusive=True)
    body = uuid.uuid4().bytes
    channel.basic_publish("", queue, body, mandatory=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        method, _, got = channel.basic_get(queue, auto_ack=True)
        if method is not None:
            return got == body
        connection.process_data_events(time_limit=0.05)
    return False


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def warren(tmp_path_factory, pki):
    w = Warren(tmp_path_factory.mktemp("data"), *pki.flags())
    yield w
    w.kill()


def test_pika_over_tls_with_plain_publishes_and_consumes(warren, pki):
    connection = pika.BlockingConnection(tls_params(warren, pki.client_context()))
    try:
        assert round_trip(connection)
    finally:
        connection.close()


def test_external_logs_in_as_the_certificate_common_name(warren, pki):
    https = pki.client_context()
    status, _ = api(warren, https, "PUT", f"/api/users/{CN_USER}",
                    {"password": "unused-by-external", "tags": ""})
    assert status in (201, 204), status
    status, _ = api(warren, https, "PUT", f"/api/permissions/%2F/{CN_USER}",
                    {"configure": ".*", "write": ".*", "read": ".*"})
    assert status in (201, 204), status

    params = tls_params(warren, pki.client_context(cn=CN_USER),
                        credentials=pika.credentials.ExternalCredentials())
    connection = pika.BlockingConnection(params)
    try:
        assert round_trip(connection)
        local_port = connection._impl._transport._sock.getsockname()[1]
        status, listed = api(warren, https, "GET", "/api/connections")
        assert status == 200
        mine = [c for c in listed if c["peer_port"] == local_port]
        assert len(mine) == 1, listed
        assert (mine[0]["user"], mine[0]["auth_mechanism"]) == (CN_USER, "EXTERNAL")
        assert mine[0]["ssl"] is True, mine[0]
        assert mine[0]["ssl_protocol"] in ("tlsv1.2", "tlsv1.3"), mine[0]
        assert mine[0]["ssl_cipher"], mine[0]
    finally:
        connection.close()


def test_external_for_a_common_name_that_is_no_user_is_refused(warren, pki):
    params = tls_params(warren, pki.client_context(cn="no-such-user"),
                        credentials=pika.credentials.ExternalCredentials())
    with pytest.raises(pika.exceptions.AMQPConnectionError) as refused:
        pika.BlockingConnection(params)
    text = repr(refused.value)
    assert "403" in text and "EXTERNAL" in text, text
    assert warren.logged("user 'no-such-user' does not exist"), warren.log()


def test_external_is_not_offered_without_a_client_certificate(warren, pki):
    params = tls_params(warren, pki.client_context(),
                        credentials=pika.credentials.ExternalCredentials())
    # pika finds no mechanism it can use among those offered (PLAIN AMQPLAIN).
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(params)
    # Over plain TCP neither.
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        warren.connect(credentials=pika.credentials.ExternalCredentials(),
                       connection_attempts=1, socket_timeout=10)


def test_a_plain_client_on_the_tls_port_fails_and_the_broker_keeps_serving(warren, pki):
    plain_on_tls = pika.ConnectionParameters(
        host="127.0.0.1", port=warren.tls_port, connection_attempts=1, socket_timeout=5)
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(plain_on_tls)
    assert warren.logged("TLS handshake failed"), warren.log()
    connection = pika.BlockingConnection(tls_params(warren, pki.client_context()))
    try:
        assert round_trip(connection)
    finally:
        connection.close()
    plain = warren.connect()
    try:
        assert round_trip(plain)
    finally:
        plain.close()


def test_the_management_api_over_https(warren, pki):
    status, overview = api(warren, pki.client_context(), "GET", "/api/overview")
    assert status == 200, overview
    protocols = {(l["protocol"], l["port"]) for l in overview["listeners"]}
    assert ("amqp/ssl", warren.tls_port) in protocols, overview["listeners"]
    assert ("https", warren.https_port) in protocols, overview["listeners"]
    # Wrong credentials over HTTPS are still 401.
    status, _ = api(warren, pki.client_context(), "GET", "/api/overview", password="wrong")
    assert status == 401


def test_the_certificate_is_reloaded_without_a_restart(tmp_path):
    pki = Pki(tmp_path / "pki-reload")
    w = Warren(tmp_path / "data", *pki.flags())
    try:
        first = served_certificate(w)
        new = pki.issue_server()
        new_der = ssl.PEM_cert_to_DER_cert(new.cert_chain_pems[0].bytes().decode())
        assert new_der != first
        deadline = time.monotonic() + 20
        while served_certificate(w) != new_der:
            assert time.monotonic() < deadline, f"still the old certificate; log:\n{w.log()}"
            time.sleep(0.2)
        # HTTPS serves the same certificate.
        assert served_certificate(w, w.https_port) == new_der
        connection = pika.BlockingConnection(tls_params(w, pki.client_context()))
        connection.close()

        # Broken files: logged, and the certificate served does not change. (A refusal may
        # already be logged: the watcher can see the new key before the new certificate.)
        refusals = w.log().count("TLS certificate not reloaded")
        pki.cert_file.write_text("not a certificate\n")
        deadline = time.monotonic() + 20
        while w.log().count("TLS certificate not reloaded") == refusals:
            assert time.monotonic() < deadline, f"no refusal logged; log:\n{w.log()}"
            time.sleep(0.1)
        assert served_certificate(w) == new_der
        # A SIGHUP reloads at once (here: the repaired files).
        third = pki.issue_server()
        w.proc.send_signal(signal.SIGHUP)
        assert w.logged("TLS certificate reloaded (SIGHUP)"), w.log()
        third_der = ssl.PEM_cert_to_DER_cert(third.cert_chain_pems[0].bytes().decode())
        assert served_certificate(w) == third_der
        assert w.proc.poll() is None, "SIGHUP does not stop the broker"
    finally:
        w.kill()


def test_verify_peer_refuses_clients_without_a_certificate(tmp_path):
    pki = Pki(tmp_path / "pki-verify")
    w = Warren(tmp_path / "data", *pki.flags("--tls-verify-peer"))
    try:
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            pika.BlockingConnection(tls_params(w, pki.client_context()))
        # With a certificate (of any CN), a password login works as ever.
        connection = pika.BlockingConnection(tls_params(w, pki.client_context(cn="guest")))
        try:
            assert round_trip(connection)
        finally:
            connection.close()
    finally:
        w.kill()
