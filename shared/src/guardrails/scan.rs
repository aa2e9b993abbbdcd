//! Scanning one text: prefilter, match each candidate rule, validate, then turn the
//! findings into decisions and a verdict. The per-rule matching step is shared with the
//! stream scanner so that both find exactly the same matches.

use std::cmp::Reverse;
use std::ops::Range;

use regex_automata::util::captures::Captures;
use regex_automata::{Anchored, Input};

use super::compile::{Candidates, CompiledDetector, CompiledPolicy};
use super::injection;
use super::model::{
    Action, Decision, DetectorKind, Direction, Finding, ScanOutcome, Scope, Verdict,
};

/// One regex match, before or after validation.
pub(crate) struct RawMatch {
    pub start: usize,
    /// Where the next search for this rule resumes: the end of a valid match, or one
    /// character past the start of a rejected one, so that a look-alike candidate
    /// (`6789 4539 1488 0343` failing Luhn) cannot hide a real match that overlaps it
    /// (`4539 1488 0343 6467`).
    pub end: usize,
    /// The span to redact, if the match passed its validator.
    pub valid: Option<Range<usize>>,
}

impl CompiledDetector {
    /// The leftmost match of this rule starting at or after `at`. `hay` may be a window
    /// of a larger text as long as it keeps one character before `at`, so that
    /// look-behind assertions (`\b`, `(?m)^`) see the same context.
    ///
    /// `anchored` restricts the search to a match starting exactly at `at`.
    pub(crate) fn next_match(
        &self,
        hay: &str,
        at: usize,
        anchored: bool,
        caps: &mut Captures,
    ) -> Option<RawMatch> {
        self.next_match_before(hay, at..hay.len(), anchored, caps)
    }

    /// As [`CompiledDetector::next_match`], for a match that ends by `span.end` (the
    /// text after it still serves as look-ahead context).
    pub(crate) fn next_match_before(
        &self,
        hay: &str,
        span: Range<usize>,
        anchored: bool,
        caps: &mut Captures,
    ) -> Option<RawMatch> {
        let mode = if anchored {
            Anchored::Yes
        } else {
            Anchored::No
        };
        let input = Input::new(hay).range(span).anchored(mode);
        self.regex.search_captures(&input, caps);
        let whole = caps.get_match()?.range();
        let value = self
            .value_group
            .and_then(|g| caps.get_group(g))
            .map_or(whole.clone(), |span| span.range());
        let accepted = match self.validator {
            None => Some(value.len()),
            Some(v) => v.accept(&hay[whole.clone()], &hay[value.clone()]),
        };
        let ok = accepted.is_some();
        let (value, end) = match accepted {
            // A shortened match (no `value` group) resumes where it now ends.
            Some(len) if len < value.len() && self.value_group.is_none() => {
                (value.start..value.start + len, value.start + len)
            }
            Some(_) => (value, whole.end),
            None => (
                value,
                whole.start + hay[whole.start..].chars().next().map_or(1, char::len_utf8),
            ),
        };
        Some(RawMatch {
            start: whole.start,
            end,
            valid: ok.then_some(value),
        })
    }
}

impl CompiledPolicy {
    /// Scans one text for every rule that applies to `direction` and `scope`.
    pub fn scan(&self, text: &str, direction: Direction, scope: &Scope<'_>) -> ScanOutcome {
        let active = self.active(direction, scope);
        let candidates = self.prefilter.candidates(text, &active);
        let mut findings = Vec::new();
        for (index, (det, cand)) in self.detectors.iter().zip(candidates).enumerate() {
            let mut caps = match cand {
                Candidates::Nowhere => continue,
                _ => det.regex.create_captures(),
            };
            let mut record = |m: RawMatch| {
                if let Some(range) = m.valid {
                    findings.push(self.finding(index, range));
                }
                m.end
            };
            match cand {
                Candidates::Nowhere => {}
                // Every match starts at one of `starts`, so trying those (skipping any
                // inside the previous match) finds what `find_iter` would.
                Candidates::At(starts) => {
                    let mut resume = 0;
                    for at in starts {
                        if at >= resume
                            && let Some(m) = det.next_match(text, at, true, &mut caps)
                        {
                            resume = record(m);
                        }
                    }
                }
                Candidates::Within(span) => {
                    // Every match lies inside `span`, so searching only there finds
                    // what `find_iter` over the whole text would.
                    let mut at = span.start;
                    while at < span.end {
                        match det.next_match_before(text, at..span.end, false, &mut caps) {
                            Some(m) => at = record(m),
                            None => break,
                        }
                    }
                }
                Candidates::Anywhere => {
                    let mut at = 0;
                    while at < text.len() {
                        match det.next_match(text, at, false, &mut caps) {
                            Some(m) => at = record(m),
                            None => break,
                        }
                    }
                }
            }
        }
        self.conclude(findings, direction)
    }

    pub(crate) fn finding(&self, index: usize, range: Range<usize>) -> Finding {
        let det = &self.detectors[index];
        Finding {
            rule_id: det.id.clone(),
            kind: det.kind,
            action: det.action,
            range,
            rule_index: index,
        }
    }

    /// The injection score of a set of findings.
    pub(crate) fn injection_score(&self, findings: &[Finding]) -> f32 {
        injection::score(
            findings
                .iter()
                .filter_map(|f| self.detectors[f.rule_index].injection),
        )
    }

    /// Sorts findings, applies the injection threshold, and derives decisions, the
    /// verdict and, for a block, the message.
    pub(crate) fn conclude(&self, mut findings: Vec<Finding>, direction: Direction) -> ScanOutcome {
        sort_findings(&mut findings);
        let score = self.injection_score(&findings);
        if score < self.injection_threshold {
            findings.retain(|f| f.kind != DetectorKind::Injection);
        }
        let decisions = self.decisions(&findings);
        let verdict = decisions
            .iter()
            .map(|d| Verdict::from_action(d.action))
            .max()
            .unwrap_or(Verdict::Allow);
        let block_message =
            (verdict == Verdict::Block).then(|| self.block_message(&decisions, direction, score));
        ScanOutcome {
            verdict,
            decisions,
            findings,
            injection_score: score,
            block_message,
        }
    }

    /// One decision per rule id, in rule order.
    pub(crate) fn decisions(&self, findings: &[Finding]) -> Vec<Decision> {
        let mut counts = vec![0u32; self.detectors.len()];
        for f in findings {
            counts[f.rule_index] += 1;
        }
        let mut out: Vec<Decision> = Vec::new();
        for (det, &count) in self.detectors.iter().zip(&counts) {
            if count == 0 {
                continue;
            }
            match out.iter_mut().find(|d| d.rule_id == det.id) {
                Some(d) => d.count += count,
                None => out.push(Decision {
                    rule_id: det.id.clone(),
                    kind: det.kind,
                    action: det.action,
                    severity: det.severity,
                    count,
                }),
            }
        }
        out
    }

    /// "Sluice blocked this request: it contains an AWS access key id (guardrail
    /// `aws_access_key`). To continue, remove the AWS access key …".
    pub(crate) fn block_message(
        &self,
        decisions: &[Decision],
        direction: Direction,
        score: f32,
    ) -> String {
        let mut parts = Vec::new();
        for d in decisions.iter().filter(|d| d.action == Action::Block) {
            let Some(det) = self.detectors.iter().find(|x| x.id == d.rule_id) else {
                continue;
            };
            let what = if det.kind == DetectorKind::Injection {
                format!("{} (score {score:.2})", det.description)
            } else {
                det.description.clone()
            };
            parts.push((what, det.id.to_string(), det.remedy.clone()));
        }
        let found: Vec<String> = parts
            .iter()
            .map(|(what, id, _)| format!("{what} (guardrail `{id}`)"))
            .collect();
        let remedies: Vec<&str> = parts.iter().map(|(_, _, r)| r.as_str()).collect();
        match direction {
            Direction::Output => format!(
                "Sluice stopped the answer: it contained {}. Ask again without requesting that content.",
                found.join(" and ")
            ),
            _ => format!(
                "Sluice blocked this request: it contains {}. To continue, {}.",
                found.join(" and "),
                remedies.join("; ")
            ),
        }
    }
}

/// Position order, longer first at the same start, then rule priority. Redaction and the
/// stream scanner both depend on this exact order.
pub(crate) fn sort_findings(findings: &mut [Finding]) {
    findings.sort_by_key(|f| (f.range.start, Reverse(f.range.end), f.rule_index));
}
