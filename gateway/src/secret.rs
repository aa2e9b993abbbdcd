//! Secrets by reference.
//!
//! Config never holds a key's value: it holds `env:NAME` or `file:PATH`, resolved once at
//! load. The resolved [`Secret`] never prints (Debug and Display show `****`), so a key
//! cannot leak through a log line or an error message.

use std::fmt;

use crate::config::Environment;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MapEnv;

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
