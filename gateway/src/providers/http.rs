//! The HTTP client for provider calls: hyper's pooled client over rustls, used directly.
//!
//! A provider call is always the same shape — a POST with a complete JSON body to a URL
//! fixed per provider — so none of a general-purpose client's machinery (redirects,
//! URL re-parsing, per-request middleware stacks, cookie and proxy handling) is needed,
//! and on the request path it measurably costs: this is the client the gateway's
//! throughput benchmark is about. Timeouts other than connect (response headers, stream
//! idle) are applied by the engine around the futures this client returns.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::CertificateDer;

/// The request body type of provider calls: one complete buffer.
pub type RequestBody = Full<Bytes>;

/// A pooled HTTP/1.1 and HTTP/2 (by ALPN) client for one provider.
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: Client<ConnectTimeout<HttpsConnector<HttpConnector>>, RequestBody>,
}

/// A connector whose whole connection setup (DNS, TCP and TLS) must finish within
/// `timeout`; otherwise it fails with [`std::io::ErrorKind::TimedOut`].
#[derive(Clone, Debug)]
pub struct ConnectTimeout<C> {
    inner: C,
    timeout: Duration,
}

impl<C> tower_service::Service<http::Uri> for ConnectTimeout<C>
where
    C: tower_service::Service<http::Uri> + Send,
    C::Future: Send + 'static,
    C::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = C::Response;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<C::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(result) => result.map_err(Into::into),
                Err(_) => Err(Box::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connect timeout ({} ms, TCP and TLS)", timeout.as_millis()),
                )) as Self::Error),
            }
        })
    }
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up TLS for provider calls: {0}")]
pub struct ClientBuildError(String);

/// The TLS configuration for every provider: the operating system's trust store through
/// the platform verifier. Built once per process.
fn tls_config() -> Result<rustls::ClientConfig, ClientBuildError> {
    static CONFIG: OnceLock<Result<rustls::ClientConfig, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            use rustls_platform_verifier::ConfigVerifierExt as _;
            rustls::ClientConfig::with_platform_verifier().map_err(|e| e.to_string())
        })
        .clone()
        .map_err(ClientBuildError)
}

/// The operating system's trust store plus `extra_roots` (a provider's `ca_file`).
fn tls_config_with_roots(
    extra_roots: &[CertificateDer<'static>],
) -> Result<rustls::ClientConfig, ClientBuildError> {
    let builder = rustls::ClientConfig::builder();
    let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(
        extra_roots.iter().cloned(),
        builder.crypto_provider().clone(),
    )
    .map_err(|e| {
        ClientBuildError(format!(
            "the ca_file certificates are not usable as roots: {e}"
        ))
    })?;
    // The platform verifier stands in for the default one; it still verifies everything.
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

impl HttpClient {
    /// A client whose connection attempts give up after `connect_timeout`; idle pooled
    /// connections are closed after 90 s. Servers are verified against the operating
    /// system's trust store plus `extra_roots`.
    pub fn new(
        connect_timeout: Duration,
        extra_roots: &[CertificateDer<'static>],
    ) -> Result<Self, ClientBuildError> {
        let tls = if extra_roots.is_empty() {
            tls_config()?
        } else {
            tls_config_with_roots(extra_roots)?
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        // The TCP timeout above does not cover the TLS handshake: bound both together.
        let https = ConnectTimeout {
            inner: https,
            timeout: connect_timeout,
        };
        let inner = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .build(https);
        Ok(HttpClient { inner })
    }

    /// Sends one request; resolves when the response headers have arrived.
    pub async fn send(
        &self,
        request: http::Request<RequestBody>,
    ) -> Result<http::Response<Incoming>, SendError> {
        self.inner.request(request).await.map_err(SendError)
    }
}

/// A request that got no response: could not connect, or the connection failed before
/// the response headers.
#[derive(Debug, thiserror::Error)]
#[error("{}", crate::error::error_chain(&self.0))]
pub struct SendError(hyper_util::client::legacy::Error);

impl SendError {
    /// Whether the failure was the connect timeout.
    pub fn is_timeout(&self) -> bool {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&self.0);
        while let Some(e) = source {
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::TimedOut
            {
                return true;
            }
            source = e.source();
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The TLS stack (crypto provider, platform trust store) sets up, and an `https://`
    /// call that cannot connect fails as a connect error instead of panicking.
    #[tokio::test]
    async fn https_client_builds_and_reports_connect_failures() {
        let client = HttpClient::new(Duration::from_secs(2), &[]);
        assert!(client.is_ok(), "{:?}", client.err());
        let Ok(client) = client else { return };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(9);
        // The listener is gone: nothing accepts on this port.
        let request = http::Request::post(format!("https://127.0.0.1:{port}/v1/chat/completions"))
            .body(RequestBody::new(Bytes::from_static(b"{}")));
        assert!(request.is_ok());
        let Ok(request) = request else { return };
        let error = client.send(request).await.err();
        let message = error.map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("onnect"), "{message}");
    }

    /// A server that accepts TCP but never answers the TLS handshake is cut off by the
    /// connect timeout (not left to the much longer response-header timeout).
    #[tokio::test]
    async fn connect_timeout_covers_the_tls_handshake() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0");
        assert!(listener.is_ok());
        let Ok(listener) = listener else { return };
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(9);
        let client = HttpClient::new(Duration::from_millis(200), &[]);
        let Ok(client) = client else { return };
        let request = http::Request::post(format!("https://127.0.0.1:{port}/v1/messages"))
            .body(RequestBody::new(Bytes::from_static(b"{}")));
        let Ok(request) = request else { return };
        let outcome = tokio::time::timeout(Duration::from_secs(20), client.send(request)).await;
        assert!(outcome.is_ok(), "the connect timeout did not fire");
        let Ok(result) = outcome else { return };
        let error = result.err();
        assert!(
            error.as_ref().is_some_and(SendError::is_timeout),
            "{error:?}"
        );
        drop(listener);
    }
}
