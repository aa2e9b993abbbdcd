//! Personal data. Numbers are the hard part: most digit runs in real prompts are
//! versions, dates, ids and amounts, so every numeric pattern insists on a format people
//! actually write (grouping, separators, a `+` country code) and a checksum where the
//! identifier has one.

use super::rule::{Anchors, BuiltinDetector, PatternRule};
use crate::guardrails::model::{Action, DetectorKind, Direction, Severity};
use crate::guardrails::validators::Validator;

const fn pii(
    rule: PatternRule,
    severity: Severity,
    action: Action,
    anchors: Anchors,
    remedy: &'static str,
) -> BuiltinDetector {
    BuiltinDetector {
        rule,
        kind: DetectorKind::Pii,
        severity,
        action,
        direction: Direction::Both,
        anchors,
        stream_bound: None,
        remedy,
    }
}

pub(super) const PII: &[BuiltinDetector] = &[
    pii(
        PatternRule {
            id: "email",
            regex: r"(?-u:\b)[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24}(?-u:\b)",
            validator: Some(Validator::Email),
            description: "an e-mail address",
        },
        Severity::Medium,
        Action::Redact,
        Anchors::Contains(&["@"]),
        "remove the e-mail address, or replace it with a role address",
    ),
    pii(
        PatternRule {
            id: "payment_card",
            regex: r"(?-u:\b)(?:[0-9]{13,19}|[0-9]{4}[ -][0-9]{4}[ -][0-9]{4}[ -][0-9]{4}|[0-9]{4}[ -][0-9]{6}[ -][0-9]{4,5})(?-u:\b)",
            validator: Some(Validator::PaymentCard),
            description: "a payment card number",
        },
        Severity::High,
        Action::Redact,
        Anchors::Derive,
        "remove the card number; use the last four digits or a payment-provider token",
    ),
    pii(
        PatternRule {
            id: "iban",
            regex: r"(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?-u:\b)",
            validator: Some(Validator::Mod97),
            description: "an IBAN",
        },
        Severity::High,
        Action::Redact,
        Anchors::Derive,
        "remove the bank account number (IBAN)",
    ),
    pii(
        PatternRule {
            id: "us_ssn",
            regex: r"(?-u:\b)[0-9]{3}-[0-9]{2}-[0-9]{4}(?-u:\b)",
            validator: Some(Validator::UsSsn),
            description: "a US Social Security number",
        },
        Severity::High,
        Action::Redact,
        Anchors::Derive,
        "remove the Social Security number",
    ),
    pii(
        PatternRule {
            id: "phone",
            regex: r"(?:\+[1-9][0-9]{0,2}[ .-]?(?:\([0-9]{1,4}\)[ .-]?)?[0-9]{1,5}(?:[ .-]?[0-9]{1,5}){1,5}|(?:\([2-9][0-9]{2}\)|(?-u:\b)[2-9][0-9]{2})[ .-]?[2-9][0-9]{2}[ .-][0-9]{4}|(?-u:\b)0[1-9][0-9]{1,4}[ -](?:[0-9]{3,4}[ -][0-9]{3,4}|[0-9]{5,8})|(?-u:\b)0[1-9](?:[ .][0-9]{2}){4})(?-u:\b)",
            validator: Some(Validator::Phone),
            description: "a phone number",
        },
        Severity::Medium,
        Action::Redact,
        Anchors::Derive,
        "remove the phone number",
    ),
    pii(
        PatternRule {
            id: "ipv4",
            regex: r"(?-u:\b)(?:(?i:v|ver|version)[ .]?)?(?P<value>(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9]))(?:\.[0-9]+)*(?-u:\b)",
            validator: Some(Validator::Ipv4),
            description: "an IPv4 address",
        },
        Severity::Low,
        Action::Log,
        Anchors::Derive,
        "remove the IP address",
    ),
    pii(
        PatternRule {
            id: "ipv6",
            regex: r"(?-u:\b)(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}(?-u:\b)|(?-u:\b)[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6}::(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6}(?:\.[0-9]{1,3}){0,3}(?-u:\b))?|::[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6}(?:\.[0-9]{1,3}){0,3}(?-u:\b)",
            validator: Some(Validator::Ipv6),
            description: "an IPv6 address",
        },
        Severity::Low,
        Action::Log,
        Anchors::Derive,
        "remove the IP address",
    ),
];

/// National identifiers: one row each. A row reuses a [`Validator`] (its checksum) and
/// needs no code; a policy can add more the same way through a custom rule with
/// `validator = "luhn"` (or another known check).
pub const NATIONAL_IDS: &[PatternRule] = &[
    PatternRule {
        id: "ca_sin",
        regex: r"(?-u:\b)[1-79][0-9]{2}[ -][0-9]{3}[ -][0-9]{3}(?-u:\b)",
        validator: Some(Validator::Luhn),
        description: "a Canadian Social Insurance Number",
    },
    PatternRule {
        id: "in_aadhaar",
        regex: r"(?-u:\b)[2-9][0-9]{3}[ -][0-9]{4}[ -][0-9]{4}(?-u:\b)",
        validator: Some(Validator::Verhoeff),
        description: "an Indian Aadhaar number",
    },
    PatternRule {
        id: "nl_bsn",
        regex: r"(?i-u:(?-u:\b)(?:bsn|burgerservicenummer|sofinummer)(?:[ -]?(?:nr|nummer))?\.?)[ :#]{0,3}(?P<value>[0-9]{9}|[0-9]{4}\.[0-9]{2}\.[0-9]{3})(?-u:\b)",
        validator: Some(Validator::ElevenProof),
        description: "a Dutch citizen service number (BSN)",
    },
    PatternRule {
        id: "es_dni",
        regex: r"(?-u:\b)(?:[0-9]{8}|[XYZ][0-9]{7})-?[A-Z](?-u:\b)",
        validator: Some(Validator::DniLetter),
        description: "a Spanish DNI or NIE",
    },
    PatternRule {
        id: "uk_nino",
        regex: r"(?-u:\b)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D](?-u:\b)",
        validator: None,
        description: "a UK National Insurance number",
    },
];
