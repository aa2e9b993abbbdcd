//! `sluice-bench-proxy`: the cheapest possible HTTP/1.1 pass-through reverse proxy, the
//! floor that the gateway's overhead is measured against. It forwards method, path,
//! query, headers and streamed bodies, and does nothing else on purpose.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

#[derive(Debug, Parser)]
#[command(name = "sluice-bench-proxy", version)]
/// Minimal HTTP/1.1 reverse proxy used as a benchmark baseline.
struct Cli {
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Upstream base URL, e.g. http://127.0.0.1:8080 (plain HTTP only).
    #[arg(long)]
    upstream: Uri,
}

type ProxyBody = Either<Incoming, Full<Bytes>>;

/// Connection-scoped headers (RFC 9110 §7.6.1) must not be forwarded; hyper frames each
/// hop's body itself.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

struct Upstream {
    client: Client<HttpConnector, Incoming>,
    scheme_and_authority: String,
    host: HeaderValue,
}

async fn forward(
    upstream: &Upstream,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, std::convert::Infallible> {
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let uri = match format!("{}{path}", upstream.scheme_and_authority).parse::<Uri>() {
        Ok(uri) => uri,
        Err(error) => return Ok(bad_gateway(format!("bad upstream uri: {error}"))),
    };
    parts.uri = uri;
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.insert(header::HOST, upstream.host.clone());
    match upstream
        .client
        .request(Request::from_parts(parts, body))
        .await
    {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Ok(Response::from_parts(parts, Either::Left(body)))
        }
        Err(error) => Ok(bad_gateway(format!("upstream request failed: {error}"))),
    }
}

fn bad_gateway(message: String) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(message))));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let authority = cli
        .upstream
        .authority()
        .context("--upstream needs a host, e.g. http://127.0.0.1:8080")?
        .clone();
    if cli.upstream.scheme_str() != Some("http") {
        anyhow::bail!("--upstream must be a plain http:// URL");
    }
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    // The legacy client keeps idle connections pooled per host, so steady load reuses them.
    let client = Client::builder(TokioExecutor::new()).build(connector);
    let upstream = Arc::new(Upstream {
        client,
        scheme_and_authority: format!("http://{authority}"),
        host: HeaderValue::from_str(authority.as_str())?,
    });

    let listener = TcpListener::bind(cli.listen).await?;
    let addr = listener.local_addr()?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{addr}")?;
    stdout.flush()?;
    drop(stdout);

    loop {
        let (stream, _) = sluice_tests::net::accept_nodelay(&listener).await;
        let upstream = Arc::clone(&upstream);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let upstream = Arc::clone(&upstream);
                async move { forward(&upstream, request).await }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            // Errors here are clients hanging up mid-response: nothing to do about them.
            let _ = connection.await;
        });
    }
}
