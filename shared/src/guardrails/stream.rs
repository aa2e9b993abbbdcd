//! Scanning a streamed answer. The scanner emits text as soon as no match could still
//! cover it, and holds back only the tail where one might: for each position of the
//! tail it runs the rules' lazy DFA anchored there, and a position stays held only
//! while that automaton is alive. In practice that is the current word or number, not
//! a fixed window, and never the whole answer.
//!
//! The output is exactly what whole-text scanning and redaction would give, for any
//! split of the text into deltas: every rule resumes where its previous match ended
//! (as `find_iter` does), a match is accepted only once no earlier position can still
//! start one, and redaction regions are closed only once no later match can overlap
//! them. The one exception is a custom regex of unbounded length (`secret-.*`): a
//! stream releases it after `stream.max_holdback_bytes`.

use std::ops::Range;
use std::sync::Arc;

use regex_automata::hybrid::dfa::Cache;
use regex_automata::util::captures::Captures;
use regex_automata::{Anchored, Input};

use super::compile::CompiledPolicy;
use super::model::{Action, Decision, DetectorKind, Direction, Finding, RuleId, Scope};
use super::redact::Redactor;
use super::scan::sort_findings;

/// What to do after a delta.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamStep {
    /// Send this text now (possibly empty: everything new is still held back).
    Emit(String),
    /// A block rule fired: end the stream with an error event carrying `message`.
    /// Text held back so far is discarded; text already emitted did not contain the
    /// blocked match.
    Block { decision: Decision, message: String },
}

/// Per-stream scanner for one text channel (one choice, one content block, one tool
/// call's arguments). Cheap to create; holds an `Arc` of the policy version it started
/// with, so a policy change never alters a stream midway.
#[derive(Debug)]
pub struct StreamScanner {
    policy: Arc<CompiledPolicy>,
    active: Vec<bool>,
    /// Text from absolute offset `base` on; everything before `emitted` is sent.
    buf: String,
    base: usize,
    emitted: usize,
    /// Per rule, the absolute offset its next search starts at.
    resume: Vec<usize>,
    /// Per byte of `buf`: no rule can start a match there any more.
    dead: Vec<bool>,
    /// Dead positions where some rule did match: (absolute offset, rule).
    match_starts: Vec<(usize, usize)>,
    /// Accepted `redact` findings not yet merged into a region.
    pending: Vec<Finding>,
    /// The redaction region being built, not yet emitted.
    region: Option<(Range<usize>, RuleId)>,
    counts: Vec<u32>,
    injection_hits: Vec<usize>,
    redactor: Redactor,
    caches: Vec<Cache>,
    locs: Vec<Option<Captures>>,
    blocked: Option<(Decision, String)>,
}

enum Liveness {
    Alive,
    /// Dead; the rules (indices) whose match starts here.
    Dead(Vec<usize>),
}

impl StreamScanner {
    /// A scanner for model output (rules whose direction covers `output`) of `scope`.
    pub fn new(policy: Arc<CompiledPolicy>, scope: &Scope<'_>) -> Self {
        Self::with_direction(policy, scope, Direction::Output)
    }

    /// As [`StreamScanner::new`], for streamed text of another direction.
    pub fn with_direction(
        policy: Arc<CompiledPolicy>,
        scope: &Scope<'_>,
        direction: Direction,
    ) -> Self {
        let active = policy.active(direction, scope);
        let n = policy.detectors.len();
        let caches = policy
            .liveness
            .iter()
            .map(|g| g.dfa.create_cache())
            .collect();
        StreamScanner {
            active,
            buf: String::new(),
            base: 0,
            emitted: 0,
            resume: vec![0; n],
            dead: Vec::new(),
            match_starts: Vec::new(),
            pending: Vec::new(),
            region: None,
            counts: vec![0; n],
            injection_hits: Vec::new(),
            redactor: Redactor::new(),
            caches,
            locs: (0..n).map(|_| None).collect(),
            blocked: None,
            policy,
        }
    }

    /// Feeds the next delta; returns what may be sent now.
    pub fn push(&mut self, delta: &str) -> StreamStep {
        if let Some((decision, message)) = &self.blocked {
            return StreamStep::Block {
                decision: decision.clone(),
                message: message.clone(),
            };
        }
        self.buf.push_str(delta);
        self.dead.resize(self.buf.len(), false);
        self.step(false)
    }

    /// Ends the stream: everything still held back is decided and returned.
    pub fn finish(&mut self) -> StreamStep {
        if let Some((decision, message)) = &self.blocked {
            return StreamStep::Block {
                decision: decision.clone(),
                message: message.clone(),
            };
        }
        self.step(true)
    }

    /// Bytes received but not yet emitted.
    pub fn held_back(&self) -> usize {
        self.base + self.buf.len() - self.emitted
    }

    /// The decisions so far (complete after [`StreamScanner::finish`]), for audit.
    pub fn decisions(&self) -> Vec<Decision> {
        let score = self.score();
        let findings: Vec<Finding> = self
            .counts
            .iter()
            .enumerate()
            .flat_map(|(i, &c)| (0..c).map(move |_| i))
            .filter(|&i| {
                score >= self.policy.injection_threshold
                    || self.policy.detectors[i].kind != DetectorKind::Injection
            })
            .map(|i| self.policy.finding(i, 0..0))
            .collect();
        self.policy.decisions(&findings)
    }

    /// The prompt-injection score of the text so far.
    pub fn injection_score(&self) -> f32 {
        self.score()
    }

    fn score(&self) -> f32 {
        crate::guardrails::injection::score(
            self.injection_hits
                .iter()
                .filter_map(|&i| self.policy.detectors[i].injection),
        )
    }

    fn step(&mut self, at_end: bool) -> StreamStep {
        let policy = Arc::clone(&self.policy);
        let end = self.base + self.buf.len();
        let rules: Vec<usize> = (0..self.active.len()).filter(|&i| self.active[i]).collect();
        let start = rules.iter().map(|&r| self.resume[r]).min().unwrap_or(end);
        let frontier = if at_end {
            end
        } else {
            self.first_alive(start, end)
        };

        for &r in &rules {
            if self.resume[r] >= frontier && !at_end {
                continue;
            }
            let wanted = at_end
                || self
                    .match_starts
                    .iter()
                    .any(|&(p, rule)| rule == r && p >= self.resume[r] && p < frontier);
            if wanted {
                let det = &policy.detectors[r];
                let mut locs = self.locs[r]
                    .take()
                    .unwrap_or_else(|| det.regex.create_captures());
                loop {
                    let from = self.resume[r] - self.base;
                    if from >= self.buf.len() {
                        break;
                    }
                    let Some(m) = det.next_match(&self.buf, from, false, &mut locs) else {
                        break;
                    };
                    if !at_end && self.base + m.start >= frontier {
                        break;
                    }
                    self.resume[r] = self.base + m.end;
                    if let Some(range) = m.valid {
                        let abs = self.base + range.start..self.base + range.end;
                        if let Some(step) = self.accept(r, abs) {
                            return step;
                        }
                    }
                }
                self.locs[r] = Some(locs);
            }
            self.resume[r] = self.resume[r].max(frontier);
        }
        let resume = &self.resume;
        self.match_starts.retain(|&(p, r)| p >= resume[r]);

        let settled = rules
            .iter()
            .map(|&r| self.resume[r])
            .min()
            .unwrap_or(end)
            .min(end);
        let settled = if at_end { end } else { settled };
        let out = self.emit(settled, at_end);
        self.trim(settled);
        StreamStep::Emit(out)
    }

    /// Records an accepted finding; a block (or an injection score crossing the
    /// threshold under a block action) ends the stream.
    fn accept(&mut self, rule: usize, range: Range<usize>) -> Option<StreamStep> {
        let det = &self.policy.detectors[rule];
        self.counts[rule] += 1;
        let blocks = match det.kind {
            DetectorKind::Injection => {
                self.injection_hits.push(rule);
                det.action == Action::Block && self.score() >= self.policy.injection_threshold
            }
            _ => det.action == Action::Block,
        };
        if blocks {
            let decision = Decision {
                rule_id: det.id.clone(),
                kind: det.kind,
                action: Action::Block,
                severity: det.severity,
                count: 1,
            };
            let message = self.policy.block_message(
                std::slice::from_ref(&decision),
                Direction::Output,
                self.score(),
            );
            self.blocked = Some((decision.clone(), message.clone()));
            return Some(StreamStep::Block { decision, message });
        }
        if det.action == Action::Redact {
            self.pending.push(self.policy.finding(rule, range));
        }
        None
    }

    /// Merges pending findings that start before `settled` (no later finding can start
    /// before it), closes regions that end by then, and returns the text now safe.
    fn emit(&mut self, settled: usize, at_end: bool) -> String {
        sort_findings(&mut self.pending);
        let ready = self.pending.partition_point(|f| f.range.start < settled);
        let mut out = String::new();
        let findings: Vec<Finding> = self.pending.drain(..ready).collect();
        for f in findings {
            match &mut self.region {
                Some((r, _)) if f.range.start < r.end => r.end = r.end.max(f.range.end),
                _ => {
                    self.close_region(&mut out);
                    self.region = Some((f.range.clone(), f.rule_id.clone()));
                }
            }
        }
        if self
            .region
            .as_ref()
            .is_some_and(|(r, _)| r.end <= settled || at_end)
        {
            self.close_region(&mut out);
        }
        let until = match &self.region {
            Some((r, _)) => r.start,
            None => settled,
        };
        if until > self.emitted {
            out.push_str(&self.buf[self.emitted - self.base..until - self.base]);
            self.emitted = until;
        }
        out
    }

    fn close_region(&mut self, out: &mut String) {
        if let Some((range, rule)) = self.region.take() {
            out.push_str(&self.buf[self.emitted - self.base..range.start - self.base]);
            let value = &self.buf[range.start - self.base..range.end - self.base];
            out.push_str(&self.redactor.placeholder(&rule, value));
            self.emitted = range.end;
        }
    }

    /// Drops text that is emitted and searched past, keeping one character of
    /// look-behind context.
    fn trim(&mut self, settled: usize) {
        let keep = self.emitted.min(settled);
        let mut cut = keep.saturating_sub(4).max(self.base) - self.base;
        while cut > 0 && !self.buf.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut > 0 {
            self.buf.drain(..cut);
            self.dead.drain(..cut);
            self.base += cut;
        }
    }

    /// The first position at or after `from` where some rule could still start a
    /// match, given the text so far; `end` if there is none.
    fn first_alive(&mut self, from: usize, end: usize) -> usize {
        let mut p = from.max(self.base);
        while p < end {
            let rel = p - self.base;
            if !self.buf.is_char_boundary(rel) || self.dead[rel] {
                p += 1;
                continue;
            }
            match self.liveness(rel) {
                Liveness::Alive => return p,
                Liveness::Dead(rules) => {
                    self.dead[rel] = true;
                    self.match_starts.extend(rules.into_iter().map(|r| (p, r)));
                }
            }
            p += 1;
        }
        end
    }

    fn liveness(&mut self, rel: usize) -> Liveness {
        let hay = self.buf.as_bytes();
        let remaining = hay.len() - rel;
        let mut matched = Vec::new();
        for (group, cache) in self.policy.liveness.iter().zip(self.caches.iter_mut()) {
            if remaining >= group.bound {
                // Only a regex of unbounded length is still alive here; release the
                // position and let its rules search it as the text stands.
                matched.extend(group.rules.iter().copied());
                continue;
            }
            let input = Input::new(hay).range(rel..).anchored(Anchored::Yes);
            let Ok(mut sid) = group.dfa.start_state_forward(cache, &input) else {
                return Liveness::Alive;
            };
            let mut died = sid.is_dead();
            for &b in &hay[rel..] {
                if died {
                    break;
                }
                sid = match group.dfa.next_state(cache, sid, b) {
                    Ok(s) => s,
                    Err(_) => return Liveness::Alive,
                };
                if sid.is_match() {
                    for i in 0..group.dfa.match_len(cache, sid) {
                        matched
                            .push(group.rules[group.dfa.match_pattern(cache, sid, i).as_usize()]);
                    }
                }
                if sid.is_quit() {
                    return Liveness::Alive;
                }
                died = sid.is_dead();
            }
            if !died {
                return Liveness::Alive;
            }
        }
        Liveness::Dead(matched)
    }
}
