//! Secrets by reference.
//!
//! Config never holds a key's value: it holds `env:NAME` or `file:PATH`, resolved once at
//! load. The resolved [`Secret`] never prints (Debug and Display show `****`), so a key
//! cannot leak through a log line or an error message.

use std::fmt;

use crate::env::Environment;

/// A resolved secret value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that needs it: the outgoing request header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Only for values that are already public (tests, placeholders).
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// Resolves a reference. The error says what was wrong without echoing a literal value
/// (someone may have pasted a real key where a reference belongs).
pub fn resolve(reference: &str, env: &dyn Environment) -> Result<Secret, String> {
    if let Some(name) = reference.strip_prefix("env:") {
        if name.is_empty() {
            return Err("`env:` needs a variable name, e.g. env:OPENAI_API_KEY".into());
        }
        return match env.var(name) {
            Some(v) if !v.trim().is_empty() => Ok(Secret(v.trim().to_owned())),
            Some(_) => Err(format!("environment variable {name} is empty")),
            None => Err(format!("environment variable {name} is not set")),
        };
    }
    if let Some(path) = reference.strip_prefix("file:") {
        return match env.read_file(path) {
            Ok(v) if !v.trim().is_empty() => Ok(Secret(v.trim().to_owned())),
            Ok(_) => Err(format!("secret file {path} is empty")),
            Err(e) => Err(format!("cannot read secret file {path}: {e}")),
        };
    }
    Err(
        "must be a reference such as `env:OPENAI_API_KEY` or `file:/run/secrets/openai`; \
         literal secrets are not accepted in config"
            .into(),
    )
}

/// Removes every configured secret (provider keys, the admin token) from text that is
/// about to leave the process: upstream error messages and bodies forwarded to clients,
/// attempt details in audit records, stream error events. A provider that echoes the key
/// it was sent ("Incorrect API key provided: sk-…") cannot leak it through the gateway.
#[derive(Debug, Default)]
pub struct Scrubber {
    /// `None` when there is nothing to look for.
    matcher: Option<aho_corasick::AhoCorasick>,
}

/// What a secret is replaced with: no quote or backslash, so JSON stays JSON.
pub const SCRUBBED: &str = "[secret removed by sluice]";

/// Secrets shorter than this are not scrubbed: they would match ordinary text, and a
/// real credential is never this short.
const MIN_SCRUBBED_LEN: usize = 8;

impl Scrubber {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a Secret>) -> Self {
        let mut patterns: Vec<&str> = secrets
            .into_iter()
            .map(Secret::expose)
            .filter(|s| s.len() >= MIN_SCRUBBED_LEN)
            .collect();
        patterns.sort_unstable();
        patterns.dedup();
        if patterns.is_empty() {
            return Scrubber::default();
        }
        let matcher = aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(&patterns)
            .ok();
        Scrubber { matcher }
    }

    /// `text` with every secret replaced by [`SCRUBBED`].
    pub fn str<'t>(&self, text: &'t str) -> std::borrow::Cow<'t, str> {
        match &self.matcher {
            Some(m) if m.is_match(text) => m
                .replace_all(text, &vec![SCRUBBED; m.patterns_len()])
                .into(),
            _ => text.into(),
        }
    }

    /// In place, for owned strings.
    pub fn string(&self, text: &mut String) {
        if let std::borrow::Cow::Owned(clean) = self.str(text) {
            *text = clean;
        }
    }

    /// `bytes` with every secret replaced (bodies need not be UTF-8).
    pub fn bytes(&self, bytes: bytes::Bytes) -> bytes::Bytes {
        match &self.matcher {
            Some(m) if m.is_match(&bytes[..]) => {
                let replacements = vec![SCRUBBED.as_bytes(); m.patterns_len()];
                m.replace_all_bytes(&bytes, &replacements).into()
            }
            _ => bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::MapEnv;

    #[test]
    fn scrubber_removes_every_configured_secret() {
        let secrets = [
            Secret::new("sk-live-0123456789abcdef"),
            Secret::new("admin-token-secret-value"),
            Secret::new("short"),
        ];
        let s = Scrubber::new(&secrets);
        let text =
            "Incorrect API key provided: sk-live-0123456789abcdef. admin-token-secret-value short";
        let clean = s.str(text);
        assert!(
            !clean.contains("sk-live-0123456789abcdef")
                && !clean.contains("admin-token-secret-value"),
            "{clean}"
        );
        assert!(
            clean.contains(SCRUBBED) && clean.ends_with("short"),
            "{clean}"
        );
        let body =
            bytes::Bytes::from(r#"{"error":{"message":"bad key sk-live-0123456789abcdef"}}"#);
        let clean = s.bytes(body);
        let v: serde_json::Value = serde_json::from_slice(&clean).unwrap();
        assert_eq!(v["error"]["message"], format!("bad key {SCRUBBED}"));
        assert_eq!(Scrubber::default().str("anything"), "anything");
    }

    #[test]
    fn resolves_env_and_never_prints() {
        let env = MapEnv::new([("K", "sk-live-123")]);
        let s = resolve("env:K", &env).unwrap();
        assert_eq!(s.expose(), "sk-live-123");
        assert_eq!(format!("{s:?} {s}"), "Secret(****) ****");
    }

    #[test]
    fn literal_values_are_refused_without_echo() {
        let env = MapEnv::new([]);
        let err = resolve("sk-live-123", &env).unwrap_err();
        assert!(!err.contains("sk-live-123"));
        assert!(
            resolve("env:MISSING", &env)
                .unwrap_err()
                .contains("MISSING is not set")
        );
    }
}
