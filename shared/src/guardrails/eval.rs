//! Measuring detector quality on a labelled corpus, and the prompts the benchmark
//! times. Reading files is left to the caller (the `sluice-guardrails-eval` binary and
//! the crate's tests) so that this crate stays free of I/O.
//!
//! Corpus lines are JSON: `{"detector": "email", "text": "...", "expect": true}`. A
//! negative whose detector is `"*"` is a negative for every detector: the shared pool
//! of hard negatives (UUIDs, git SHAs, lockfile hashes, base64 images, prose, code).

use serde::Deserialize;

use super::compile::CompiledPolicy;
use super::model::{Direction, Scope};

/// Recall below this on any detector fails the evaluation.
pub const MIN_RECALL: f64 = 0.95;
/// A false-positive rate above this on any detector fails the evaluation.
pub const MAX_FP_RATE: f64 = 0.01;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub detector: String,
    pub text: String,
    pub expect: bool,
    /// Why a case is labelled the way it is, for the hard ones.
    #[serde(default)]
    pub note: Option<String>,
}

/// Parses one JSONL file; `name` is used in error messages.
pub fn parse_cases(name: &str, jsonl: &str) -> Result<Vec<Case>, String> {
    jsonl
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("{name}:{}: {e}", i + 1)))
        .collect()
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DetectorScore {
    pub detector: String,
    pub positives: usize,
    pub true_positives: usize,
    pub negatives: usize,
    pub false_positives: usize,
}

impl DetectorScore {
    pub fn recall(&self) -> f64 {
        ratio(self.true_positives, self.positives)
    }

    pub fn precision(&self) -> f64 {
        ratio(
            self.true_positives,
            self.true_positives + self.false_positives,
        )
    }

    pub fn fp_rate(&self) -> f64 {
        if self.negatives == 0 {
            0.0
        } else {
            self.false_positives as f64 / self.negatives as f64
        }
    }

    pub fn passes(&self) -> bool {
        self.recall() >= MIN_RECALL && self.fp_rate() <= MAX_FP_RATE
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

/// A case the detector got wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct Miss {
    pub detector: String,
    pub expect: bool,
    pub text: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub scores: Vec<DetectorScore>,
    pub misses: Vec<Miss>,
    /// Cases naming a detector the policy does not have.
    pub unknown: Vec<String>,
}

impl Report {
    pub fn passes(&self) -> bool {
        self.unknown.is_empty() && self.scores.iter().all(DetectorScore::passes)
    }

    /// A fixed-width table, one line per detector, then the misses.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{:<24} {:>5} {:>5} {:>5} {:>5} {:>9} {:>7} {:>8}\n",
            "detector", "pos", "tp", "neg", "fp", "precision", "recall", "fp rate"
        );
        let (mut pos, mut tp, mut neg, mut fp) = (0, 0, 0, 0);
        for s in &self.scores {
            out.push_str(&format!(
                "{:<24} {:>5} {:>5} {:>5} {:>5} {:>9.3} {:>7.3} {:>7.2}%{}\n",
                s.detector,
                s.positives,
                s.true_positives,
                s.negatives,
                s.false_positives,
                s.precision(),
                s.recall(),
                s.fp_rate() * 100.0,
                if s.passes() { "" } else { "  FAIL" }
            ));
            pos += s.positives;
            tp += s.true_positives;
            neg += s.negatives;
            fp += s.false_positives;
        }
        let total = DetectorScore {
            detector: "all".into(),
            positives: pos,
            true_positives: tp,
            negatives: neg,
            false_positives: fp,
        };
        out.push_str(&format!(
            "{:<24} {:>5} {:>5} {:>5} {:>5} {:>9.3} {:>7.3} {:>7.2}%\n",
            "all",
            pos,
            tp,
            neg,
            fp,
            total.precision(),
            total.recall(),
            total.fp_rate() * 100.0
        ));
        for m in &self.misses {
            let kind = if m.expect { "missed" } else { "false positive" };
            let text: String = m.text.chars().take(160).collect();
            out.push_str(&format!("{kind} [{}]: {text:?}\n", m.detector));
        }
        for u in &self.unknown {
            out.push_str(&format!("unknown detector in corpus: {u}\n"));
        }
        out
    }
}

/// Scans every case (as input text, no scope) and scores each detector of `policy`.
pub fn evaluate(policy: &CompiledPolicy, cases: &[Case]) -> Report {
    let ids: Vec<String> = policy.rules().map(|r| r.id.to_string()).collect();
    let mut scores: Vec<DetectorScore> = ids
        .iter()
        .map(|id| DetectorScore {
            detector: id.clone(),
            ..Default::default()
        })
        .collect();
    let mut report = Report::default();
    for case in cases {
        let outcome = policy.scan(&case.text, Direction::Input, &Scope::default());
        let fired = |id: &str| outcome.findings.iter().any(|f| f.rule_id == id);
        if case.detector == "*" {
            for s in scores.iter_mut() {
                s.negatives += 1;
                if fired(&s.detector) {
                    s.false_positives += 1;
                    report.misses.push(Miss {
                        detector: s.detector.clone(),
                        expect: false,
                        text: case.text.clone(),
                    });
                }
            }
            continue;
        }
        let Some(s) = scores.iter_mut().find(|s| s.detector == case.detector) else {
            if !report.unknown.contains(&case.detector) {
                report.unknown.push(case.detector.clone());
            }
            continue;
        };
        let hit = fired(&case.detector);
        if case.expect {
            s.positives += 1;
            s.true_positives += usize::from(hit);
        } else {
            s.negatives += 1;
            s.false_positives += usize::from(hit);
        }
        if hit != case.expect {
            report.misses.push(Miss {
                detector: case.detector.clone(),
                expect: case.expect,
                text: case.text.clone(),
            });
        }
    }
    report.scores = scores;
    report
}
