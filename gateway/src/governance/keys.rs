//! Virtual keys: `sk-sluice-<public id>-<secret>`.
//!
//! The public id (12 lowercase base32 characters) names the key in logs, audit records
//! and the admin API; the secret (32 base62 characters, ~190 bits) is shown once at
//! creation and only its SHA-256 is stored. A plain hash is enough because the secret is
//! random and long (nothing to brute-force); comparison is constant-time.

use sluice_shared::audit::sha256_hex;
use subtle::ConstantTimeEq;

pub const PREFIX: &str = "sk-sluice-";
const PUBLIC_ID_LEN: usize = 12;
const SECRET_LEN: usize = 32;
const BASE32: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
const BASE62: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A key as the client presents it, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedKey<'a> {
    pub public_id: &'a str,
    pub secret: &'a str,
}

/// Splits `sk-sluice-<id>-<secret>`; `None` for anything else (including provider keys
/// such as `sk-proj-…` that a misconfigured client might send).
pub fn parse(token: &str) -> Option<PresentedKey<'_>> {
    let rest = token.trim().strip_prefix(PREFIX)?;
    let (public_id, secret) = rest.split_once('-')?;
    let id_ok = public_id.len() == PUBLIC_ID_LEN && public_id.bytes().all(|b| BASE32.contains(&b));
    let secret_ok = secret.len() == SECRET_LEN && secret.bytes().all(|b| BASE62.contains(&b));
    (id_ok && secret_ok).then_some(PresentedKey { public_id, secret })
}

/// A fresh key: (public id, secret, full token), drawn from the OS CSPRNG.
pub fn generate() -> (String, String, String) {
    let public_id = random_string(BASE32, PUBLIC_ID_LEN);
    let secret = random_string(BASE62, SECRET_LEN);
    let token = format!("{PREFIX}{public_id}-{secret}");
    (public_id, secret, token)
}

/// A new secret for rotating an existing key.
pub fn generate_secret() -> String {
    random_string(BASE62, SECRET_LEN)
}

/// Random characters from the OS entropy source (getrandom via the `uuid` v4 generator,
/// which draws from the operating system's CSPRNG).
fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let bytes = uuid::Uuid::new_v4().into_bytes();
        for b in bytes {
            // Rejection sampling keeps the distribution uniform.
            let limit = 256 - (256 % alphabet.len());
            if (b as usize) < limit && out.len() < len {
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
    }
    out
}

/// The stored form of a secret.
pub fn hash_secret(secret: &str) -> String {
    sha256_hex(secret.as_bytes())
}

/// Constant-time comparison of a presented secret against a stored hash.
pub fn secret_matches(secret: &str, stored_hash: &str) -> bool {
    let presented = hash_secret(secret);
    presented.as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

/// Constant-time comparison of two tokens (the admin token).
pub fn tokens_equal(a: &str, b: &str) -> bool {
    // Hash first so the comparison does not leak the length of the expected token.
    let (a, b) = (sha256_hex(a.as_bytes()), sha256_hex(b.as_bytes()));
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// The credential of an `Authorization` header value: the token after the `Bearer` scheme,
/// whose name is case-insensitive (RFC 9110 §11.1), trimmed. `None` for another scheme.
/// The one parser for the virtual-key surfaces and the admin API.
pub fn bearer_token(value: &str) -> Option<&str> {
    let value = value.trim();
    let (scheme, token) = value.split_once([' ', '\t'])?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// `sk-sluice-abcd…wxyz` style hint for messages: the public id only.
pub fn display(public_id: &str) -> String {
    format!("{PREFIX}{public_id}-…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_other_schemes_are_not_bearer() {
        for v in ["Bearer abc", "bearer abc", "BEARER  abc ", " Bearer\tabc"] {
            assert_eq!(bearer_token(v), Some("abc"), "{v:?}");
        }
        for v in ["Basic abc", "Bearerabc", "abc", ""] {
            assert_eq!(bearer_token(v), None, "{v:?}");
        }
    }

    #[test]
    fn generated_keys_parse_and_match() {
        let (id, secret, token) = generate();
        let parsed = parse(&token).unwrap();
        assert_eq!(parsed.public_id, id);
        assert_eq!(parsed.secret, secret);
        let stored = hash_secret(&secret);
        assert!(secret_matches(parsed.secret, &stored));
        assert!(!secret_matches(&generate_secret(), &stored));
    }

    #[test]
    fn foreign_tokens_do_not_parse() {
        for t in [
            "sk-proj-abc",
            "sk-sluice-short-x",
            "",
            "sk-sluice-abcdefghijkl-",
        ] {
            assert!(parse(t).is_none(), "{t}");
        }
    }

    #[test]
    fn keys_are_distinct() {
        let a = generate();
        let b = generate();
        assert_ne!(a.2, b.2);
    }

    #[test]
    fn admin_token_comparison() {
        assert!(tokens_equal("secret-admin", "secret-admin"));
        assert!(!tokens_equal("secret-admin", "secret-admin2"));
    }
}
