//! What a built-in detector is made of.

use crate::guardrails::model::{Action, DetectorKind, Direction, Severity};
use crate::guardrails::validators::Validator;

/// One pattern: an id, a regex, and the check that confirms a candidate. If the regex
/// has a group named `value`, only that group is redacted (so `password=` and the
/// host of a database URL stay readable); otherwise the whole match is.
#[derive(Debug, Clone, Copy)]
pub struct PatternRule {
    pub id: &'static str,
    pub regex: &'static str,
    pub validator: Option<Validator>,
    /// What it finds, in words a user understands ("an AWS access key id").
    pub description: &'static str,
}

/// A built-in detector: a [`PatternRule`] plus its defaults.
#[derive(Debug, Clone, Copy)]
pub struct BuiltinDetector {
    pub rule: PatternRule,
    pub kind: DetectorKind,
    pub severity: Severity,
    pub action: Action,
    pub direction: Direction,
    /// Literals for the one-pass Aho-Corasick prefilter (ASCII case is ignored).
    pub anchors: Anchors,
    /// For a regex with no bounded match length (a PEM block, a JWT): how many bytes
    /// a stream may hold back waiting for the match to end.
    pub stream_bound: Option<usize>,
    /// What the user should do instead; ends the block message.
    pub remedy: &'static str,
}

/// How the prefilter finds where a rule could match.
#[derive(Debug, Clone, Copy)]
pub enum Anchors {
    /// Every match starts with one of these: the rule is tried, anchored, only where
    /// one occurs.
    Prefix(&'static [&'static str]),
    /// Every match contains one of these: the rule searches the text only if one occurs.
    Contains(&'static [&'static str]),
    /// Use the regex's own literal prefixes if it has selective ones, else the
    /// multi-pattern DFA pass.
    Derive,
}
