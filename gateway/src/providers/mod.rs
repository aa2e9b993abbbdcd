//! Providers: one runtime [`Provider`] per `[providers.NAME]`, dispatched statically on
//! its [`Protocol`].
//!
//! [`Provider::prepare`] turns a client request into the provider's request (URL, body,
//! protocol headers) and says how to read the answer ([`Decode`]); [`Provider::request`]
//! adds the chosen key's credentials (made once per key) for one attempt. Everything a
//! protocol does lives in its file under [`protocol`]; key health and the concurrency
//! limiter are per-provider state ([`health`], [`limiter`]); [`http`] is the client.
pub mod health;
pub mod http;
pub mod limiter;
pub mod protocol;

use std::time::{Duration, Instant};

use ::http::header::{CONTENT_TYPE, USER_AGENT};
use ::http::{HeaderMap, HeaderName, HeaderValue, Uri};
use bytes::Bytes;

use crate::config::kind::{Protocol, ProviderKind};
use crate::config::{HealthConfig, ResolvedProvider};
use crate::error::GatewayError;
use crate::providers::health::KeyHealth;
use crate::providers::limiter::Limiter;
use crate::providers::protocol::adapter::{Endpoint, Plan};
use crate::request::Inbound;
pub use protocol::Decode;

/// One API key of a provider, with its health.
#[derive(Debug)]
pub struct ProviderKey {
    pub id: String,
    /// The header that carries this key in the provider's scheme, marked sensitive.
    credential: Option<(HeaderName, HeaderValue)>,
    pub weight: f64,
    pub health: KeyHealth,
}

/// A configured provider at run time.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    pub protocol: Protocol,
    /// Where the provider is, for its protocol's URLs.
    endpoint: Endpoint,
    pub keys: Vec<ProviderKey>,
    pub models: Vec<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
    pub header_timeout: Duration,
    pub stream_idle_timeout: Duration,
    pub max_retries: u32,
    pub limiter: Limiter,
    pub health: HealthConfig,
    /// The one HTTP client for this provider's calls (pooled connections, its connect
    /// timeout).
    pub client: http::HttpClient,
    /// Start of the clock that key health uses; shared by all providers of a gateway.
    epoch: Instant,
}

const USER_AGENT_VALUE: &str = concat!("sluice-gateway/", env!("CARGO_PKG_VERSION"));

/// What to send for one target.
#[derive(Debug)]
pub enum Prepared {
    /// An HTTP call to the provider.
    Call(UpstreamCall),
    /// Answered without calling anyone (a token count for a provider that has no
    /// counting endpoint): the body in the client's shape.
    Local(Bytes),
}

#[derive(Debug)]
pub struct UpstreamCall {
    pub url: Uri,
    pub body: Bytes,
    pub headers: HeaderMap,
    pub decode: Decode,
    pub stream: bool,
}

impl Provider {
    pub fn new(cfg: ResolvedProvider, epoch: Instant) -> Result<Self, String> {
        let client =
            http::HttpClient::new(cfg.connect_timeout, &cfg.ca_roots).map_err(|e| e.to_string())?;
        let protocol = cfg.kind.protocol();
        let endpoint = Endpoint::new(
            cfg.name.clone(),
            cfg.kind,
            cfg.base_url.as_str(),
            cfg.api_version,
        );
        Ok(Provider {
            name: cfg.name,
            kind: cfg.kind,
            protocol,
            endpoint,
            keys: cfg
                .keys
                .into_iter()
                .map(|k| {
                    let credential = k
                        .secret
                        .as_ref()
                        .map(|s| protocol::credential_header(protocol, s.expose()))
                        .transpose()
                        .map_err(|_| {
                            format!(
                                "key `{}` contains characters that cannot be sent in an HTTP header",
                                k.id
                            )
                        })?;
                    Ok(ProviderKey {
                        id: k.id,
                        credential,
                        weight: k.weight,
                        health: KeyHealth::default(),
                    })
                })
                .collect::<Result<_, String>>()?,
            models: cfg.models,
            headers: cfg.headers,
            header_timeout: cfg.header_timeout,
            stream_idle_timeout: cfg.stream_idle_timeout,
            max_retries: cfg.max_retries,
            limiter: Limiter::new(cfg.max_concurrency, cfg.max_queue, cfg.queue_timeout),
            health: cfg.health,
            client,
            epoch,
        })
    }

    /// Milliseconds on the health clock.
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether some key is in rotation.
    pub fn has_available_key(&self, now_ms: u64) -> bool {
        self.keys.iter().any(|k| !k.health.is_open(now_ms))
    }

    /// Picks a key by weight among those in rotation and not `excluded` (keys this request
    /// already saw refused). `None` when no such key is left: every remaining key is out
    /// of rotation, so the provider's breaker is open and it gets no call until a key's
    /// cooldown ends (then it is tried again, at a ramping share).
    pub fn choose_key(&self, excluded: &[usize]) -> Option<usize> {
        let now = self.now_ms();
        let weights: Vec<f64> = self
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                if excluded.contains(&i) {
                    0.0
                } else {
                    k.health.effective_weight(k.weight, now, &self.health)
                }
            })
            .collect();
        let total: f64 = weights.iter().sum();
        if total > 0.0 {
            let mut pick = fastrand::f64() * total;
            for (i, w) in weights.iter().enumerate() {
                if *w > 0.0 && pick < *w {
                    return Some(i);
                }
                pick -= w;
            }
            return weights.iter().rposition(|w| *w > 0.0);
        }
        None
    }

    /// How long until the first key out of rotation comes back (zero if one is in).
    pub fn reopens_in(&self) -> Duration {
        let now = self.now_ms();
        let soonest = self
            .keys
            .iter()
            .map(|k| k.health.open_until_ms())
            .min()
            .unwrap_or(0);
        Duration::from_millis(soonest.saturating_sub(now))
    }

    /// The complete HTTP request of one attempt: the prepared call with the key's
    /// credentials in the provider's scheme.
    pub fn request(
        &self,
        call: &UpstreamCall,
        key: usize,
    ) -> Result<::http::Request<http::RequestBody>, GatewayError> {
        let mut request = ::http::Request::post(call.url.clone())
            .body(http::RequestBody::new(call.body.clone()))
            .map_err(|e| {
                GatewayError::internal(format!("cannot build the provider request: {e}"))
            })?;
        let headers = request.headers_mut();
        headers.reserve(call.headers.len() + 3);
        for (name, value) in &call.headers {
            headers.insert(name, value.clone());
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        if let Some(credential) = self.keys.get(key).and_then(|k| k.credential.as_ref()) {
            headers.insert(credential.0.clone(), credential.1.clone());
        }
        Ok(request)
    }

    /// The provider's request for `inbound`, sent to `model`: its configured headers,
    /// then what its protocol makes of the request.
    pub fn prepare(&self, inbound: &mut Inbound, model: &str) -> Result<Prepared, GatewayError> {
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        let stream = inbound.stream;
        match protocol::prepare(self.protocol, &self.endpoint, inbound, model, &mut headers)? {
            Plan::Local(body) => Ok(Prepared::Local(body)),
            Plan::Call { url, body, decode } => Ok(Prepared::Call(UpstreamCall {
                url,
                body,
                headers,
                decode,
                stream,
            })),
        }
    }
}
