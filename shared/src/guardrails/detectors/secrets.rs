//! Credentials. Every pattern keys on the vendor's fixed prefix or on an unmistakable
//! assignment context, because a bare 40-character base64 string is as likely a hash as
//! a key. `(?-u:\b)` is used instead of `\b` throughout: a Unicode word boundary makes
//! the regex engine leave its fast DFA on non-ASCII text.

use super::rule::{Anchors, BuiltinDetector, PatternRule};
use crate::guardrails::model::{Action, DetectorKind, Direction, Severity};
use crate::guardrails::validators::Validator;

const fn secret(
    rule: PatternRule,
    severity: Severity,
    action: Action,
    anchors: Anchors,
    stream_bound: Option<usize>,
    remedy: &'static str,
) -> BuiltinDetector {
    BuiltinDetector {
        rule,
        kind: DetectorKind::Secret,
        severity,
        action,
        direction: Direction::Both,
        anchors,
        stream_bound,
        remedy,
    }
}

/// A PEM block or a JWT can be kilobytes long; 16 KiB covers a 8192-bit RSA key.
const LONG: Option<usize> = Some(16 * 1024);

pub(super) const SECRETS: &[BuiltinDetector] = &[
    secret(
        PatternRule {
            id: "private_key",
            regex: r"-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----(?:\r?\n|\\r?\\n)?(?:[A-Za-z-]{1,20}:[^\r\n\\]{0,200}(?:\r?\n|\\r?\\n))*(?:[A-Za-z0-9+/=]|\r?\n[ \t]*|\\r?\\n[ \t]*)*(?:-----END[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----)?",
            validator: None,
            description: "a PEM private key",
        },
        Severity::Critical,
        Action::Block,
        Anchors::Prefix(&["-----BEGIN"]),
        LONG,
        "remove the private key; share the public key or a key id, and keep the private key in a secrets manager",
    ),
    secret(
        PatternRule {
            id: "gcp_service_account",
            regex: r#""type"\s{0,4}:\s{0,4}"service_account"[^}]*?"private_key"\s{0,4}:\s{0,4}"(?P<value>[^"]{32,})""#,
            validator: None,
            description: "a Google Cloud service-account key file",
        },
        Severity::Critical,
        Action::Block,
        Anchors::Prefix(&["\"type\""]),
        LONG,
        "remove the service-account key file; use workload identity or a secrets manager reference",
    ),
    secret(
        PatternRule {
            id: "aws_access_key",
            regex: r"(?-u:\b)(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}(?-u:\b)",
            validator: Some(Validator::NotDocExample),
            description: "an AWS access key id",
        },
        Severity::Critical,
        Action::Block,
        Anchors::Prefix(&["AKIA", "ASIA", "ABIA", "ACCA", "A3T"]),
        None,
        "remove the AWS access key from your prompt; use a secrets manager reference (an IAM role or env:AWS_ACCESS_KEY_ID) instead",
    ),
    secret(
        PatternRule {
            id: "aws_secret_key",
            regex: r#"(?i-u:aws_?secret_?(?:access_?)?key|secret_?access_?key)["']?\s{0,4}(?::|=|=>)\s{0,4}["']?(?P<value>[A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)"#,
            validator: Some(Validator::NotDocExample),
            description: "an AWS secret access key",
        },
        Severity::Critical,
        Action::Block,
        Anchors::Prefix(&["aws", "secret"]),
        None,
        "remove the AWS secret key from your prompt; use a secrets manager reference (an IAM role or env:AWS_SECRET_ACCESS_KEY) instead",
    ),
    secret(
        PatternRule {
            id: "azure_connection_string",
            regex: r"(?i-u:AccountKey|SharedAccessKey)\s{0,2}=\s{0,2}(?P<value>[A-Za-z0-9+/]{86}==|[A-Za-z0-9+/]{43}=)(?:[^A-Za-z0-9+/=]|$)",
            validator: None,
            description: "an Azure storage or service-bus connection string key",
        },
        Severity::Critical,
        Action::Block,
        Anchors::Prefix(&["accountkey", "sharedaccesskey"]),
        None,
        "remove the Azure connection string; use a managed identity or a Key Vault reference",
    ),
    secret(
        PatternRule {
            id: "github_token",
            regex: r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{50,255})(?-u:\b)",
            validator: None,
            description: "a GitHub token",
        },
        Severity::High,
        Action::Redact,
        Anchors::Prefix(&["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"]),
        None,
        "remove the GitHub token; revoke it if it was shared, and use a secrets manager reference",
    ),
    secret(
        PatternRule {
            id: "gitlab_token",
            regex: r"(?-u:\b)gl(?:pat|dt|rt|ptt|cbt|oas|ft|soat)-[0-9A-Za-z_-]{20,64}(?-u:\b)",
            validator: None,
            description: "a GitLab token",
        },
        Severity::High,
        Action::Redact,
        Anchors::Prefix(&[
            "glpat-", "gldt-", "glrt-", "glptt-", "glcbt-", "gloas-", "glft-", "glsoat-",
        ]),
        None,
        "remove the GitLab token; revoke it if it was shared, and use a secrets manager reference",
    ),
    secret(
        PatternRule {
            id: "slack_token",
            regex: r"(?-u:\b)(?:xox[abposr]-[0-9]{6,15}-[0-9A-Za-z-]{8,200}|xapp-[0-9]-[A-Z0-9]{6,15}-[0-9]{6,15}-[a-f0-9]{32,80})(?-u:\b)",
            validator: None,
            description: "a Slack token",
        },
        Severity::High,
        Action::Redact,
        Anchors::Prefix(&[
            "xoxa-", "xoxb-", "xoxp-", "xoxo-", "xoxs-", "xoxr-", "xapp-",
        ]),
        None,
        "remove the Slack token; use a secrets manager reference",
    ),
    secret(
        PatternRule {
            id: "slack_webhook",
            regex: r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/+-]{20,200}",
            validator: None,
            description: "a Slack incoming-webhook URL",
        },
        Severity::High,
        Action::Redact,
        Anchors::Prefix(&["https://hooks.slack.com/"]),
        None,
        "remove the Slack webhook URL; anyone holding it can post to the channel",
    ),
    secret(
        PatternRule {
            id: "stripe_key",
            regex: r"(?-u:\b)[rs]k_live_[0-9A-Za-z]{20,247}(?-u:\b)",
            validator: None,
            description: "a Stripe live secret or restricted key",
        },
        Severity::Critical,
        Action::Block,
        Anchors::Prefix(&["sk_live_", "rk_live_"]),
        None,
        "remove the Stripe live key; use a test-mode key (sk_test_…) in examples and a secrets manager in code",
    ),
    secret(
        PatternRule {
            id: "anthropic_key",
            regex: r"(?-u:\b)sk-ant-[a-z]{2,8}[0-9]{2}-[A-Za-z0-9_-]{32,200}(?-u:\b)",
            validator: None,
            description: "an Anthropic API key",
        },
        Severity::High,
        Action::Redact,
        Anchors::Prefix(&["sk-ant-"]),
        None,
        "remove the Anthropic API key; Sluice supplies provider keys, so clients never need one",
    ),
    secret(
        PatternRule {
            id: "openai_key",
            regex: r"(?-u:\b)sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,200}(?-u:\b)",
            validator: Some(Validator::OpenAiKey),
            description: "an OpenAI API key",
        },
        Severity::High,
        Action::Redact,
        Anchors::Prefix(&["sk-"]),
        None,
        "remove the OpenAI API key; Sluice supplies provider keys, so clients never need one",
    ),
    secret(
        PatternRule {
            id: "jwt",
            regex: r"(?-u:\b)eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}",
            validator: Some(Validator::Jwt),
            description: "a signed JSON Web Token",
        },
        Severity::Medium,
        Action::Redact,
        Anchors::Prefix(&["eyJ"]),
        LONG,
        "remove the token; describe its claims instead of pasting it",
    ),
    secret(
        PatternRule {
            id: "database_url",
            regex: r"(?i-u:(?-u:\b)(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|amqps?|mssql|sqlserver))://[A-Za-z0-9._~%!$&'()*+,;=-]{0,128}:(?P<value>[\x21\x23-\x26\x28-\x2E\x30-\x3F\x41-\x5B\x5D-\x7E]{1,128})@[A-Za-z0-9.-]{1,253}",
            validator: Some(Validator::NotPlaceholder),
            description: "a database URL with a password",
        },
        Severity::High,
        Action::Redact,
        Anchors::Prefix(&[
            "postgres",
            "mysql",
            "mariadb",
            "mongodb",
            "redis",
            "amqp",
            "mssql",
            "sqlserver",
        ]),
        None,
        "remove the password from the database URL; use a secrets manager reference",
    ),
    secret(
        PatternRule {
            id: "generic_secret",
            regex: r#"(?i-u:password|passwd|pwd|secret[_-]?key|secret|api[_-]?key|apikey|(?:access|auth|refresh|bearer|api|session)[_-]?token|private[_-]?key)["']?\s{0,3}(?::=|=>|:|=)\s{0,3}["']?(?P<value>[\x21\x23-\x26\x28-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x5F\x61-\x7E]{8,128})"#,
            validator: Some(Validator::SecretValue),
            description: "a password or secret assigned in text or code",
        },
        Severity::Medium,
        Action::Redact,
        Anchors::Prefix(&[
            "password", "passwd", "pwd", "secret", "api", "access", "auth", "refresh", "bearer",
            "session", "private",
        ]),
        None,
        "remove the secret value; reference it by name (env:NAME) instead",
    ),
];
