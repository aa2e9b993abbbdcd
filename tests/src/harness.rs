//! Starting the workspace's real binaries for tests: each prints
//! `listening on http://ADDR` (`https://` for a TLS server) on stdout once it is ready, and [`ChildServer`] waits for it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;

/// How long a binary may take to print its `listening on` line: generous, because a
/// debug build on a loaded 2-core CI machine can be slow to start.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

const READY_PREFIX: &str = "listening on ";

/// The binaries the end-to-end tests start, as cargo built them for this test run.
///
/// Build it with [`bins!`](crate::bins) in the integration test: cargo sets
/// `CARGO_BIN_EXE_<name>` only while compiling integration tests, and builds a package's
/// own binaries (never another package's) before them. The gateway is therefore this
/// package's `sluice-gateway-under-test`, the same `main` as `sluice-gateway`, so a gateway
/// edit followed by `cargo test -p sluice-tests` runs the edited code.
#[derive(Clone, Copy, Debug)]
pub struct Bins {
    gateway: &'static str,
    mock_provider: &'static str,
    bench_proxy: &'static str,
}

impl Bins {
    /// Use [`bins!`](crate::bins), which fills these in from cargo.
    pub const fn new(
        gateway: &'static str,
        mock_provider: &'static str,
        bench_proxy: &'static str,
    ) -> Bins {
        Bins {
            gateway,
            mock_provider,
            bench_proxy,
        }
    }

    /// `sluice-gateway-under-test`: the gateway built from the current source.
    pub fn gateway(&self) -> &'static Path {
        Path::new(self.gateway)
    }

    /// `sluice-mock-provider`.
    pub fn mock_provider(&self) -> &'static Path {
        Path::new(self.mock_provider)
    }

    /// `sluice-bench-proxy`.
    pub fn bench_proxy(&self) -> &'static Path {
        Path::new(self.bench_proxy)
    }
}

/// The [`Bins`] of this test run; only compiles in an integration test (tests/tests/),
/// where cargo provides the `CARGO_BIN_EXE_<name>` paths.
#[macro_export]
macro_rules! bins {
    () => {
        $crate::harness::Bins::new(
            env!("CARGO_BIN_EXE_sluice-gateway-under-test"),
            env!("CARGO_BIN_EXE_sluice-mock-provider"),
            env!("CARGO_BIN_EXE_sluice-bench-proxy"),
        )
    };
}

/// A server process started for a test, killed when dropped.
pub struct ChildServer {
    pub addr: SocketAddr,
    /// `http://ADDR` (or `https://` for a TLS server), without a trailing slash.
    pub base_url: String,
    child: Child,
    stdout_drain: JoinHandle<()>,
}

impl ChildServer {
    /// Starts `program` and waits until it prints `listening on http://ADDR`.
    ///
    /// Stdout is piped (and drained in the background afterwards so the child never blocks
    /// on a full pipe); stderr is inherited so its logs show up in the test output.
    pub async fn spawn(
        program: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> anyhow::Result<ChildServer> {
        let mut command = Command::new(program);
        command
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let stdout = child
            .stdout
            .take()
            .context("child stdout was not captured")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = Vec::new();
        let wait_for_ready = async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.trim().strip_prefix(READY_PREFIX)
                    && let Some((scheme, addr)) = url.split_once("://")
                {
                    let addr: SocketAddr = addr
                        .trim_end_matches('/')
                        .parse()
                        .with_context(|| format!("bad address in ready line `{line}`"))?;
                    return Ok((scheme.to_owned(), addr));
                }
                seen.push(line);
            }
            Err(anyhow!("stdout closed before the ready line"))
        };
        let (scheme, addr) = match tokio::time::timeout(STARTUP_DEADLINE, wait_for_ready).await {
            Ok(Ok(ready)) => ready,
            Ok(Err(error)) => {
                let status = child.try_wait().ok().flatten();
                bail!(
                    "{} {args:?} did not become ready: {error:#}; exit status {status:?}; stdout so far: {seen:?}",
                    program.display()
                );
            }
            Err(_) => bail!(
                "{} {args:?} printed no `{READY_PREFIX}…` line within {STARTUP_DEADLINE:?}; stdout so far: {seen:?}",
                program.display()
            ),
        };
        let stdout_drain = tokio::spawn(drain(lines));
        Ok(ChildServer {
            addr,
            base_url: format!("{scheme}://{addr}"),
            child,
            stdout_drain,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kills the process and waits for it to exit.
    pub async fn kill(&mut self) {
        // An error here means it had already exited, which is what we wanted.
        let _ = self.child.kill().await;
    }

    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// `base_url` joined with `path` (which should start with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        self.stdout_drain.abort();
    }
}

async fn drain(mut lines: tokio::io::Lines<BufReader<ChildStdout>>) {
    while let Ok(Some(_)) = lines.next_line().await {}
}

/// A `sluice-mock-provider` process with helpers for its `/_mock/` endpoints.
pub struct MockProvider {
    pub server: ChildServer,
    http: reqwest::Client,
}

impl MockProvider {
    /// Starts the mock on a free port; `extra_args` e.g. `["--chunk-delay-ms", "50"]`.
    pub async fn start(bins: Bins, extra_args: &[&str]) -> anyhow::Result<MockProvider> {
        let mut args = Vec::with_capacity(extra_args.len() + 2);
        if !extra_args.contains(&"--listen") {
            args.extend(["--listen", "127.0.0.1:0"]);
        }
        args.extend_from_slice(extra_args);
        let server = ChildServer::spawn(bins.mock_provider(), &args, &[]).await?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .context("cannot build the HTTP client")?;
        Ok(MockProvider { server, http })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// `http://ADDR`, without a trailing slash: what a provider's base URL points at.
    pub fn base_url(&self) -> &str {
        &self.server.base_url
    }

    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        let response = self
            .http
            .get(self.url(path))
            .send()
            .await
            .with_context(|| format!("GET {path} on the mock"))?
            .error_for_status()?;
        Ok(response.json().await?)
    }

    /// `GET /_mock/stats`.
    pub async fn stats(&self) -> anyhow::Result<Value> {
        self.get_json("/_mock/stats").await
    }

    /// `GET /_mock/requests`: the recorded API requests, oldest first.
    pub async fn requests(&self) -> anyhow::Result<Vec<Value>> {
        match self.get_json("/_mock/requests").await? {
            Value::Array(requests) => Ok(requests),
            other => bail!("/_mock/requests returned a non-array: {other}"),
        }
    }

    /// Appends fault specs to the queue; each API request pops one (`""` = no fault).
    ///
    /// Panics when the mock refuses them: a test with a mistyped fault must fail loudly.
    #[expect(
        clippy::panic,
        reason = "test support: a fault that cannot be queued must fail the test"
    )]
    pub async fn push_faults(&self, faults: &[&str]) {
        if let Err(error) = self.try_push_faults(faults).await {
            panic!("cannot queue faults {faults:?}: {error:#}");
        }
    }

    /// Like [`MockProvider::push_faults`], returning the error instead.
    pub async fn try_push_faults(&self, faults: &[&str]) -> anyhow::Result<()> {
        let response = self
            .http
            .post(self.url("/_mock/faults"))
            .json(&json!({"faults": faults}))
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            bail!("mock answered {status}: {body}");
        }
        Ok(())
    }

    /// `DELETE /_mock/faults`.
    pub async fn clear_faults(&self) -> anyhow::Result<()> {
        self.http
            .delete(self.url("/_mock/faults"))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// `POST /_mock/reset`: clears stats, recorded requests and the fault queue.
    pub async fn reset(&self) -> anyhow::Result<()> {
        self.http
            .post(self.url("/_mock/reset"))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// Polls `/_mock/stats` every 20 ms until `what` holds, returning those stats; fails
    /// with the last stats seen once `deadline` has passed.
    pub async fn wait_for(
        &self,
        what: impl Fn(&Value) -> bool,
        deadline: Duration,
    ) -> anyhow::Result<Value> {
        poll_until(deadline, || self.stats(), |stats| what(stats))
            .await
            .map_err(|e| match e {
                PollError::Read(e) => e,
                PollError::TimedOut(last) => anyhow!(
                    "mock stats did not reach the expected state within {deadline:?}; last: {last}"
                ),
            })
    }
}

/// Re-reads `read()` every 20 ms until `done` holds for what it returned, and returns that;
/// once `deadline` has passed, fails with the last value read. For state that a server
/// reaches in the background and exposes on an endpoint without a way to be notified.
pub async fn poll_until<T, F, Fut>(
    deadline: Duration,
    mut read: F,
    done: impl Fn(&T) -> bool,
) -> Result<T, PollError<T>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let give_up = tokio::time::Instant::now() + deadline;
    loop {
        let value = read().await.map_err(PollError::Read)?;
        if done(&value) {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= give_up {
            return Err(PollError::TimedOut(value));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Why [`poll_until`] gave up.
#[derive(Debug)]
pub enum PollError<T> {
    /// Reading failed.
    Read(anyhow::Error),
    /// The deadline passed; the last value read.
    TimedOut(T),
}

/// A gateway process ([`Bins::gateway`]) started from a TOML config written to a
/// temporary file.
pub struct Gateway {
    pub server: ChildServer,
    pub http: reqwest::Client,
    /// Keeps the config file alive as long as the process.
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// Starts `sluice-gateway serve --config <file with config_toml>` with `envs` added
    /// to its environment (provider keys are `env:` references).
    pub async fn start(
        bins: Bins,
        config_toml: &str,
        envs: &[(&str, &str)],
    ) -> anyhow::Result<Gateway> {
        let dir = tempfile::tempdir().context("cannot create a temp dir")?;
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, config_toml).context("cannot write the config")?;
        let path_text = path.to_string_lossy().into_owned();
        Self::start_args(bins, &["serve", "--config", &path_text], envs, dir).await
    }

    /// Starts the gateway with explicit arguments (e.g. the zero-config start).
    pub async fn start_args(
        bins: Bins,
        args: &[&str],
        envs: &[(&str, &str)],
        dir: tempfile::TempDir,
    ) -> anyhow::Result<Gateway> {
        let server = ChildServer::spawn(bins.gateway(), args, envs).await?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Gateway {
            server,
            http,
            _dir: dir,
        })
    }

    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// POSTs JSON to `path`.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<reqwest::Response> {
        Ok(self.http.post(self.url(path)).json(body).send().await?)
    }

    /// GETs `path` and parses the JSON answer (any status).
    pub async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self.http.get(self.url(path)).send().await?.json().await?)
    }

    /// Audit records from the admin API, polling until at least `n` exist (the audit
    /// writer commits asynchronously) or 20 s have passed.
    pub async fn audit_at_least(&self, admin_token: &str, n: usize) -> anyhow::Result<Vec<Value>> {
        let read = || async {
            let page: Value = self
                .http
                .get(self.url("/api/v1/audit?limit=1000"))
                .bearer_auth(admin_token)
                .send()
                .await?
                .json()
                .await?;
            Ok(page["data"].as_array().cloned().unwrap_or_default())
        };
        poll_until(Duration::from_secs(20), read, |records: &Vec<Value>| {
            records.len() >= n
        })
        .await
        .map_err(|e| match e {
            PollError::Read(e) => e,
            PollError::TimedOut(records) => {
                anyhow!("only {} audit records, wanted {n}", records.len())
            }
        })
    }

    /// `GET /metrics` as text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(self
            .http
            .get(self.url("/metrics"))
            .send()
            .await?
            .text()
            .await?)
    }
}

/// Reads an SSE body into its `data:` payloads (and event names), in order.
pub fn sse_events(body: &str) -> Vec<(Option<String>, String)> {
    let mut decoder = sluice_shared::sse::SseDecoder::new();
    let mut out = Vec::new();
    if decoder.push(body.as_bytes()).is_err() {
        return out;
    }
    while let Some(event) = decoder.next_event() {
        if !event.is_empty() {
            out.push((event.event, event.data));
        }
    }
    if let Some(event) = decoder.finish() {
        out.push((event.event, event.data));
    }
    out
}

/// An unused loopback port: bound then released, for "nothing listens here" tests.
pub fn closed_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
