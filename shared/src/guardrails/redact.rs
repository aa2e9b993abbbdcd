//! Redaction with typed, numbered placeholders. Within one request the same value
//! always becomes the same placeholder (`[REDACTED:email_1]` wherever that address
//! appears, in any message), so the model can still tell two people apart without
//! seeing either.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::ops::Range;

use super::model::{Action, Finding, RuleId, ScanOutcome};

/// Numbers distinct values per rule for the life of one request (or one stream).
/// Values are remembered only as keyed hashes, never as text.
#[derive(Debug, Default)]
pub struct Redactor {
    hasher: RandomState,
    numbers: HashMap<(RuleId, u64), u32>,
    last: HashMap<RuleId, u32>,
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    /// `[REDACTED:{rule}_{n}]`, where `n` is this value's number for that rule.
    pub fn placeholder(&mut self, rule: &RuleId, value: &str) -> String {
        let key = (rule.clone(), self.hasher.hash_one(value));
        let n = match self.numbers.get(&key) {
            Some(&n) => n,
            None => {
                let next = self.last.entry(rule.clone()).or_insert(0);
                *next += 1;
                self.numbers.insert(key, *next);
                *next
            }
        };
        format!("[REDACTED:{rule}_{n}]")
    }

    /// `text` with every `redact` finding of `outcome` replaced. Overlapping findings
    /// merge into one region, labelled by the first, so no part of any matched value
    /// survives.
    pub fn redact(&mut self, text: &str, outcome: &ScanOutcome) -> String {
        let regions = regions(&outcome.findings);
        if regions.is_empty() {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (range, rule) in regions {
            out.push_str(&text[at..range.start]);
            out.push_str(&self.placeholder(&rule, &text[range.clone()]));
            at = range.end;
        }
        out.push_str(&text[at..]);
        out
    }
}

/// Redacts with a fresh [`Redactor`]; for several texts of one request, share one.
pub fn redact(text: &str, outcome: &ScanOutcome) -> String {
    Redactor::new().redact(text, outcome)
}

/// Merged redaction regions of sorted findings.
pub(crate) fn regions(findings: &[Finding]) -> Vec<(Range<usize>, RuleId)> {
    let mut out: Vec<(Range<usize>, RuleId)> = Vec::new();
    for f in findings.iter().filter(|f| f.action == Action::Redact) {
        match out.last_mut() {
            Some((r, _)) if f.range.start < r.end => r.end = r.end.max(f.range.end),
            _ => out.push((f.range.clone(), f.rule_id.clone())),
        }
    }
    out
}
