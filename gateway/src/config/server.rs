//! `[server]`: the listener and its connection limits.

use std::net::SocketAddr;

use serde::Deserialize;

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:8080`; port 0 picks a free port (the
    /// chosen address is printed as `listening on http://…`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes. Default 32 MiB (room for a few base64
    /// images); larger bodies get a 413 in the caller's API shape.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// On SIGTERM/Ctrl-C, how long in-flight requests (streams included) may take to
    /// finish before the process exits. Default 30.
    #[serde(default = "default_shutdown_grace_secs")]
    pub shutdown_grace_secs: u64,
    /// Time a client has to send a complete request head (request line and headers, or
    /// an HTTP/2 stream's headers), counted from its first byte. Slower connections are
    /// closed. Default 10000 ms.
    #[serde(default = "default_header_timeout_ms")]
    pub header_timeout_ms: u64,
    /// How long a keep-alive connection with no request in flight is kept without a byte
    /// from the client; also the longest a response may wait for a client that does not
    /// read it. A request waiting on a provider is not idle. Default 60000 ms.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Time a request's body has to arrive completely, from its head; slower bodies get
    /// a 408 in the API's error shape. Default 60000 ms.
    #[serde(default = "default_body_timeout_ms")]
    pub body_timeout_ms: u64,
    /// Client connections open at once. Past it, a new connection is answered with a
    /// 503 (`x-sluice-error: saturated`) and closed, so the gateway keeps file
    /// descriptors for the connections it serves and for its providers. Default: three
    /// quarters of the process's open-file limit (raised to its hard limit at start),
    /// at most 65536.
    #[serde(default)]
    pub max_connections: Option<usize>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            max_body_bytes: default_max_body_bytes(),
            shutdown_grace_secs: default_shutdown_grace_secs(),
            header_timeout_ms: default_header_timeout_ms(),
            idle_timeout_ms: default_idle_timeout_ms(),
            body_timeout_ms: default_body_timeout_ms(),
            max_connections: None,
        }
    }
}

fn default_header_timeout_ms() -> u64 {
    10_000
}
fn default_idle_timeout_ms() -> u64 {
    60_000
}
fn default_body_timeout_ms() -> u64 {
    60_000
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_max_body_bytes() -> usize {
    32 * 1024 * 1024
}
fn default_shutdown_grace_secs() -> u64 {
    30
}
