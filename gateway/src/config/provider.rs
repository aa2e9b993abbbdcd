//! `[providers.NAME]`: one upstream, its keys and its health settings.

use std::collections::BTreeMap;
use std::path::Path;

use rustls::pki_types::CertificateDer;
use serde::Deserialize;

use super::kind::ProviderKind;

/// `[providers.NAME]`
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Which API the provider speaks: openai, azure, anthropic, gemini, mistral, groq,
    /// together, deepseek, openrouter, xai, fireworks, ollama, vllm, openai-compatible.
    pub kind: ProviderKind,
    /// Overrides the kind's public endpoint. Required for `azure`
    /// (`https://RESOURCE.openai.azure.com/openai`) and `openai-compatible`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// API keys, chosen by weight; a key that fails is rotated out for a while.
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// Models listed by `GET /v1/models` as `NAME/model`, and matched when a client sends
    /// a bare model name (see README "Model names").
    #[serde(default)]
    pub models: Vec<String>,
    /// Extra headers sent with every request to this provider (e.g. OpenRouter's
    /// `HTTP-Referer`). Not secret: use `keys` for credentials.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Azure only: the `api-version` query parameter. Default `2024-10-21`.
    #[serde(default)]
    pub api_version: Option<String>,
    /// A PEM file of CA certificates to trust for this provider in addition to the
    /// operating system's trust store: a self-hosted endpoint (vLLM, Ollama, an internal
    /// proxy) whose certificate an internal CA issued. Only for an `https://` base URL;
    /// read when the configuration is loaded.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Time allowed to open a connection: DNS, TCP and the TLS handshake together.
    /// Default 5000 ms.
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
    /// Time allowed from sending the request to receiving response headers. For
    /// non-streamed requests providers send headers only when the answer is complete, so
    /// this bounds the whole generation. Default 300000 ms (5 min).
    #[serde(default)]
    pub header_timeout_ms: Option<u64>,
    /// Longest silence allowed between two reads of a response body (stream events or
    /// body bytes). Before the first event reaches the client this triggers a retry or
    /// fallback; after it, the stream ends with an error event. Default 60000 ms.
    #[serde(default)]
    pub stream_idle_timeout_ms: Option<u64>,
    /// Requests in flight to this provider at once. Default 512.
    #[serde(default)]
    pub max_concurrency: Option<usize>,
    /// Requests allowed to wait for a free slot when `max_concurrency` is reached; beyond
    /// that a request moves to its next fallback or gets a 503. Default 1024.
    #[serde(default)]
    pub max_queue: Option<usize>,
    /// Longest wait in that queue. Default 10000 ms.
    #[serde(default)]
    pub queue_timeout_ms: Option<u64>,
    /// Overrides `routing.max_retries` for this provider.
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Taking failing keys out of rotation.
    #[serde(default)]
    pub health: HealthConfig,
}

/// `keys = [{ value = "env:…", weight = 1.0, id = "primary" }]`
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// `env:VAR` or `file:/path`. Literal keys are refused.
    pub value: String,
    /// Relative share of traffic. Default 1.0.
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// A name for logs, metrics and audit records. Default `key<N>`.
    #[serde(default)]
    pub id: Option<String>,
}

pub(super) fn default_weight() -> f64 {
    1.0
}

/// `[providers.NAME.health]`
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Consecutive failures (connect errors, timeouts, 5xx) that take a key out of
    /// rotation. Default 5. A 401/403 takes it out at once; a 429 for its Retry-After.
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    /// How long a key stays out the first time; doubles each time it trips again, up to
    /// `max_cooldown_ms`. Default 5000 ms.
    #[serde(default = "default_cooldown_ms")]
    pub cooldown_ms: u64,
    /// Default 300000 ms.
    #[serde(default = "default_max_cooldown_ms")]
    pub max_cooldown_ms: u64,
    /// After a cooldown the key's share of traffic ramps from 10 % back to full over this
    /// long. Default 30000 ms.
    #[serde(default = "default_ramp_ms")]
    pub ramp_ms: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            failure_threshold: default_failure_threshold(),
            cooldown_ms: default_cooldown_ms(),
            max_cooldown_ms: default_max_cooldown_ms(),
            ramp_ms: default_ramp_ms(),
        }
    }
}

fn default_failure_threshold() -> u32 {
    5
}
fn default_cooldown_ms() -> u64 {
    5_000
}
fn default_max_cooldown_ms() -> u64 {
    300_000
}
fn default_ramp_ms() -> u64 {
    30_000
}

impl ProviderConfig {
    /// A provider with every optional setting at its default.
    pub fn new(kind: ProviderKind, base_url: Option<String>, keys: Vec<KeyConfig>) -> Self {
        ProviderConfig {
            kind,
            base_url,
            keys,
            models: Vec::new(),
            headers: BTreeMap::new(),
            api_version: None,
            ca_file: None,
            connect_timeout_ms: None,
            header_timeout_ms: None,
            stream_idle_timeout_ms: None,
            max_concurrency: None,
            max_queue: None,
            queue_timeout_ms: None,
            max_retries: None,
            health: HealthConfig::default(),
        }
    }
}

/// Reads a provider's `ca_file`: every certificate in a PEM file.
pub(super) fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject as _;
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read `{shown}`: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("`{shown}` is not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "`{shown}` holds no certificate (expected PEM blocks starting with -----BEGIN CERTIFICATE-----)"
        ));
    }
    Ok(certs)
}
