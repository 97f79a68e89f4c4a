//! A connection's socket, plain TCP or TLS, up to the point where the connection task and the
//! writer task each take their half.
//!
//! [`Incoming`] is what the accept loop hands a connection's task; [`Incoming::open`] does the
//! TLS handshake there (never in the accept loop, so a slow handshake stalls nobody else),
//! under the handshake timeout. The read side is an enum, not a boxed reader: plain TCP keeps
//! its `OwnedReadHalf` and the raw socket that the linger optimisation polls
//! ([`ReadSide::tcp`]), and no read pays for a virtual call. The writer task is generic over
//! the write half ([`Outbox::run_writer`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, ReadHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::outbox::Outbox;
use crate::tls::TlsPeer;

/// An accepted socket, with the TLS to speak on it if it came in on the AMQPS listener.
pub enum Incoming {
    /// Plain AMQP.
    Tcp(TcpStream),
    /// AMQPS: the handshake is still to be done.
    Tls(TcpStream, TlsAcceptor),
}

impl Incoming {
    /// The socket's local address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            Incoming::Tcp(socket) | Incoming::Tls(socket, _) => socket.local_addr(),
        }
    }

    /// Completes the TLS handshake (if any) within `timeout` and splits the stream: the read
    /// side for the connection task, the write side given to `outbox`'s writer task. `None`
    /// (logged) when the handshake fails or takes too long.
    pub async fn open(
        self,
        peer: SocketAddr,
        timeout: Duration,
        outbox: &Arc<Outbox>,
    ) -> Option<Opened> {
        match self {
            Incoming::Tcp(socket) => {
                let (reader, writer) = socket.into_split();
                Some(Opened {
                    reader: ReadSide::Tcp(reader),
                    writer: tokio::spawn(outbox.clone().run_writer(writer)),
                    tls: None,
                })
            }
            Incoming::Tls(socket, acceptor) => {
                let stream = match tokio::time::timeout(timeout, acceptor.accept(socket)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        tracing::info!(%peer, "TLS handshake failed: {e}");
                        return None;
                    }
                    Err(_) => {
                        tracing::info!(%peer, "TLS handshake timed out");
                        return None;
                    }
                };
                let tls = TlsPeer::of_session(stream.get_ref().1);
                let (reader, writer) = tokio::io::split(stream);
                Some(Opened {
                    reader: ReadSide::Tls(reader),
                    writer: tokio::spawn(outbox.clone().run_writer(writer)),
                    tls: Some(tls),
                })
            }
        }
    }
}

/// A connection's stream once it is ready for AMQP.
pub struct Opened {
    /// What the connection task reads.
    pub reader: ReadSide,
    /// The writer task draining the outbox into the write side.
    pub writer: JoinHandle<()>,
    /// On TLS, what the handshake told about the client.
    pub tls: Option<TlsPeer>,
}

/// The half of the stream a connection task reads.
pub enum ReadSide {
    /// Plain TCP.
    Tcp(OwnedReadHalf),
    /// TLS over TCP.
    Tls(ReadHalf<TlsStream<TcpStream>>),
}

impl ReadSide {
    /// The raw socket, on plain TCP only: with TLS the bytes on it are records, not frames,
    /// so reading it directly (as lingering does) would bypass the decryption.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            ReadSide::Tcp(reader) => Some(reader.as_ref()),
            ReadSide::Tls(_) => None,
        }
    }

    /// Reads what is available into `buf`'s spare capacity (0: the peer closed).
    pub async fn read_buf<B: bytes::BufMut>(&mut self, buf: &mut B) -> std::io::Result<usize> {
        match self {
            ReadSide::Tcp(reader) => reader.read_buf(buf).await,
            ReadSide::Tls(reader) => reader.read_buf(buf).await,
        }
    }
}
