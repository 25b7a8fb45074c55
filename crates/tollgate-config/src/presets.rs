//! Provider kinds and their presets: default base URL, key variable and auth style.

/// How a provider expects its API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStyle {
    /// `Authorization: Bearer KEY`.
    Bearer,
    /// `api-key: KEY` (Azure OpenAI).
    ApiKeyHeader,
    /// `x-api-key: KEY` (Anthropic).
    XApiKey,
    /// `x-goog-api-key: KEY` (Gemini).
    GoogApiKey,
}

impl AuthStyle {
    /// The header that carries the key, and its value.
    pub fn header(self, key: &str) -> (&'static str, String) {
        match self {
            AuthStyle::Bearer => ("authorization", format!("Bearer {key}")),
            AuthStyle::ApiKeyHeader => ("api-key", key.to_owned()),
            AuthStyle::XApiKey => ("x-api-key", key.to_owned()),
            AuthStyle::GoogApiKey => ("x-goog-api-key", key.to_owned()),
        }
    }
}

/// The wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    /// OpenAI Chat Completions (and its many compatible servers).
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
    /// Google Gemini `generateContent`.
    Gemini,
}

impl WireFormat {
    /// Every format with its config name.
    pub const ALL: [(&'static str, WireFormat); 3] = [
        ("openai", WireFormat::OpenAi),
        ("anthropic", WireFormat::Anthropic),
        ("gemini", WireFormat::Gemini),
    ];

    /// Parses a config name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, w)| *w)
    }
}

/// The provider kinds Tollgate knows. All but `Anthropic` and `Gemini` speak the OpenAI wire
/// format; `Mock` speaks whichever its `wire` setting names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// Any OpenAI-compatible server; `base_url` required.
    OpenAiCompatible,
    /// OpenAI.
    OpenAi,
    /// Azure OpenAI: deployment URLs, `api-version`, `api-key` header.
    Azure,
    /// Mistral.
    Mistral,
    /// DeepSeek.
    DeepSeek,
    /// Groq.
    Groq,
    /// Together AI.
    Together,
    /// Fireworks AI.
    Fireworks,
    /// OpenRouter.
    OpenRouter,
    /// Ollama's OpenAI-compatible API.
    Ollama,
    /// vLLM's OpenAI-compatible server.
    Vllm,
    /// llama.cpp's `llama-server`.
    LlamaCpp,
    /// Anthropic's Messages API.
    Anthropic,
    /// Google's Gemini API (Generative Language API).
    Gemini,
    /// The built-in mock provider, started in-process.
    Mock,
}

/// Preset values of one kind.
pub(crate) struct Preset {
    pub base_url: Option<&'static str>,
    pub key_env: Option<&'static str>,
    pub key_required: bool,
    pub auth: AuthStyle,
}

impl ProviderKind {
    /// Every kind with its config name.
    pub const ALL: [(&'static str, ProviderKind); 15] = [
        ("openai_compatible", ProviderKind::OpenAiCompatible),
        ("openai", ProviderKind::OpenAi),
        ("azure", ProviderKind::Azure),
        ("mistral", ProviderKind::Mistral),
        ("deepseek", ProviderKind::DeepSeek),
        ("groq", ProviderKind::Groq),
        ("together", ProviderKind::Together),
        ("fireworks", ProviderKind::Fireworks),
        ("openrouter", ProviderKind::OpenRouter),
        ("ollama", ProviderKind::Ollama),
        ("vllm", ProviderKind::Vllm),
        ("llamacpp", ProviderKind::LlamaCpp),
        ("anthropic", ProviderKind::Anthropic),
        ("gemini", ProviderKind::Gemini),
        ("mock", ProviderKind::Mock),
    ];

    /// Parses a config name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
    }

    /// The config name.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, k)| *k == self)
            .map_or("openai_compatible", |(n, _)| n)
    }

    /// The wire format of this kind (`Mock` defaults to OpenAI's; its `wire` setting overrides).
    pub fn wire(self) -> WireFormat {
        match self {
            ProviderKind::Anthropic => WireFormat::Anthropic,
            ProviderKind::Gemini => WireFormat::Gemini,
            _ => WireFormat::OpenAi,
        }
    }

    pub(crate) fn preset(self) -> Preset {
        let hosted = |url, env| Preset {
            base_url: Some(url),
            key_env: Some(env),
            key_required: true,
            auth: AuthStyle::Bearer,
        };
        let local = |url, env| Preset {
            base_url: url,
            key_env: env,
            key_required: false,
            auth: AuthStyle::Bearer,
        };
        match self {
            ProviderKind::OpenAi => hosted("https://api.openai.com/v1", "OPENAI_API_KEY"),
            ProviderKind::Mistral => hosted("https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
            ProviderKind::DeepSeek => hosted("https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
            ProviderKind::Groq => hosted("https://api.groq.com/openai/v1", "GROQ_API_KEY"),
            ProviderKind::Together => hosted("https://api.together.xyz/v1", "TOGETHER_API_KEY"),
            ProviderKind::Fireworks => {
                hosted("https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY")
            }
            ProviderKind::OpenRouter => {
                hosted("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY")
            }
            ProviderKind::Anthropic => Preset {
                auth: AuthStyle::XApiKey,
                ..hosted("https://api.anthropic.com/v1", "ANTHROPIC_API_KEY")
            },
            ProviderKind::Gemini => Preset {
                auth: AuthStyle::GoogApiKey,
                ..hosted(
                    "https://generativelanguage.googleapis.com/v1beta",
                    "GEMINI_API_KEY",
                )
            },
            ProviderKind::Azure => Preset {
                base_url: None,
                key_env: Some("AZURE_OPENAI_API_KEY"),
                key_required: true,
                auth: AuthStyle::ApiKeyHeader,
            },
            ProviderKind::Ollama => local(Some("http://127.0.0.1:11434/v1"), None),
            ProviderKind::Vllm => local(Some("http://127.0.0.1:8000/v1"), None),
            ProviderKind::LlamaCpp => local(Some("http://127.0.0.1:8080/v1"), None),
            ProviderKind::OpenAiCompatible => local(None, None),
            ProviderKind::Mock => local(Some("http://127.0.0.1:0/v1"), None),
        }
    }
}
