//! The providers Sluice knows: their wire protocol, default base URL, auth scheme and the
//! environment variable that holds their key in a zero-config start.

use serde::Deserialize;

/// `kind = "…"` in a `[providers.NAME]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    Openai,
    /// Azure OpenAI: deployments in the URL path, `api-key` header, `api-version` query.
    Azure,
    Anthropic,
    Gemini,
    Mistral,
    Groq,
    Together,
    Deepseek,
    Openrouter,
    Xai,
    Fireworks,
    Ollama,
    Vllm,
    /// Any other server that speaks the OpenAI API; `base_url` is required.
    OpenaiCompatible,
}

/// The wire protocol a provider speaks, which decides translation and framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OpenAI Chat Completions / Responses / Embeddings, `Authorization: Bearer`.
    OpenAi,
    /// The OpenAI protocol with Azure's URL layout and `api-key` header.
    Azure,
    Anthropic,
    Gemini,
}

/// Every kind, for listings and zero-config discovery.
pub const ALL_KINDS: [ProviderKind; 14] = [
    ProviderKind::Openai,
    ProviderKind::Azure,
    ProviderKind::Anthropic,
    ProviderKind::Gemini,
    ProviderKind::Mistral,
    ProviderKind::Groq,
    ProviderKind::Together,
    ProviderKind::Deepseek,
    ProviderKind::Openrouter,
    ProviderKind::Xai,
    ProviderKind::Fireworks,
    ProviderKind::Ollama,
    ProviderKind::Vllm,
    ProviderKind::OpenaiCompatible,
];

impl ProviderKind {
    pub fn protocol(self) -> Protocol {
        match self {
            ProviderKind::Anthropic => Protocol::Anthropic,
            ProviderKind::Gemini => Protocol::Gemini,
            ProviderKind::Azure => Protocol::Azure,
            _ => Protocol::OpenAi,
        }
    }

    /// The name used in config and in zero-config provider names.
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Azure => "azure",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
            ProviderKind::Mistral => "mistral",
            ProviderKind::Groq => "groq",
            ProviderKind::Together => "together",
            ProviderKind::Deepseek => "deepseek",
            ProviderKind::Openrouter => "openrouter",
            ProviderKind::Xai => "xai",
            ProviderKind::Fireworks => "fireworks",
            ProviderKind::Ollama => "ollama",
            ProviderKind::Vllm => "vllm",
            ProviderKind::OpenaiCompatible => "openai-compatible",
        }
    }

    /// The public endpoint, or `None` where there is no single one (Azure resources,
    /// self-hosted servers without a conventional address).
    pub fn default_base_url(self) -> Option<&'static str> {
        Some(match self {
            ProviderKind::Openai => "https://api.openai.com/v1",
            ProviderKind::Anthropic => "https://api.anthropic.com",
            ProviderKind::Gemini => "https://generativelanguage.googleapis.com/v1beta",
            ProviderKind::Mistral => "https://api.mistral.ai/v1",
            ProviderKind::Groq => "https://api.groq.com/openai/v1",
            ProviderKind::Together => "https://api.together.xyz/v1",
            ProviderKind::Deepseek => "https://api.deepseek.com/v1",
            ProviderKind::Openrouter => "https://openrouter.ai/api/v1",
            ProviderKind::Xai => "https://api.x.ai/v1",
            ProviderKind::Fireworks => "https://api.fireworks.ai/inference/v1",
            ProviderKind::Ollama => "http://127.0.0.1:11434/v1",
            ProviderKind::Vllm => "http://127.0.0.1:8000/v1",
            ProviderKind::Azure | ProviderKind::OpenaiCompatible => return None,
        })
    }

    /// The variable that holds this provider's key by convention.
    pub fn api_key_env(self) -> Option<&'static str> {
        Some(match self {
            ProviderKind::Openai => "OPENAI_API_KEY",
            ProviderKind::Azure => "AZURE_OPENAI_API_KEY",
            ProviderKind::Anthropic => "ANTHROPIC_API_KEY",
            ProviderKind::Gemini => "GEMINI_API_KEY",
            ProviderKind::Mistral => "MISTRAL_API_KEY",
            ProviderKind::Groq => "GROQ_API_KEY",
            ProviderKind::Together => "TOGETHER_API_KEY",
            ProviderKind::Deepseek => "DEEPSEEK_API_KEY",
            ProviderKind::Openrouter => "OPENROUTER_API_KEY",
            ProviderKind::Xai => "XAI_API_KEY",
            ProviderKind::Fireworks => "FIREWORKS_API_KEY",
            ProviderKind::Ollama | ProviderKind::Vllm | ProviderKind::OpenaiCompatible => {
                return None;
            }
        })
    }

    /// Whether requests need a key. Self-hosted servers usually run without one.
    pub fn requires_key(self) -> bool {
        !matches!(
            self,
            ProviderKind::Ollama | ProviderKind::Vllm | ProviderKind::OpenaiCompatible
        )
    }

    /// Whether the server reports usage on streams when asked with
    /// `stream_options.include_usage`. Mistral rejects the option and always reports usage
    /// in its last chunk, so it is left out.
    pub fn accepts_stream_usage_option(self) -> bool {
        !matches!(self, ProviderKind::Mistral)
    }

    /// Whether an OpenAI-protocol server takes `max_completion_tokens` (OpenAI's reasoning
    /// models refuse `max_tokens`); other servers only know `max_tokens`.
    pub fn prefers_max_completion_tokens(self) -> bool {
        matches!(self, ProviderKind::Openai | ProviderKind::Azure)
    }
}
