//! The management API's HTTPS listener: TCP accepted in one task, each TLS handshake in a task
//! of its own (under the handshake timeout), so a client that is slow to handshake, or never
//! does, holds up nobody else. axum only sees completed handshakes.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Handshaken connections waiting for axum; more wait in their handshake tasks.
const READY: usize = 64;

/// A listener for [`axum::serve`] that yields TLS streams with their peer's address.
#[derive(Debug)]
pub struct HttpsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl HttpsListener {
    /// Starts accepting on `socket` (bound to `local`); the accepting task ends when the
    /// listener is dropped.
    pub fn new(
        socket: TcpListener,
        local: SocketAddr,
        acceptor: TlsAcceptor,
        handshake_timeout: Duration,
    ) -> HttpsListener {
        let (ready_tx, ready) = mpsc::channel(READY);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = ready_tx.closed() => break,
                    accepted = socket.accept() => accepted,
                };
                let (tcp, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!("management API (https): accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let ready_tx = ready_tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = ready_tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, "management API TLS handshake failed: {e}");
                        }
                        Err(_) => tracing::debug!(%peer, "management API TLS handshake timed out"),
                    }
                });
            }
        });
        HttpsListener { ready, local }
    }
}

impl axum::serve::Listener for HttpsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The accepting task only ends once this listener is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
