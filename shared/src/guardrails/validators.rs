//! Checks that turn a regex candidate into a finding. A regex only says "shaped like";
//! checksums (Luhn, IBAN mod-97, Verhoeff, …) and structural checks (a JWT header that is
//! JSON with `alg`) are what keep false positives near zero on real text.
//!
//! [`Validator`] is data: a policy rule (or a row of the national-ID table) names one,
//! so a new identifier that uses a known checksum needs no code.

use std::net::Ipv6Addr;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// A known check applied to a match. Deserializes from a snake_case name
/// (`validator = "luhn"`), or `{ min_entropy = 3.5 }`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Validator {
    /// Luhn mod-10 over the digits (card numbers, Canadian SIN, IMEI).
    Luhn,
    /// IBAN: per-country length and ISO 7064 mod-97 = 1.
    Mod97,
    /// Verhoeff dihedral checksum (Indian Aadhaar).
    Verhoeff,
    /// Dutch "elfproef" (BSN): weighted sum 9..2, −1 divisible by 11.
    ElevenProof,
    /// Spanish DNI / NIE control letter (mod 23).
    DniLetter,
    /// US SSN: area not 000, 666 or 9xx; group not 00; serial not 0000.
    UsSsn,
    /// Card number: 13–19 digits, a known issuer prefix, Luhn, and not one of the
    /// published test numbers.
    PaymentCard,
    /// Three base64url segments whose header decodes to a JSON object with `alg`.
    Jwt,
    /// A dotted quad that is not a version string, loopback, netmask or a
    /// documentation range.
    Ipv4,
    /// Parses as IPv6, has at least three groups, and is not loopback, unspecified or
    /// the documentation prefix.
    Ipv6,
    /// Not a reserved documentation domain, not `image@2x.png`, not `git@host`.
    Email,
    /// 8–15 digits (E.164 allows at most 15), not one repeated digit.
    Phone,
    /// Rejects vendors' published documentation keys (`AKIAIOSFODNN7EXAMPLE`).
    NotDocExample,
    /// A high-entropy value that is not a placeholder or a variable reference.
    SecretValue,
    /// Not a template placeholder (`password`, `${DB_PASS}`, `<password>`, `****`).
    NotPlaceholder,
    /// An OpenAI key: mixes upper, lower and digits, and is not an Anthropic key.
    OpenAiKey,
    /// Shannon entropy of the value, in bits per character, at least this.
    MinEntropy(f64),
}

impl Validator {
    /// How much of `value` passes: its full length, a shorter prefix (a phone number
    /// whose greedy match ran into the next number is cut back to the longest valid
    /// run of digit groups), or `None`.
    pub fn accept(&self, whole: &str, value: &str) -> Option<usize> {
        match self {
            Validator::Phone => phone_prefix(value),
            _ => self.check(whole, value).then_some(value.len()),
        }
    }

    /// `whole` is the full regex match, `value` the part that would be redacted (the
    /// `value` group, or `whole` again).
    pub fn check(&self, whole: &str, value: &str) -> bool {
        match *self {
            Validator::Luhn => luhn(&digits(value)),
            Validator::Mod97 => iban(value),
            Validator::Verhoeff => verhoeff(&digits(value)),
            Validator::ElevenProof => eleven_proof(&digits(value)),
            Validator::DniLetter => dni_letter(value),
            Validator::UsSsn => us_ssn(&digits(value)),
            Validator::PaymentCard => payment_card(&digits(value)),
            Validator::Jwt => jwt(value),
            Validator::Ipv4 => ipv4(whole, value),
            Validator::Ipv6 => ipv6(value),
            Validator::Email => email(value),
            Validator::Phone => phone(value),
            Validator::NotDocExample => !value.contains("EXAMPLE"),
            Validator::SecretValue => secret_value(value),
            Validator::NotPlaceholder => !is_placeholder(value),
            Validator::OpenAiKey => openai_key(value),
            Validator::MinEntropy(bits) => shannon_entropy(value) >= bits,
        }
    }
}

fn digits(s: &str) -> Vec<u8> {
    s.bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect()
}

pub(crate) fn luhn(d: &[u8]) -> bool {
    if d.len() < 2 {
        return false;
    }
    let mut sum = 0u32;
    for (i, &x) in d.iter().rev().enumerate() {
        let mut v = u32::from(x);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// IBAN lengths by country (ISO 13616 registry). A country missing here cannot be
/// validated, so it is not reported: a wrong length is the commonest sign of a
/// look-alike.
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NL", 18),
    ("NO", 15),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("SA", 24),
    ("SC", 31),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
];

pub(crate) fn iban(s: &str) -> bool {
    let compact: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if compact.len() < 15 || !compact.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let Some(country) = std::str::from_utf8(&compact[..2]).ok() else {
        return false;
    };
    let Some(&(_, len)) = IBAN_LENGTHS.iter().find(|(c, _)| *c == country) else {
        return false;
    };
    if compact.len() != len {
        return false;
    }
    // Move the country and check digits to the end, letters become 10..35, then the
    // number mod 97 must be 1; fold digit by digit so no bignum is needed.
    let mut rem = 0u32;
    for &b in compact[4..].iter().chain(&compact[..4]) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            b'a'..=b'z' => u32::from(b - b'a') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

pub(crate) fn verhoeff(d: &[u8]) -> bool {
    const MUL: [[u8; 10]; 10] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
        [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
        [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
        [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
        [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
        [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
        [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
        [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
    ];
    const PERM: [[u8; 10]; 8] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
        [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
        [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
        [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
        [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
        [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
        [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
    ];
    if d.is_empty() {
        return false;
    }
    let mut c = 0usize;
    for (i, &x) in d.iter().rev().enumerate() {
        c = usize::from(MUL[c][usize::from(PERM[i % 8][usize::from(x)])]);
    }
    c == 0
}

pub(crate) fn eleven_proof(d: &[u8]) -> bool {
    if d.len() != 9 || d.iter().all(|&x| x == 0) {
        return false;
    }
    let mut sum: i32 = 0;
    for (i, &x) in d.iter().enumerate() {
        let w = if i == 8 { -1 } else { 9 - i as i32 };
        sum += w * i32::from(x);
    }
    sum % 11 == 0
}

pub(crate) fn dni_letter(s: &str) -> bool {
    const LETTERS: &[u8; 23] = b"TRWAGMYFPDXBNJZSQVHLCKE";
    let compact: Vec<u8> = s
        .bytes()
        .filter(|b| b.is_ascii_alphanumeric())
        .map(|b| b.to_ascii_uppercase())
        .collect();
    let Some((&letter, body)) = compact.split_last() else {
        return false;
    };
    let mut n: u64 = 0;
    for (i, &b) in body.iter().enumerate() {
        let v = match (i, b) {
            (0, b'X') => 0,
            (0, b'Y') => 1,
            (0, b'Z') => 2,
            (_, b'0'..=b'9') => u64::from(b - b'0'),
            _ => return false,
        };
        n = n * 10 + v;
    }
    body.len() == 8 && LETTERS[(n % 23) as usize] == letter
}

pub(crate) fn us_ssn(d: &[u8]) -> bool {
    if d.len() != 9 {
        return false;
    }
    let area = u32::from(d[0]) * 100 + u32::from(d[1]) * 10 + u32::from(d[2]);
    let group = u32::from(d[3]) * 10 + u32::from(d[4]);
    let serial = d[5..].iter().fold(0u32, |n, &x| n * 10 + u32::from(x));
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// Card numbers published by payment providers for testing. They are public, pass
/// Luhn, and fill payment documentation: reporting them would fire on every
/// integration guide while protecting nobody.
const TEST_CARDS: &[&str] = &[
    "4242424242424242",
    "4000056655665556",
    "4111111111111111",
    "4012888888881881",
    "4222222222222",
    "4000000000000002",
    "4000000000009995",
    "4000000000000077",
    "5555555555554444",
    "5200828282828210",
    "5105105105105100",
    "5454545454545454",
    "2223003122003222",
    "378282246310005",
    "371449635398431",
    "378734493671000",
    "6011111111111117",
    "6011000990139424",
    "6011000000000004",
    "3056930009020004",
    "30569309025904",
    "38520000023237",
    "36227206271667",
    "3566002020360505",
    "3530111333300000",
    "6200000000000005",
    "6555900000604105",
];

pub(crate) fn payment_card(d: &[u8]) -> bool {
    if !(13..=19).contains(&d.len()) || d.iter().all(|&x| x == d[0]) || !luhn(d) {
        return false;
    }
    let prefix = |n: usize| d[..n].iter().fold(0u32, |a, &x| a * 10 + u32::from(x));
    let known_issuer = d[0] == 4
        || (51..=55).contains(&prefix(2))
        || (2221..=2720).contains(&prefix(4))
        || matches!(prefix(2), 34 | 37 | 36 | 38 | 62 | 65)
        || (300..=305).contains(&prefix(3))
        || prefix(4) == 6011
        || (644..=649).contains(&prefix(3))
        || (3528..=3589).contains(&prefix(4));
    if !known_issuer {
        return false;
    }
    let s: String = d.iter().map(|&x| char::from(b'0' + x)).collect();
    !TEST_CARDS.contains(&s.as_str())
}

pub(crate) fn jwt(s: &str) -> bool {
    let Some(header) = s.split('.').next() else {
        return false;
    };
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let Ok(bytes) = engine.decode(header.trim_end_matches('=')) else {
        return false;
    };
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(map)) => map.get("alg").is_some_and(|a| a.is_string()),
        _ => false,
    }
}

/// The regex may capture a `v`/`version` prefix or extra dotted parts around the
/// address precisely so that this check can reject them: `v1.2.3.4` and
/// `1.3.6.1.4.1` are versions and OIDs, not hosts.
fn ipv4(whole: &str, value: &str) -> bool {
    if whole.len() != value.len() {
        return false;
    }
    let octets: Vec<u32> = value.split('.').filter_map(|p| p.parse().ok()).collect();
    let [a, b, c, _] = octets[..] else {
        return false;
    };
    let documentation =
        (a, b, c) == (192, 0, 2) || (a, b, c) == (198, 51, 100) || (a, b, c) == (203, 0, 113);
    !(a == 0 || a == 127 || a == 255 || documentation)
}

fn ipv6(s: &str) -> bool {
    let addr_text = s.split('%').next().unwrap_or(s);
    let Ok(addr) = addr_text.parse::<Ipv6Addr>() else {
        return false;
    };
    let groups = addr_text.split(':').filter(|g| !g.is_empty()).count();
    let seg = addr.segments();
    // Eight two-digit groups without `::` is a hex dump or a MAC-like id, not an address.
    let hex_dump = !addr_text.contains("::") && addr_text.split(':').all(|g| g.len() <= 2);
    let documentation = seg[0] == 0x2001 && seg[1] == 0x0db8;
    let special = hex_dump || addr.is_loopback() || addr.is_unspecified() || documentation;
    groups >= 3 && !special
}

/// Domains reserved for documentation (RFC 2606 / 6761): an address there belongs to
/// nobody. File extensions catch `logo@2x.png`, which only looks like an address.
const NOT_MAIL_DOMAINS: &[&str] = &["example.com", "example.org", "example.net", "localhost"];
const NOT_MAIL_SUFFIXES: &[&str] = &[
    ".example",
    ".test",
    ".invalid",
    ".localhost",
    ".png",
    ".jpg",
    ".jpeg",
    ".gif",
    ".svg",
    ".webp",
    ".ico",
    ".js",
    ".ts",
    ".css",
    ".map",
    ".json",
    ".py",
    ".rs",
    ".go",
    ".md",
];

fn email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    let domain = domain.to_ascii_lowercase();
    let reserved = NOT_MAIL_DOMAINS
        .iter()
        .any(|d| domain == *d || domain.ends_with(&format!(".{d}")));
    let not_mail = NOT_MAIL_SUFFIXES.iter().any(|sfx| domain.ends_with(sfx));
    // `git@github.com:org/repo` is an SSH login, not a person's address.
    !(reserved || not_mail || local == "git")
}

fn phone_prefix(s: &str) -> Option<usize> {
    let mut best = None;
    let mut count = 0;
    let bytes = s.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b.is_ascii_digit() {
            count += 1;
            let group_end = bytes.get(i + 1).is_none_or(|n| !n.is_ascii_digit());
            if group_end && (8..=15).contains(&count) && phone(&s[..=i]) {
                best = Some(i + 1);
            }
        }
    }
    best
}

fn phone(s: &str) -> bool {
    let d = digits(s);
    (8..=15).contains(&d.len()) && !d.iter().all(|&x| x == d[0])
}

fn openai_key(s: &str) -> bool {
    !s.starts_with("sk-ant-")
        && s.bytes().any(|b| b.is_ascii_uppercase())
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && s.bytes().any(|b| b.is_ascii_digit())
}

/// Shannon entropy in bits per character.
pub fn shannon_entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    let mut n = 0u32;
    for b in s.bytes() {
        counts[usize::from(b)] += 1;
        n += 1;
    }
    if n == 0 {
        return 0.0;
    }
    let n = f64::from(n);
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Values that stand for a secret rather than being one. Deliberately conservative: a
/// real password that happens to be the word "password" is not worth the false
/// positives of every config template.
pub(crate) fn is_placeholder(v: &str) -> bool {
    const WORDS: &[&str] = &[
        "password",
        "passwd",
        "pass",
        "pwd",
        "secret",
        "changeme",
        "your_password",
        "yourpassword",
        "mypassword",
        "your-password",
        "xxx",
        "redacted",
        "none",
        "null",
        "true",
        "false",
        "example",
        "placeholder",
        "your_api_key",
        "your-api-key",
        "api_key",
        "apikey",
        "token",
        "your_token",
        "undefined",
    ];
    const TEMPLATE_STARTS: &[&str] = &["${", "{{", "{%", "<", "%s", "%(", "$(", "[", "("];
    let lower = v.to_ascii_lowercase();
    let first = v.as_bytes().first().copied().unwrap_or(b'$');
    // `os.environ[...]`, `get_secret(...)`: an expression that fetches the secret.
    let expression = v.find(['(', '[']).is_some_and(|i| {
        i > 0
            && v[..i]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
    });
    // `$DB_PASSWORD`: a shell variable.
    let variable = first == b'$'
        && v.len() > 1
        && v[1..]
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    WORDS.contains(&lower.as_str())
        || TEMPLATE_STARTS.iter().any(|t| v.starts_with(t))
        || expression
        || variable
        || v.bytes().all(|b| b == first)
        || lower.contains("redacted")
        || lower.starts_with("your")
        || lower.contains("xxxx")
        || lower.contains("example")
        || lower.contains("changeme")
}

/// The entropy floor for a generic assignment's value, in bits per character. Random
/// 12+ character tokens measure 3.2–4.5; identifiers and English words with a digit
/// (`config2`, `retry_count_3`) mostly fall below. Tuned on the corpus under
/// `tests/guardrails/corpus` (see its README for the distribution).
pub const SECRET_ENTROPY_FLOOR: f64 = 3.0;

fn secret_value(v: &str) -> bool {
    if v.len() < 8 || is_placeholder(v) {
        return false;
    }
    // A dotted path (`settings.DB_PASSWORD`, `process.env.TOKEN_2`) or a constant name
    // (`DB_PASSWORD_2`) refers to a secret kept elsewhere.
    let identifier_chars = v
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
    let starts_alpha = v.as_bytes()[0].is_ascii_alphabetic() || v.as_bytes()[0] == b'_';
    if identifier_chars && starts_alpha && (v.contains('.') || v.contains('_')) {
        return false;
    }
    let has_digit = v.bytes().any(|b| b.is_ascii_digit());
    let has_alpha = v.bytes().any(|b| b.is_ascii_alphabetic());
    let mixed_case =
        v.bytes().any(|b| b.is_ascii_uppercase()) && v.bytes().any(|b| b.is_ascii_lowercase());
    let has_symbol = v
        .bytes()
        .any(|b| b.is_ascii_punctuation() && !matches!(b, b'_' | b'-' | b'.'));
    if !(has_alpha && (has_digit || has_symbol || (mixed_case && v.len() >= 20))) {
        return false;
    }
    // Short strings cannot reach a high per-character entropy (at most log2(len)).
    let floor = SECRET_ENTROPY_FLOOR.min((v.len() as f64).log2() * 0.85);
    shannon_entropy(v) >= floor
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums() {
        assert!(luhn(&digits("4539 1488 0343 6467")));
        assert!(!luhn(&digits("4539 1488 0343 6468")));
        assert!(iban("GB82 WEST 1234 5698 7654 32"));
        assert!(iban("DE89370400440532013000"));
        assert!(!iban("DE89370400440532013001"));
        assert!(!iban("GB82WEST123456987654")); // wrong length
        assert!(verhoeff(&digits("2363")));
        assert!(!verhoeff(&digits("2364")));
        assert!(eleven_proof(&digits("111222333")));
        assert!(!eleven_proof(&digits("111222334")));
        assert!(dni_letter("12345678Z"));
        assert!(dni_letter("X1234567L"));
        assert!(!dni_letter("12345678A"));
        assert!(us_ssn(&digits("123-45-6789")));
        assert!(!us_ssn(&digits("666-45-6789")));
        assert!(!us_ssn(&digits("912-45-6789")));
        assert!(!us_ssn(&digits("123-00-6789")));
        assert!(!us_ssn(&digits("123-45-0000")));
    }

    #[test]
    fn cards_skip_published_test_numbers() {
        assert!(payment_card(&digits("4539148803436467")));
        assert!(!payment_card(&digits("4242424242424242")));
        assert!(!payment_card(&digits("0000000000000000")));
        assert!(!payment_card(&digits("1234567812345670"))); // no issuer starts with 1
    }

    #[test]
    fn jwt_header_must_be_json_with_alg() {
        let good = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert!(jwt(good));
        assert!(!jwt("eyJub3RhbGciOjF9.eyJzdWIiOiIxIn0.abcdefghijklmnop"));
    }

    #[test]
    fn secret_values() {
        assert!(secret_value("x7Gk2pQ9vLm3Rt8W"));
        assert!(secret_value("Tr0ub4dor&3x"));
        assert!(!secret_value("${DB_PASSWORD}"));
        assert!(!secret_value("process.env.DB_PASS_2"));
        assert!(!secret_value("DB_PASSWORD_2"));
        assert!(!secret_value("hunter2"));
        assert!(!secret_value("your_password_here"));
    }
}
