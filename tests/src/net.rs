//! Accepting connections for the test servers (the mock provider's TLS mode, the
//! benchmark proxy).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// The next connection, with `TCP_NODELAY` set (small SSE events and answers must leave
/// at once). A client that gave up before it was accepted is skipped; other accept errors
/// (usually out of file descriptors) are reported and followed by a short back-off
/// instead of a busy loop.
pub async fn accept_nodelay(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if let Err(error) = stream.set_nodelay(true) {
                    eprintln!("could not set TCP_NODELAY: {error}");
                }
                return (stream, peer);
            }
            Err(error) if sluice_shared::net::peer_gave_up(&error) => {}
            Err(error) => {
                eprintln!("accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
