//! The vocabulary every part of the engine shares: what a rule does (action), where it
//! applies (direction, scope) and what a scan reports (decisions for audit, findings for
//! redaction).

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// What happens when a rule fires, ordered from weakest to strongest so that the
/// strongest action of a scan is its `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Record the decision for audit and metrics; the user sees nothing.
    Log,
    /// Let the text through and flag it (a response header, a UI badge).
    Warn,
    /// Replace each match with a typed placeholder such as `[REDACTED:email_1]`.
    Redact,
    /// Refuse the request (or end the stream) with a message naming the rule.
    Block,
}

/// Which side of the exchange a rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// What the client sends: prompts, system prompts, tool results.
    Input,
    /// What the model answers, whole or streamed.
    Output,
    #[default]
    Both,
}

impl Direction {
    /// Whether a rule configured for `self` applies to a scan of `scanned`.
    pub fn covers(self, scanned: Direction) -> bool {
        self == Direction::Both || scanned == Direction::Both || self == scanned
    }
}

/// How bad a finding is; carried into audit so that reports can sort by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

/// The family a detector belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorKind {
    Secret,
    Pii,
    Custom,
    Injection,
}

/// Who sent the text. Borrowed so that the hot path builds it from the request's
/// identity without allocating; `None` means "unknown", which only rules without a
/// filter on that dimension match.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scope<'a> {
    pub org: Option<&'a str>,
    pub team: Option<&'a str>,
    pub key: Option<&'a str>,
    pub app: Option<&'a str>,
}

/// Where a rule applies. Each list left empty means "every value"; a non-empty list must
/// contain the request's value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeFilter {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub org: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub team: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub app: Vec<String>,
}

impl ScopeFilter {
    pub fn matches(&self, scope: &Scope<'_>) -> bool {
        fn one(list: &[String], value: Option<&str>) -> bool {
            list.is_empty() || value.is_some_and(|v| list.iter().any(|x| x == v))
        }
        one(&self.org, scope.org)
            && one(&self.team, scope.team)
            && one(&self.key, scope.key)
            && one(&self.app, scope.app)
    }

    pub fn is_everything(&self) -> bool {
        self.org.is_empty() && self.team.is_empty() && self.key.is_empty() && self.app.is_empty()
    }
}

/// A rule's stable id (`aws_access_key`, `email`, or a policy rule's own id). Shared, so
/// that findings and decisions carry it without copying the string.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleId(Arc<str>);

impl RuleId {
    pub fn new(id: &str) -> Self {
        RuleId(Arc::from(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for RuleId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl PartialEq<str> for RuleId {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for RuleId {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

/// What a rule did to one text, fit for the audit record and metrics labels: the rule,
/// what it did and how often — never the matched text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub rule_id: RuleId,
    pub kind: DetectorKind,
    pub action: Action,
    pub severity: Severity,
    pub count: u32,
}

/// Where one match sits. Kept apart from [`Decision`] and deliberately not
/// `Serialize`: ranges point into the user's text, which audit must never hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule_id: RuleId,
    pub kind: DetectorKind,
    pub action: Action,
    /// The bytes a redaction replaces: the `value` group of the rule's regex when it
    /// has one (so `password=` stays readable), else the whole match.
    pub range: Range<usize>,
    /// Index of the rule in its compiled policy; the lower index wins ties.
    pub(crate) rule_index: usize,
}

/// The overall answer for one scanned text (or a whole request), strongest first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Nothing fired, or only `log` rules did.
    #[default]
    Allow,
    Warn,
    Redact,
    Block,
}

impl Verdict {
    pub(crate) fn from_action(action: Action) -> Verdict {
        match action {
            Action::Log => Verdict::Allow,
            Action::Warn => Verdict::Warn,
            Action::Redact => Verdict::Redact,
            Action::Block => Verdict::Block,
        }
    }
}

/// Everything a scan found in one text.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScanOutcome {
    pub verdict: Verdict,
    /// One entry per rule that fired, for audit and metrics.
    pub decisions: Vec<Decision>,
    /// Every match, sorted by position; only for redaction, never for audit.
    pub findings: Vec<Finding>,
    /// Prompt-injection score in [0, 1] (0 when the injection detector is off or saw
    /// nothing). A signal, not a verdict: the decision only appears at or above the
    /// policy's threshold.
    pub injection_score: f32,
    /// For a block: which rule(s) and what to do instead, ready to show the user.
    pub block_message: Option<String>,
}

impl ScanOutcome {
    pub fn is_blocked(&self) -> bool {
        self.verdict == Verdict::Block
    }

    /// Whether [`crate::guardrails::Redactor::redact`] would change the text.
    pub fn needs_redaction(&self) -> bool {
        self.findings.iter().any(|f| f.action == Action::Redact)
    }
}
