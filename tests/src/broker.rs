//! A broker for one end-to-end test: Warren started in-process on `127.0.0.1:0`, or — when
//! `WARREN_TEST_URI` is set — an already running broker (RabbitMQ, to check that a test states
//! real AMQP behaviour) that the test only connects to.
//!
//! Tests share an external broker, so every name a test creates comes from [`unique`].

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lapin::{Channel, Connection, ConnectionProperties};

#[cfg(feature = "in-process")]
pub use warren::server::Config;

/// Stand-in for `warren::server::Config` when the suite is built without the server: the
/// fields tests tweak, so `start_with` closures compile either way.
#[cfg(not(feature = "in-process"))]
#[derive(Debug)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest frame the server accepts.
    pub frame_max: u32,
    /// Highest channel number.
    pub channel_max: u16,
    /// Heartbeat the server proposes, seconds.
    pub heartbeat: u16,
    /// Largest message body accepted.
    pub max_message_size: usize,
    /// Directory of exchange-type plugin libraries.
    pub plugins_dir: Option<std::path::PathBuf>,
}

#[cfg(not(feature = "in-process"))]
impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            frame_max: 131_072,
            channel_max: 2047,
            heartbeat: 60,
            max_message_size: 128 << 20,
            plugins_dir: None,
        }
    }
}

/// Environment variable naming an external broker to run the suite against.
pub const URI_ENV: &str = "WARREN_TEST_URI";

/// How long a test waits for something that must *not* happen (a delivery, a reply).
pub const QUIET: Duration = Duration::from_millis(250);

/// How long a test waits for something that must happen before it calls it a failure.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A broker a test talks to; dropping it stops an in-process Warren with the test's runtime.
pub struct TestBroker {
    uri: String,
    addr: SocketAddr,
    external: bool,
    #[cfg(feature = "in-process")]
    server: Option<warren::server::RunningServer>,
    /// The in-process Warren's management API.
    admin: Option<SocketAddr>,
    /// The in-process Warren's Prometheus endpoint.
    prometheus: Option<SocketAddr>,
    /// A per-test data directory, removed when the broker is dropped.
    data_dir: Option<std::path::PathBuf>,
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(dir) = self.data_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl TestBroker {
    /// Starts Warren with its default configuration (or uses `WARREN_TEST_URI`).
    pub async fn start() -> TestBroker {
        Self::start_with(|_| {}).await
    }

    /// Starts Warren with a configuration adjusted by `tweak` (ignored when `WARREN_TEST_URI`
    /// is set: check [`TestBroker::is_external`] before relying on the tweak).
    #[cfg(feature = "in-process")]
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestBroker {
        if let Some(broker) = Self::external() {
            return broker;
        }
        let data_dir = std::env::temp_dir().join(format!("warren-test-{}", unique("data")));
        let mut config = Config {
            listen: "127.0.0.1:0".parse().expect("a valid address"),
            management_listen: Some("127.0.0.1:0".parse().expect("a valid address")),
            // Never the default 15692: parallel tests (and a RabbitMQ beside them) hold it.
            prometheus_listen: Some("127.0.0.1:0".parse().expect("a valid address")),
            data_dir: data_dir.clone(),
            ..Default::default()
        };
        tweak(&mut config);
        let server = warren::server::start(config)
            .await
            .expect("Warren starts on an ephemeral port");
        let mut addr = server.local_addr();
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let admin = server.management_addr();
        let prometheus = server.prometheus_addr();
        TestBroker {
            uri: format!("amqp://guest:guest@{addr}/%2f"),
            addr,
            admin,
            prometheus,
            external: false,
            server: Some(server),
            data_dir: Some(data_dir),
        }
    }

    /// Without the `in-process` feature only an external broker can be used.
    #[cfg(not(feature = "in-process"))]
    pub async fn start_with(_tweak: impl FnOnce(&mut Config)) -> TestBroker {
        Self::external().unwrap_or_else(|| {
            panic!("built without the `in-process` feature: set {URI_ENV} to a running broker")
        })
    }

    fn external() -> Option<TestBroker> {
        let uri = std::env::var(URI_ENV).ok().filter(|u| !u.is_empty())?;
        let addr = addr_of(&uri);
        Some(TestBroker {
            uri,
            addr,
            admin: None,
            prometheus: None,
            external: true,
            #[cfg(feature = "in-process")]
            server: None,
            data_dir: None,
        })
    }

    /// The AMQP URI of the broker, `amqp://guest:guest@127.0.0.1:PORT/%2f` for Warren.
    pub fn uri(&self) -> String {
        self.uri.clone()
    }

    /// The broker's TCP address, for raw-socket clients.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The management API's base URL (`http://127.0.0.1:PORT`) of an in-process Warren
    /// started with one; `None` for an external broker.
    pub fn admin_url(&self) -> Option<String> {
        self.admin.map(|a| format!("http://{a}"))
    }

    /// The Prometheus endpoint's base URL (`http://127.0.0.1:PORT`, paths `/metrics` and
    /// `/metrics/per-object`) of an in-process Warren started with one; `None` for an
    /// external broker.
    pub fn prometheus_url(&self) -> Option<String> {
        self.prometheus.map(|a| format!("http://{a}"))
    }

    /// The in-process Warren, for what only it can show (its outbox stats); `None` for an
    /// external broker.
    #[cfg(feature = "in-process")]
    pub fn server(&self) -> Option<&warren::server::RunningServer> {
        self.server.as_ref()
    }

    /// Whether this is an external broker (`WARREN_TEST_URI`) rather than Warren in-process.
    pub fn is_external(&self) -> bool {
        self.external
    }

    /// Opens a lapin connection to the broker.
    pub async fn connect(&self) -> Connection {
        Connection::connect(&self.uri, ConnectionProperties::default())
            .await
            .expect("connects to the broker")
    }

    /// Opens a lapin connection and one channel on it.
    pub async fn channel(&self) -> (Connection, Channel) {
        let conn = self.connect().await;
        let ch = conn.create_channel().await.expect("opens a channel");
        (conn, ch)
    }

    /// Asserts that the broker still serves a new client: a fresh connection declares a
    /// server-named queue. The check after every test that provokes or refuses a client.
    pub async fn assert_serves(&self) {
        let (conn, ch) = self.channel().await;
        let q = ch
            .queue_declare(
                "",
                lapin::options::QueueDeclareOptions {
                    exclusive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .expect("a fresh connection still works");
        assert!(q.name().as_str().starts_with("amq.gen-"), "{}", q.name());
        conn.close(200, "bye").await.expect("close");
    }

    /// Stops an in-process Warren and waits until it is down; a no-op for an external broker.
    pub async fn stop(self) {
        #[cfg(feature = "in-process")]
        {
            let mut this = self;
            if let Some(server) = this.server.take() {
                server.shutdown().await;
            }
        }
    }
}

/// A non-loopback IPv4 address of this machine, if it has one (found by asking the kernel
/// which source address it would route a datagram from; nothing is sent).
pub fn non_loopback_ip() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("10.255.255.255:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// `host:port` of an `amqp://user:pass@host:port/vhost` URI.
fn addr_of(uri: &str) -> SocketAddr {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let host_port = rest.split(['/', '?']).next().unwrap_or(rest);
    let host_port = if host_port.contains(':') {
        host_port.to_string()
    } else {
        format!("{host_port}:5672")
    };
    let host_port = host_port.replace("localhost", "127.0.0.1");
    host_port
        .parse()
        .unwrap_or_else(|e| panic!("{URI_ENV} must name host:port as an IP address ({e}): {uri}"))
}

/// A name no other test (in this process or another) uses: `prefix` plus a random suffix.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    format!("{prefix}-{:016x}", h.finish())
}

/// The reply code and text of the AMQP exception behind a lapin error; panics on any other
/// kind of error, since a test that expects an exception must get one.
pub fn reply_of(err: &lapin::Error) -> (u16, String) {
    match err.kind() {
        lapin::ErrorKind::ProtocolError(e) => (e.get_id(), e.get_message().to_string()),
        other => panic!("expected an AMQP exception, got {other:?}"),
    }
}

/// Asserts that `result` failed with an AMQP exception of `code` whose text starts with
/// `text_prefix`.
#[track_caller]
pub fn assert_exception<T: std::fmt::Debug>(
    result: lapin::Result<T>,
    code: u16,
    text_prefix: &str,
) {
    let err = result.expect_err("the broker must refuse this");
    let (got_code, text) = reply_of(&err);
    assert_eq!(got_code, code, "reply code (text: {text})");
    assert!(
        text.starts_with(text_prefix),
        "reply text {text:?} should start with {text_prefix:?}"
    );
}

/// The next delivery of `consumer`; panics if none arrives within [`PATIENCE`].
pub async fn next_delivery(consumer: &mut lapin::Consumer) -> lapin::message::Delivery {
    use futures_lite::StreamExt;
    match tokio::time::timeout(PATIENCE, consumer.next()).await {
        Ok(Some(Ok(d))) => d,
        Ok(Some(Err(e))) => panic!("consumer failed: {e}"),
        Ok(None) => panic!("consumer ended"),
        Err(_) => panic!("no delivery within {PATIENCE:?}"),
    }
}

/// Asserts that `consumer` receives nothing within [`QUIET`].
pub async fn assert_no_delivery(consumer: &mut lapin::Consumer) {
    use futures_lite::StreamExt;
    if let Ok(Some(d)) = tokio::time::timeout(QUIET, consumer.next()).await {
        panic!("expected no delivery, got {d:?}");
    }
}

/// Collects the exceptions (channel or connection) a connection reports, for errors caused by
/// asynchronous methods (publish, ack, reject) that no reply carries back.
pub struct Exceptions(tokio::sync::mpsc::UnboundedReceiver<lapin::Error>);

impl Exceptions {
    /// Starts watching `conn`; call before provoking the error.
    pub fn watch(conn: &Connection) -> Exceptions {
        use futures_lite::StreamExt;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut events = conn.events_listener();
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                if let lapin::Event::Error(e) = event
                    && tx.send(e).is_err()
                {
                    break;
                }
            }
        });
        Exceptions(rx)
    }

    /// The reply code and text of the next exception.
    pub async fn next(&mut self) -> (u16, String) {
        match tokio::time::timeout(PATIENCE, self.0.recv()).await {
            Ok(Some(e)) => reply_of(&e),
            Ok(None) => panic!("the connection is gone without an exception"),
            Err(_) => panic!("no exception within {PATIENCE:?}"),
        }
    }
}
