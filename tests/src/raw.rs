//! A raw-socket AMQP 0-9-1 client for the tests no real client can express: malformed,
//! oversized and out-of-order frames, tune-ok values a library would never send, and exact
//! frame order and bytes on the wire.
//!
//! Frames are encoded with amq-protocol's generator where they are well formed and by hand
//! ([`frame_bytes`]) where they are not; incoming frames are split by hand (so a frame the
//! codec would reject is still seen) and their payloads parsed with amq-protocol.

use std::net::SocketAddr;
use std::time::Duration;

use amq_protocol::frame::{AMQPContentHeader, AMQPFrame, ProtocolVersion, gen_frame};
use amq_protocol::protocol::{AMQPClass, basic, channel, connection};
use amq_protocol::types::{FieldTable, LongString, ShortString};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::timeout;

pub use amq_protocol::protocol::basic::AMQPProperties;

/// Frame type octets.
pub const FRAME_METHOD: u8 = 1;
/// Content header frame type.
pub const FRAME_HEADER: u8 = 2;
/// Content body frame type.
pub const FRAME_BODY: u8 = 3;
/// Heartbeat frame type.
pub const FRAME_HEARTBEAT: u8 = 8;
/// The octet that ends every frame.
pub const FRAME_END: u8 = 0xCE;

/// The AMQP 0-9-1 protocol header.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

/// One frame as read off the socket, before its payload is interpreted.
#[derive(Clone, Debug, PartialEq)]
pub struct RawFrame {
    /// Frame type octet.
    pub kind: u8,
    /// Channel number.
    pub channel: u16,
    /// Payload bytes, without the header and the frame-end octet.
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// The method this frame carries, if it is a method frame amq-protocol can parse.
    pub fn method(&self) -> Option<AMQPClass> {
        if self.kind != FRAME_METHOD {
            return None;
        }
        amq_protocol::protocol::parse_class(&self.payload[..])
            .ok()
            .map(|(_, m)| m)
    }

    /// The content header this frame carries, if it is one.
    pub fn header(&self) -> Option<AMQPContentHeader> {
        if self.kind != FRAME_HEADER {
            return None;
        }
        amq_protocol::frame::parsing::parse_content_header(&self.payload[..])
            .ok()
            .map(|(_, h)| h)
    }
}

/// What the server sent next.
#[derive(Clone, Debug, PartialEq)]
pub enum Incoming {
    /// A frame.
    Frame(RawFrame),
    /// A protocol header (the server's answer to one it does not support).
    ProtocolHeader([u8; 8]),
    /// The server closed the socket (or reset it).
    Eof,
    /// Nothing arrived within the wait.
    Timeout,
}

/// How a connection ended, as seen by the client.
#[derive(Clone, Debug, PartialEq)]
pub enum Ending {
    /// The server sent `connection.close` with this code and text.
    Close {
        /// Reply code.
        code: u16,
        /// Reply text.
        text: String,
        /// Class id of the method that failed.
        class_id: u16,
        /// Method id of the method that failed.
        method_id: u16,
    },
    /// The server closed the socket without a `connection.close`.
    Eof,
    /// Nothing ended the connection within the wait.
    StillOpen,
}

impl Ending {
    /// The reply code of a `connection.close`, if that is how it ended.
    pub fn code(&self) -> Option<u16> {
        match self {
            Ending::Close { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// The values a raw client answers `connection.tune` with.
#[derive(Clone, Copy, Debug)]
pub struct TuneOk {
    /// channel-max.
    pub channel_max: u16,
    /// frame-max.
    pub frame_max: u32,
    /// heartbeat, seconds.
    pub heartbeat: u16,
}

/// A TCP connection speaking AMQP frame by frame.
pub struct RawClient {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// The default wait for a frame the server must send.
pub const WAIT: Duration = Duration::from_secs(5);

impl RawClient {
    /// Opens the TCP connection only.
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).await.expect("TCP connect");
        stream.set_nodelay(true).expect("nodelay");
        RawClient {
            stream,
            buf: Vec::new(),
        }
    }

    /// Opens the TCP connection from the local address `source` (e.g. `127.0.0.2`, another
    /// loopback address, to be a different client address).
    pub async fn connect_from(addr: SocketAddr, source: std::net::IpAddr) -> RawClient {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::new(source, 0))
            .expect("bind the source address");
        let stream = socket.connect(addr).await.expect("TCP connect");
        stream.set_nodelay(true).expect("nodelay");
        RawClient {
            stream,
            buf: Vec::new(),
        }
    }

    /// Connects and logs in as guest/guest, accepting the server's tune values but turning
    /// heartbeats off; returns the client and the server's `connection.tune`.
    pub async fn open(addr: SocketAddr) -> (RawClient, connection::Tune) {
        let mut c = RawClient::connect(addr).await;
        c.send_bytes(PROTOCOL_HEADER).await;
        c.expect_start().await;
        let tune = c.login("guest", "guest").await.expect("guest logs in");
        c.tune_ok(TuneOk {
            channel_max: tune.channel_max,
            frame_max: tune.frame_max,
            heartbeat: 0,
        })
        .await;
        c.open_vhost("/").await;
        match c.recv_method(WAIT).await {
            Some(AMQPClass::Connection(connection::AMQPMethod::OpenOk(_))) => {}
            other => panic!("expected connection.open-ok, got {other:?}"),
        }
        (c, tune)
    }

    /// Connects, logs in, and opens channel 1.
    pub async fn open_with_channel(addr: SocketAddr) -> (RawClient, connection::Tune) {
        let (mut c, tune) = RawClient::open(addr).await;
        c.open_channel(1).await;
        (c, tune)
    }

    /// Writes bytes as they are.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        // The server may already have closed the socket; the test looks at what it sent.
        let _ = self.stream.write_all(bytes).await;
    }

    /// Writes one well-formed frame.
    pub async fn send(&mut self, frame: &AMQPFrame) {
        let bytes = encode(frame);
        self.send_bytes(&bytes).await;
    }

    /// Sends a method on a channel.
    pub async fn send_method(&mut self, channel: u16, method: AMQPClass) {
        self.send(&AMQPFrame::Method(channel, method)).await;
    }

    /// Waits for `connection.start` and returns it.
    pub async fn expect_start(&mut self) -> connection::Start {
        match self.recv_method(WAIT).await {
            Some(AMQPClass::Connection(connection::AMQPMethod::Start(s))) => s,
            other => panic!("expected connection.start, got {other:?}"),
        }
    }

    /// Sends `connection.start-ok` with PLAIN credentials; returns the `connection.tune`, or
    /// the `Ending` if the server refused.
    pub async fn login(&mut self, user: &str, pass: &str) -> Result<connection::Tune, Ending> {
        self.login_with("PLAIN", format!("\0{user}\0{pass}").as_bytes())
            .await
    }

    /// Sends `connection.start-ok` with `mechanism` and `response` exactly as given; returns
    /// the `connection.tune`, or the `Ending` if the server refused.
    pub async fn login_with(
        &mut self,
        mechanism: &str,
        response: &[u8],
    ) -> Result<connection::Tune, Ending> {
        let mut caps = FieldTable::default();
        caps.insert("consumer_cancel_notify".into(), true.into());
        caps.insert("authentication_failure_close".into(), true.into());
        caps.insert("publisher_confirms".into(), true.into());
        caps.insert("basic.nack".into(), true.into());
        let mut props = FieldTable::default();
        props.insert("product".into(), LongString::from("warren-raw-test").into());
        props.insert("capabilities".into(), caps.into());
        self.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                client_properties: props,
                mechanism: mechanism.into(),
                response: LongString::from(response.to_vec()),
                locale: "en_US".into(),
            })),
        )
        .await;
        loop {
            match self.recv(WAIT).await {
                Incoming::Frame(f) => match f.method() {
                    Some(AMQPClass::Connection(connection::AMQPMethod::Tune(t))) => return Ok(t),
                    Some(AMQPClass::Connection(connection::AMQPMethod::Close(c))) => {
                        return Err(Ending::Close {
                            code: c.reply_code,
                            text: c.reply_text.to_string(),
                            class_id: c.class_id,
                            method_id: c.method_id,
                        });
                    }
                    _ => continue,
                },
                Incoming::Eof => return Err(Ending::Eof),
                Incoming::Timeout => return Err(Ending::StillOpen),
                Incoming::ProtocolHeader(h) => panic!("unexpected protocol header {h:?}"),
            }
        }
    }

    /// Sends `connection.tune-ok`.
    pub async fn tune_ok(&mut self, t: TuneOk) {
        self.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
                channel_max: t.channel_max,
                frame_max: t.frame_max,
                heartbeat: t.heartbeat,
            })),
        )
        .await;
    }

    /// Sends `connection.open` for `vhost`.
    pub async fn open_vhost(&mut self, vhost: &str) {
        self.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
                virtual_host: ShortString::from(vhost),
            })),
        )
        .await;
    }

    /// Opens a channel and waits for its open-ok.
    pub async fn open_channel(&mut self, id: u16) {
        self.send_method(
            id,
            AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
        )
        .await;
        match self.recv_method(WAIT).await {
            Some(AMQPClass::Channel(channel::AMQPMethod::OpenOk(_))) => {}
            other => panic!("expected channel.open-ok, got {other:?}"),
        }
    }

    /// Sends `publish` (see [`publish_method`]) with a content header and the body in
    /// frames of at most `chunk` bytes, all in one write.
    pub async fn publish(
        &mut self,
        channel: u16,
        publish: AMQPClass,
        properties: AMQPProperties,
        body: &[u8],
        chunk: usize,
    ) {
        let mut bytes = encode(&AMQPFrame::Method(channel, publish));
        bytes.extend(header_bytes(channel, body.len() as u64, properties));
        for piece in body.chunks(chunk.max(1)) {
            bytes.extend(frame_bytes(FRAME_BODY, channel, piece));
        }
        self.send_bytes(&bytes).await;
    }

    /// The next thing the server sends, waiting at most `wait`.
    pub async fn recv(&mut self, wait: Duration) -> Incoming {
        recv_from(&mut self.stream, &mut self.buf, wait).await
    }

    /// Splits the client so that one task can keep writing while another reads (or, to
    /// play a client that never reads, does not).
    pub fn into_split(self) -> (RawReader, OwnedWriteHalf) {
        let (read, write) = self.stream.into_split();
        (
            RawReader {
                read,
                buf: self.buf,
            },
            write,
        )
    }

    /// The next non-heartbeat frame, or `None` on EOF/timeout.
    pub async fn recv_frame(&mut self, wait: Duration) -> Option<RawFrame> {
        loop {
            match self.recv(wait).await {
                Incoming::Frame(f) if f.kind == FRAME_HEARTBEAT => continue,
                Incoming::Frame(f) => return Some(f),
                _ => return None,
            }
        }
    }

    /// The next method (skipping heartbeats; panics on content frames), or `None`.
    pub async fn recv_method(&mut self, wait: Duration) -> Option<AMQPClass> {
        let f = self.recv_frame(wait).await?;
        match f.method() {
            Some(m) => Some(m),
            None => panic!("expected a method frame, got {f:?}"),
        }
    }

    /// Reads until the server closes the connection (answering its `connection.close` with
    /// close-ok) or `wait` passes; other frames are skipped.
    pub async fn expect_connection_end(&mut self, wait: Duration) -> Ending {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await {
                Incoming::Frame(f) => {
                    if let Some(AMQPClass::Connection(connection::AMQPMethod::Close(c))) =
                        f.method()
                    {
                        self.send_method(
                            0,
                            AMQPClass::Connection(connection::AMQPMethod::CloseOk(
                                connection::CloseOk {},
                            )),
                        )
                        .await;
                        return Ending::Close {
                            code: c.reply_code,
                            text: c.reply_text.to_string(),
                            class_id: c.class_id,
                            method_id: c.method_id,
                        };
                    }
                }
                Incoming::ProtocolHeader(_) => continue,
                Incoming::Eof => return Ending::Eof,
                Incoming::Timeout => return Ending::StillOpen,
            }
        }
    }

    /// Reads until `channel.close` arrives on `channel`; returns its code and text.
    pub async fn expect_channel_close(&mut self, ch: u16) -> (u16, String) {
        loop {
            let f = self
                .recv_frame(WAIT)
                .await
                .expect("the server closes the channel");
            match f.method() {
                Some(AMQPClass::Channel(channel::AMQPMethod::Close(c))) if f.channel == ch => {
                    self.send_method(
                        ch,
                        AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                    )
                    .await;
                    return (c.reply_code, c.reply_text.to_string());
                }
                Some(AMQPClass::Connection(connection::AMQPMethod::Close(c))) => panic!(
                    "expected channel.close, got connection.close {} {}",
                    c.reply_code, c.reply_text
                ),
                _ => continue,
            }
        }
    }

    /// Reads until the server closes a channel or the connection; returns which (`true` for
    /// the connection), the code and the text. Answers the close with its close-ok.
    pub async fn expect_any_close(&mut self) -> (bool, u16, String) {
        loop {
            let f = self
                .recv_frame(WAIT)
                .await
                .expect("the server closes a channel or the connection");
            match f.method() {
                Some(AMQPClass::Channel(channel::AMQPMethod::Close(c))) => {
                    self.send_method(
                        f.channel,
                        AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                    )
                    .await;
                    return (false, c.reply_code, c.reply_text.to_string());
                }
                Some(AMQPClass::Connection(connection::AMQPMethod::Close(c))) => {
                    self.send_method(
                        0,
                        AMQPClass::Connection(connection::AMQPMethod::CloseOk(
                            connection::CloseOk {},
                        )),
                    )
                    .await;
                    return (true, c.reply_code, c.reply_text.to_string());
                }
                _ => continue,
            }
        }
    }

    /// Whether the connection still answers: opens channel `ch` and waits for its open-ok.
    pub async fn is_alive(&mut self, ch: u16) -> bool {
        self.send_method(
            ch,
            AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
        )
        .await;
        matches!(
            timeout(WAIT, self.recv_method(WAIT)).await,
            Ok(Some(AMQPClass::Channel(channel::AMQPMethod::OpenOk(_))))
        )
    }
}

/// The read half of a [`RawClient`] (see [`RawClient::into_split`]).
pub struct RawReader {
    read: OwnedReadHalf,
    buf: Vec<u8>,
}

impl RawReader {
    /// The next thing the server sends, waiting at most `wait`.
    pub async fn recv(&mut self, wait: Duration) -> Incoming {
        recv_from(&mut self.read, &mut self.buf, wait).await
    }

    /// The next non-heartbeat frame, or `None` on EOF/timeout.
    pub async fn recv_frame(&mut self, wait: Duration) -> Option<RawFrame> {
        loop {
            match self.recv(wait).await {
                Incoming::Frame(f) if f.kind == FRAME_HEARTBEAT => continue,
                Incoming::Frame(f) => return Some(f),
                _ => return None,
            }
        }
    }

    /// The client again, from this half and the write half it was split from.
    pub fn reunite(self, write: OwnedWriteHalf) -> RawClient {
        RawClient {
            stream: self.read.reunite(write).expect("halves of one stream"),
            buf: self.buf,
        }
    }
}

/// The next thing the server sends on `stream`, after what is already in `buf`.
async fn recv_from<R: AsyncRead + Unpin>(
    stream: &mut R,
    buf: &mut Vec<u8>,
    wait: Duration,
) -> Incoming {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if buf.len() >= 8 && buf.starts_with(b"AMQP") {
            let mut h = [0u8; 8];
            h.copy_from_slice(&buf[..8]);
            buf.drain(..8);
            return Incoming::ProtocolHeader(h);
        }
        if buf.len() >= 7 {
            let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]) as usize;
            if buf.len() >= 8 + size {
                let frame = RawFrame {
                    kind: buf[0],
                    channel: u16::from_be_bytes([buf[1], buf[2]]),
                    payload: buf[7..7 + size].to_vec(),
                };
                assert_eq!(buf[7 + size], FRAME_END, "server sent a bad frame-end");
                buf.drain(..8 + size);
                return Incoming::Frame(frame);
            }
        }
        // Read straight into the buffer: a stack array would make every future that
        // awaits `recv` 64 KiB bigger.
        buf.reserve(65536);
        match tokio::time::timeout_at(deadline, stream.read_buf(buf)).await {
            Err(_) => return Incoming::Timeout,
            Ok(Ok(0)) | Ok(Err(_)) => return Incoming::Eof,
            Ok(Ok(_)) => {}
        }
    }
}

/// Encodes a well-formed frame.
pub fn encode(frame: &AMQPFrame) -> Vec<u8> {
    let (bytes, _) =
        cookie_factory::r#gen(gen_frame(frame), Vec::new()).expect("a frame always encodes");
    bytes
}

/// The payload of a method frame for `method`.
pub fn method_payload(method: &AMQPClass) -> Vec<u8> {
    let frame = encode(&AMQPFrame::Method(0, method.clone()));
    frame[7..frame.len() - 1].to_vec()
}

/// A frame with any type, channel and payload (size field computed from the payload).
pub fn frame_bytes(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + 8);
    v.push(kind);
    v.extend_from_slice(&channel.to_be_bytes());
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v.push(FRAME_END);
    v
}

/// A content header frame for class basic.
pub fn header_bytes(channel: u16, body_size: u64, properties: AMQPProperties) -> Vec<u8> {
    encode(&AMQPFrame::Header(
        channel,
        60,
        Box::new(AMQPContentHeader {
            class_id: 60,
            body_size,
            properties,
        }),
    ))
}

/// The protocol header this crate's amq-protocol speaks (for comparisons).
pub fn protocol_version() -> ProtocolVersion {
    ProtocolVersion::amqp_0_9_1()
}

/// `basic.publish` as a method.
pub fn publish_method(exchange: &str, routing_key: &str, mandatory: bool) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
        exchange: exchange.into(),
        routing_key: routing_key.into(),
        mandatory,
        immediate: false,
    }))
}
