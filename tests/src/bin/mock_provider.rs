//! `sluice-mock-provider`: the mock model provider as a process. See `sluice_tests::mock`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use sluice_tests::mock::{self, MockOptions};
use tracing_subscriber::EnvFilter;

/// A stand-in for the OpenAI, Azure OpenAI, Anthropic and Gemini APIs, with fault injection.
#[derive(Debug, Parser)]
#[command(name = "sluice-mock-provider", version)]
struct Cli {
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Sleep this long before sending response headers.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Sleep this long between streamed events.
    #[arg(long, default_value_t = 0)]
    chunk_delay_ms: u64,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs `--tls-key`.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .init();
    let options = MockOptions {
        latency: Duration::from_millis(cli.latency_ms),
        chunk_delay: Duration::from_millis(cli.chunk_delay_ms),
    };
    let tls = match (&cli.tls_cert, &cli.tls_key) {
        (Some(cert), Some(key)) => Some(mock::tls_config(cert, key)?),
        _ => None,
    };
    let (listener, addr) = mock::bind(cli.listen).await?;
    // Tests wait for exactly this line; nothing else goes to stdout.
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {scheme}://{addr}")?;
    stdout.flush()?;
    drop(stdout);
    match tls {
        Some(tls) => mock::serve_tls(listener, options, tls).await?,
        None => mock::serve(listener, options).await?,
    }
    Ok(())
}
