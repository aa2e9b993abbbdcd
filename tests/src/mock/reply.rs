//! Deterministic content: what the mock "model" says, how many tokens it bills, and the
//! embedding vectors. Every API shape first reduces its request to a [`Prompt`].

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{Value, json};

/// How much of the user's text (or of a tool result) is echoed back.
const ECHO_CHARS: usize = 200;
/// How much of the system prompt is echoed back.
const SYSTEM_ECHO_CHARS: usize = 40;
/// Output tokens billed for a tool call, whatever its arguments.
const TOOL_CALL_OUTPUT_TOKENS: u64 = 10;
/// Embedding dimensions: small, so bodies stay small, but more than one so vectors differ.
pub const EMBEDDING_DIMENSIONS: usize = 8;

/// The parts of a request that decide the reply, in a shape-neutral form.
#[derive(Debug, Default)]
pub struct Prompt {
    pub model: String,
    /// All system text (system/developer messages, `system`, `systemInstruction`), joined.
    pub system: Option<String>,
    /// Text of the last user message (text parts joined with a space).
    pub last_user_text: String,
    /// Images in the last user message.
    pub last_user_images: usize,
    /// Whether the last message is an ordinary user message (not a tool result).
    pub last_is_user: bool,
    /// Set when the last message is a tool result: that result's text.
    pub tool_result: Option<String>,
    /// Tool the model should call, already filtered by `tool_choice`.
    pub tool_to_call: Option<String>,
    pub json_mode: bool,
    /// Characters of all message and system text, for the input token count.
    pub text_chars: usize,
}

impl Prompt {
    /// Adds text that counts towards input tokens.
    pub fn count(&mut self, text: &str) {
        self.text_chars += text.chars().count();
    }

    pub fn add_system(&mut self, text: &str) {
        self.count(text);
        match &mut self.system {
            Some(system) => {
                system.push(' ');
                system.push_str(text);
            }
            None => self.system = Some(text.to_owned()),
        }
    }

    pub fn input_tokens(&self) -> u64 {
        input_tokens_for_chars(self.text_chars)
    }
}

/// `max(1, ceil(chars / 4))`: the usual "four characters a token" rule of thumb.
pub fn input_tokens_for_chars(chars: usize) -> u64 {
    u64::try_from(chars.div_ceil(4)).unwrap_or(u64::MAX).max(1)
}

/// What the model answers.
#[derive(Debug, Clone)]
pub enum Reply {
    Text(String),
    ToolCall { name: String, arguments: Value },
}

#[derive(Debug, Clone)]
pub struct Generated {
    pub reply: Reply,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Generated {
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

pub fn generate(prompt: &Prompt) -> Generated {
    let input_tokens = prompt.input_tokens();
    if prompt.last_is_user
        && let Some(name) = &prompt.tool_to_call
    {
        return Generated {
            reply: Reply::ToolCall {
                name: name.clone(),
                arguments: json!({"query": prompt.last_user_text}),
            },
            input_tokens,
            output_tokens: TOOL_CALL_OUTPUT_TOKENS,
        };
    }
    let mut text = match &prompt.tool_result {
        // A tool result gets exactly this reply: no image or system suffix.
        Some(result) => format!("Tool said: {}", first_chars(result, ECHO_CHARS)),
        None => {
            let mut text = format!(
                "Hello from mock {}! You said: {}",
                prompt.model,
                first_chars(&prompt.last_user_text, ECHO_CHARS)
            );
            if prompt.last_user_images > 0 {
                text.push_str(&format!(" ({} images)", prompt.last_user_images));
            }
            if let Some(system) = &prompt.system {
                text.push_str(&format!(
                    " [system: {}]",
                    first_chars(system, SYSTEM_ECHO_CHARS)
                ));
            }
            text
        }
    };
    if prompt.json_mode {
        text = json!({"answer": text}).to_string();
    }
    let output_tokens = u64::try_from(text.split_whitespace().count()).unwrap_or(u64::MAX);
    Generated {
        reply: Reply::Text(text),
        input_tokens,
        output_tokens,
    }
}

pub fn first_chars(text: &str, chars: usize) -> &str {
    match text.char_indices().nth(chars) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// Splits text into one piece per word, each word keeping the whitespace after it, so the
/// pieces concatenate back to exactly `text`. Leading whitespace stays with the first word.
pub fn word_chunks(text: &str) -> Vec<&str> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut in_space = false;
    let mut seen_word = false;
    for (index, ch) in text.char_indices() {
        if ch.is_whitespace() {
            in_space = true;
        } else {
            if in_space && seen_word {
                chunks.push(&text[start..index]);
                start = index;
            }
            in_space = false;
            seen_word = true;
        }
    }
    if start < text.len() {
        chunks.push(&text[start..]);
    }
    chunks
}

/// Splits tool-call arguments into at least two fragments (where the text allows), the way
/// real providers stream partial JSON that is only valid once concatenated.
pub fn argument_fragments(arguments: &str) -> Vec<&str> {
    const FRAGMENT_CHARS: usize = 12;
    let boundaries: Vec<usize> = arguments
        .char_indices()
        .map(|(index, _)| index)
        .chain(std::iter::once(arguments.len()))
        .collect();
    let chars = boundaries.len() - 1;
    if chars < 2 {
        return vec![arguments];
    }
    let step = FRAGMENT_CHARS.min(chars.div_ceil(2));
    boundaries
        .iter()
        .step_by(step)
        .chain(std::iter::once(&arguments.len()))
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|pair| pair[0] < pair[1])
        .map(|pair| &arguments[*pair[0]..*pair[1]])
        .collect()
}

/// A deterministic unit-ish vector for `text`: FNV-1a seeds a SplitMix64 sequence, each
/// value mapped into [-1, 1].
pub fn embedding(text: &str) -> [f32; EMBEDDING_DIMENSIONS] {
    let mut seed = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let mut vector = [0.0_f32; EMBEDDING_DIMENSIONS];
    for value in &mut vector {
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // The top 24 bits fit an f32 mantissa exactly.
        let unit = (z >> 40) as f32 / (1_u64 << 24) as f32;
        *value = unit * 2.0 - 1.0;
    }
    vector
}

/// An embedding as JSON: a float array, or (for `encoding_format: "base64"`) the base64 of
/// its little-endian f32 bytes, as OpenAI sends it.
pub fn embedding_json(text: &str, base64: bool) -> Value {
    let vector = embedding(text);
    if base64 {
        let bytes: Vec<u8> = vector
            .iter()
            .flat_map(|value| value.to_le_bytes())
            .collect();
        Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
    } else {
        Value::from(
            vector
                .iter()
                .map(|value| f64::from(*value))
                .collect::<Vec<f64>>(),
        )
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default()
}

/// The string value of `key`, if it is a string.
pub fn str_field<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}
