"""Warren's binary run by an interop test: on ephemeral ports (AMQP, the management API and
the Prometheus endpoint)
and a data directory of the test's own, its log collected on a thread, the bound ports read
from the log lines that announce them.

Needs WARREN_BIN, which tests/interop/run.sh exports when it builds Warren itself.
"""

import os
import re
import subprocess
import threading
import time

import pika
import pytest

BIN = os.environ.get("WARREN_BIN")

LISTENING = re.compile(r"listening local_addr=(\d+\.\d+\.\d+\.\d+):(\d+)")
MANAGEMENT = re.compile(r"management API listening local=(\d+\.\d+\.\d+\.\d+):(\d+)")
TLS_LISTENING = re.compile(r"AMQP over TLS listening local=(\d+\.\d+\.\d+\.\d+):(\d+)")
HTTPS = re.compile(r"management API listening \(https\) local=(\d+\.\d+\.\d+\.\d+):(\d+)")
PROMETHEUS = re.compile(r"Prometheus endpoint listening local=(\d+\.\d+\.\d+\.\d+):(\d+)")


class Warren:
    """The binary on data_dir, listening on 127.0.0.1:0; its log is collected on a thread.

    With --tls-cert among the flags, AMQPS and HTTPS listen on 127.0.0.1:0 too (unless the
    flags say where), and their ports are in tls_port and https_port.
    """

    def __init__(self, data_dir, *flags):
        env = {k: v for k, v in os.environ.items() if not k.startswith("WARREN_")}
        self.tls = "--tls-cert" in flags
        if self.tls:
            for flag in ("--tls-listen", "--management-tls-listen"):
                if flag not in flags:
                    flags = (*flags, flag, "127.0.0.1:0")
        # Never the default 15692, which another broker (or test) may hold.
        if "--prometheus-listen" not in flags:
            flags = (*flags, "--prometheus-listen", "127.0.0.1:0")
        self.proc = subprocess.Popen(
            [BIN, "--listen", "127.0.0.1:0", "--management-listen", "127.0.0.1:0",
             "--data-dir", str(data_dir), "--log-level", "info", *flags],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
        )
        self.lines = []
        self.port = None
        self.management_port = None
        self.tls_port = None
        self.https_port = None
        self.prometheus_port = None
        listening = threading.Event()

        def read():
            for line in self.proc.stdout:
                self.lines.append(line)
                m = MANAGEMENT.search(line)
                if m and self.management_port is None:
                    self.management_port = int(m.group(2))
                m = LISTENING.search(line)
                if m and self.port is None and "management" not in line:
                    self.port = int(m.group(2))
                m = TLS_LISTENING.search(line)
                if m and self.tls_port is None:
                    self.tls_port = int(m.group(2))
                m = HTTPS.search(line)
                if m and self.https_port is None:
                    self.https_port = int(m.group(2))
                m = PROMETHEUS.search(line)
                if m and self.prometheus_port is None:
                    self.prometheus_port = int(m.group(2))
                tls_ready = not self.tls or (
                    self.tls_port is not None and self.https_port is not None)
                # The management API is announced after the AMQP listener.
                if (self.port is not None and self.management_port is not None and tls_ready
                        and self.prometheus_port is not None):
                    listening.set()

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()
        deadline = time.monotonic() + 30
        while not listening.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"warren did not start listening; its log:\n{self.log()}")

    @property
    def management_url(self):
        return f"http://127.0.0.1:{self.management_port}"

    def prometheus_url(self):
        return f"http://127.0.0.1:{self.prometheus_port}"

    def log(self):
        return "".join(self.lines)

    def logged(self, text, seconds=5.0):
        """Whether text appears in the log within seconds."""
        deadline = time.monotonic() + seconds
        while text not in self.log():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def connect(self, **params):
        return pika.BlockingConnection(
            pika.ConnectionParameters(host="127.0.0.1", port=self.port, **params)
        )

    def stop(self):
        """SIGTERM (a clean shutdown: the stores are synced), then SIGKILL if it lingers."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(5)

    def kill(self):
        """SIGKILL: after a test, without waiting for the clients it left open."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(5)


