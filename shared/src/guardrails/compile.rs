//! Turning a [`Policy`] into the structures a scan runs on, once per policy version:
//! each rule's regex, a one-pass prefilter (Aho-Corasick over literals that every match
//! contains, plus one multi-pattern lazy DFA for the rules that have none), and the lazy
//! DFAs a stream uses to tell how much text a match could still span.

use std::collections::BTreeSet;

use aho_corasick::{AhoCorasick, AhoCorasickKind};
use regex_automata::Input;
use regex_automata::MatchKind;
use regex_automata::hybrid::dfa::{Cache, DFA, OverlappingState};
use regex_automata::meta::Regex;
use regex_automata::util::pool::Pool;
use regex_automata::util::primitives::PatternID;
use regex_syntax::hir::literal::Extractor;

use super::detectors::{Anchors, BuiltinDetector, builtins};
use super::hook::ExternalHookConfig;
use super::injection::{INJECTION_RULE_ID, PHRASES};
use super::model::{Action, DetectorKind, Direction, RuleId, Scope, ScopeFilter, Severity};
use super::policy::{CustomRule, Policy, PolicyError};
use super::validators::Validator;

/// A policy ready to scan. Immutable and `Send + Sync`: build it when the policy
/// changes, share it behind an `Arc`, and every request reads the same version.
#[derive(Debug)]
pub struct CompiledPolicy {
    pub(crate) detectors: Vec<CompiledDetector>,
    /// Which rules apply to a scan of each direction (input, output, both) for any
    /// scope, precomputed so that a scan does not walk every rule to find out (on a
    /// short text, touching each rule's record cost more than the scan itself).
    unscoped_active: [Vec<bool>; 3],
    /// Rules limited to some orgs, teams, keys or apps: checked per scan.
    scoped: Vec<usize>,
    pub(crate) prefilter: Prefilter,
    pub(crate) liveness: Vec<LivenessGroup>,
    pub(crate) injection_threshold: f32,
    pub(crate) external_hook: Option<ExternalHookConfig>,
}

/// One rule, compiled.
#[derive(Debug)]
pub(crate) struct CompiledDetector {
    pub id: RuleId,
    pub kind: DetectorKind,
    pub severity: Severity,
    pub action: Action,
    pub direction: Direction,
    pub scope: ScopeFilter,
    pub regex: Regex,
    /// Index of the capture group named `value`, if any.
    pub value_group: Option<usize>,
    pub validator: Option<Validator>,
    pub description: String,
    pub remedy: String,
    /// Family and weight, for prompt-injection phrases.
    pub injection: Option<(&'static str, f32)>,
}

/// Public facts about a compiled rule, for documentation, evaluation and admin UIs.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleInfo {
    pub id: RuleId,
    pub kind: DetectorKind,
    pub severity: Severity,
    pub action: Action,
    pub direction: Direction,
    pub description: String,
}

/// Finds, in one pass over the text, the rules that could possibly match, so that the
/// common case (no hit) costs one Aho-Corasick scan and one multi-pattern DFA scan.
#[derive(Debug)]
pub(crate) struct Prefilter {
    pub(crate) literals: Option<AhoCorasick>,
    /// Literal pattern index → the rules it triggers, and whether the literal starts
    /// every match of that rule (then the rule is tried only where it occurs).
    literal_rules: Vec<Vec<(usize, bool)>>,
    pub(crate) set: Option<RuleSet>,
    /// Set pattern index → rule index.
    set_rules: Vec<usize>,
}

/// The rules without selective literals, as one lazy DFA run over the text in
/// overlapping mode. Unlike a `RegexSet`, it reports where matches end, so a rule that
/// fires is then searched only between its first possible start and its last end —
/// a few bytes around each hit instead of the whole text again.
pub(crate) struct RuleSet {
    dfa: DFA,
    caches: Pool<Cache, CacheFn>,
    /// Set pattern index → the longest match its regex allows (`None`: unbounded).
    max_lens: Vec<Option<usize>>,
}

type CacheFn =
    Box<dyn Fn() -> Cache + Send + Sync + std::panic::RefUnwindSafe + std::panic::UnwindSafe>;

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("patterns", &self.max_lens.len())
            .finish_non_exhaustive()
    }
}

/// Where a rule could match, according to the prefilter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Candidates {
    Nowhere,
    /// Only at these byte offsets (sorted): where one of its prefix literals occurs.
    At(Vec<usize>),
    /// Every match lies inside this span; search only there.
    Within(std::ops::Range<usize>),
    /// Somewhere; search the whole text.
    Anywhere,
}

/// A lazy DFA over a group of rules, run anchored at each position of a stream's tail
/// to learn whether a match could still start there. Rules are grouped by how far a
/// match may reach (`bound`), so that one long PEM block does not make every short
/// rule hold back kilobytes.
#[derive(Debug)]
pub(crate) struct LivenessGroup {
    pub dfa: DFA,
    /// DFA pattern id → rule index.
    pub rules: Vec<usize>,
    /// A position still alive this many bytes after it is released anyway (only
    /// reachable by regexes of unbounded length).
    pub bound: usize,
}

/// A rule's prefilter literals (lowercase) and whether they start every match.
type LiteralSet = (Vec<Vec<u8>>, bool);

/// Prefix literals shorter than this trigger too often to be worth prefiltering on.
const MIN_LITERAL_LEN: usize = 3;
/// More alternatives than this and the literal set stops being selective.
const MAX_LITERALS_PER_RULE: usize = 64;
/// Matches whose maximum length exceeds this go to the "long" liveness group.
const LONG_MATCH: usize = 2048;

struct Source {
    id: String,
    path: String,
    kind: DetectorKind,
    severity: Severity,
    action: Action,
    direction: Direction,
    scope: ScopeFilter,
    pattern: String,
    validator: Option<Validator>,
    description: String,
    remedy: String,
    anchors: Vec<String>,
    /// Whether `anchors` start every match (else they are only contained in it).
    anchors_prefix: bool,
    stream_bound: Option<usize>,
    injection: Option<(&'static str, f32)>,
}

impl CompiledPolicy {
    /// Compiles every enabled rule of `policy`. Errors name the policy path, the rule
    /// and, for a regex, the pattern and the parser's reason.
    pub fn compile(policy: &Policy) -> Result<CompiledPolicy, PolicyError> {
        let sources = sources(policy)?;
        let cap = policy.stream.max_holdback_bytes;
        if !(16..=1 << 20).contains(&cap) {
            return Err(PolicyError::invalid(
                "stream.max_holdback_bytes",
                format!("{cap} is out of range; use 16 to 1048576 bytes"),
            ));
        }
        let threshold = policy.injection.threshold;
        if !(0.0..=1.0).contains(&threshold) || threshold == 0.0 {
            return Err(PolicyError::invalid(
                "injection.threshold",
                format!("{threshold} is out of range; use a score in (0, 1]"),
            ));
        }
        if let Some(hook) = &policy.external_hook {
            if !(hook.url.starts_with("https://") || hook.url.starts_with("http://")) {
                return Err(PolicyError::invalid(
                    "external_hook.url",
                    format!("`{}` is not an http(s) URL", hook.url),
                ));
            }
            if hook.timeout_ms == 0 || hook.timeout_ms > 60_000 {
                return Err(PolicyError::invalid(
                    "external_hook.timeout_ms",
                    format!("{} is out of range; use 1 to 60000", hook.timeout_ms),
                ));
            }
        }

        let mut detectors = Vec::with_capacity(sources.len());
        let mut literal_sets: Vec<Option<LiteralSet>> = Vec::with_capacity(sources.len());
        let mut bounds = Vec::with_capacity(sources.len());
        let mut max_lens = Vec::with_capacity(sources.len());
        for src in &sources {
            let regex_error = |reason: String| PolicyError::Regex {
                path: src.path.clone(),
                rule: src.id.clone(),
                regex: src.pattern.clone(),
                reason,
            };
            let hir = regex_syntax::ParserBuilder::new()
                .build()
                .parse(&src.pattern)
                .map_err(|e| regex_error(e.to_string()))?;
            let props = hir.properties();
            if props.minimum_len().unwrap_or(0) == 0 {
                return Err(regex_error(
                    "it can match empty text, which would flag every position; require at least one character".into(),
                ));
            }
            let regex = Regex::new(&src.pattern).map_err(|e| regex_error(e.to_string()))?;
            let value_group = regex.group_info().to_index(PatternID::ZERO, "value");
            literal_sets.push(if src.anchors.is_empty() {
                prefix_literals(&hir).map(|l| (l, true))
            } else {
                Some((
                    src.anchors
                        .iter()
                        .map(|a| a.as_bytes().to_ascii_lowercase())
                        .collect(),
                    src.anchors_prefix,
                ))
            });
            let long =
                src.stream_bound.is_some() || props.maximum_len().is_some_and(|m| m > LONG_MATCH);
            let bound = match (props.maximum_len(), src.stream_bound) {
                (Some(max), _) => max,
                (None, Some(b)) => b,
                (None, None) => cap,
            };
            bounds.push((long, bound));
            max_lens.push(props.maximum_len());
            detectors.push(CompiledDetector {
                id: RuleId::new(&src.id),
                kind: src.kind,
                severity: src.severity,
                action: src.action,
                direction: src.direction,
                scope: src.scope.clone(),
                regex,
                value_group,
                validator: src.validator,
                description: src.description.clone(),
                remedy: src.remedy.clone(),
                injection: src.injection,
            });
        }

        let prefilter = build_prefilter(&sources, &literal_sets, &max_lens)?;
        let mut liveness = Vec::new();
        for long in [false, true] {
            let members: Vec<usize> = (0..sources.len())
                .filter(|&i| bounds[i].0 == long)
                .collect();
            if members.is_empty() {
                continue;
            }
            let patterns: Vec<&str> = members
                .iter()
                .map(|&i| sources[i].pattern.as_str())
                .collect();
            let dfa = DFA::builder()
                .configure(
                    DFA::config()
                        .match_kind(MatchKind::All)
                        .unicode_word_boundary(true)
                        .cache_capacity(1 << 20),
                )
                .build_many(&patterns)
                .map_err(|e| {
                    PolicyError::invalid(
                        "rules",
                        format!("the stream automaton cannot be built: {e}"),
                    )
                })?;
            // +4: a match's end can depend on one more character (`\b`, `$`).
            let bound = members.iter().map(|&i| bounds[i].1).max().unwrap_or(cap) + 4;
            liveness.push(LivenessGroup {
                dfa,
                rules: members,
                bound,
            });
        }

        let scoped = (0..detectors.len())
            .filter(|&i| !detectors[i].scope.is_everything())
            .collect();
        let unscoped_active = [Direction::Input, Direction::Output, Direction::Both].map(|dir| {
            detectors
                .iter()
                .map(|d| d.scope.is_everything() && d.direction.covers(dir))
                .collect()
        });
        Ok(CompiledPolicy {
            detectors,
            unscoped_active,
            scoped,
            prefilter,
            liveness,
            injection_threshold: threshold,
            external_hook: policy.external_hook.clone(),
        })
    }

    /// The rules this policy runs, in priority order.
    pub fn rules(&self) -> impl Iterator<Item = RuleInfo> + '_ {
        let mut seen = BTreeSet::new();
        self.detectors
            .iter()
            .filter(move |d| seen.insert(d.id.clone()))
            .map(|d| RuleInfo {
                id: d.id.clone(),
                kind: d.kind,
                severity: d.severity,
                action: d.action,
                direction: d.direction,
                description: d.description.clone(),
            })
    }

    /// The external classifier the gateway should call, if the policy names one.
    pub fn external_hook(&self) -> Option<&ExternalHookConfig> {
        self.external_hook.as_ref()
    }

    /// Which rules apply to a scan of `direction` text for `scope`.
    pub(crate) fn active(&self, direction: Direction, scope: &Scope<'_>) -> Vec<bool> {
        let index = match direction {
            Direction::Input => 0,
            Direction::Output => 1,
            Direction::Both => 2,
        };
        let mut active = self.unscoped_active[index].clone();
        for &i in &self.scoped {
            let d = &self.detectors[i];
            active[i] = d.direction.covers(direction) && d.scope.matches(scope);
        }
        active
    }
}

impl Prefilter {
    /// Where each rule (among `active`) could match in `text`.
    pub(crate) fn candidates(&self, text: &str, active: &[bool]) -> Vec<Candidates> {
        let mut out = vec![Candidates::Nowhere; active.len()];
        if let Some(ac) = &self.literals {
            for m in ac.find_overlapping_iter(text) {
                for &(rule, prefix) in &self.literal_rules[m.pattern().as_usize()] {
                    if !active[rule] {
                        continue;
                    }
                    match (&mut out[rule], prefix) {
                        (Candidates::At(starts), true) => starts.push(m.start()),
                        (c @ Candidates::Nowhere, true) => *c = Candidates::At(vec![m.start()]),
                        (c, false) => *c = Candidates::Anywhere,
                        (Candidates::Anywhere | Candidates::Within(_), true) => {}
                    }
                }
            }
        }
        if let Some(set) = &self.set
            && self.set_rules.iter().any(|&r| active[r])
        {
            set.mark(text, &self.set_rules, active, &mut out);
        }
        for c in &mut out {
            if let Candidates::At(starts) = c {
                starts.sort_unstable();
                starts.dedup();
            }
        }
        out
    }
}

impl RuleSet {
    fn new(patterns: &[&str], max_lens: Vec<Option<usize>>) -> Result<RuleSet, PolicyError> {
        let dfa = DFA::builder()
            .configure(
                DFA::config()
                    .match_kind(MatchKind::All)
                    .unicode_word_boundary(true)
                    .cache_capacity(2 << 20),
            )
            .build_many(patterns)
            .map_err(|e| {
                PolicyError::invalid("rules", format!("the regex prefilter cannot be built: {e}"))
            })?;
        let for_caches = dfa.clone();
        Ok(RuleSet {
            dfa,
            caches: Pool::new(Box::new(move || for_caches.create_cache())),
            max_lens,
        })
    }

    /// Sets `out[rule]` to the span its matches lie in, for every active rule of the set
    /// that matches `text`. A span starts the rule's longest match before its first
    /// match end (no match can start earlier) and ends at its last match end.
    fn mark(&self, text: &str, set_rules: &[usize], active: &[bool], out: &mut [Candidates]) {
        let mut cache = self.caches.get();
        let input = Input::new(text);
        let mut state = OverlappingState::start();
        let mut ends: Vec<Option<(usize, usize)>> = vec![None; set_rules.len()];
        loop {
            if self
                .dfa
                .try_search_overlapping_fwd(&mut cache, &input, &mut state)
                .is_err()
            {
                // The DFA gave up (a Unicode word boundary next to non-ASCII text):
                // every active rule of the set is searched in full instead.
                for &rule in set_rules {
                    if active[rule] {
                        out[rule] = Candidates::Anywhere;
                    }
                }
                return;
            }
            let Some(m) = state.get_match() else { break };
            let e = m.offset();
            let slot = &mut ends[m.pattern().as_usize()];
            *slot = Some(slot.map_or((e, e), |(first, last)| (first.min(e), last.max(e))));
        }
        for (i, span) in ends.into_iter().enumerate() {
            let rule = set_rules[i];
            if let Some((first, last)) = span
                && active[rule]
            {
                let start = self.max_lens[i].map_or(0, |max| first.saturating_sub(max));
                out[rule] = Candidates::Within(start..last);
            }
        }
    }
}

fn build_prefilter(
    sources: &[Source],
    literal_sets: &[Option<LiteralSet>],
    max_lens: &[Option<usize>],
) -> Result<Prefilter, PolicyError> {
    let mut literals: Vec<Vec<u8>> = Vec::new();
    let mut literal_rules: Vec<Vec<(usize, bool)>> = Vec::new();
    let mut set_patterns = Vec::new();
    let mut set_rules = Vec::new();
    let mut set_max_lens = Vec::new();
    for (rule, lits) in literal_sets.iter().enumerate() {
        match lits {
            Some((lits, prefix)) => {
                for lit in lits {
                    match literals.iter().position(|l| l == lit) {
                        Some(i) => literal_rules[i].push((rule, *prefix)),
                        None => {
                            literals.push(lit.clone());
                            literal_rules.push(vec![(rule, *prefix)]);
                        }
                    }
                }
            }
            None => {
                set_patterns.push(sources[rule].pattern.as_str());
                set_max_lens.push(max_lens[rule]);
                set_rules.push(rule);
            }
        }
    }
    let literals_ac = if literals.is_empty() {
        None
    } else {
        Some(
            AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .kind(Some(AhoCorasickKind::DFA))
                .build(&literals)
                .map_err(|e| {
                    PolicyError::invalid(
                        "rules",
                        format!("the literal prefilter cannot be built: {e}"),
                    )
                })?,
        )
    };
    let set = if set_patterns.is_empty() {
        None
    } else {
        Some(RuleSet::new(&set_patterns, set_max_lens)?)
    };
    Ok(Prefilter {
        literals: literals_ac,
        literal_rules,
        set,
        set_rules,
    })
}

/// Literal prefixes, one of which starts every match, lowercased for the
/// case-insensitive prefilter; `None` when the regex has no selective prefixes.
fn prefix_literals(hir: &regex_syntax::hir::Hir) -> Option<Vec<Vec<u8>>> {
    let seq = Extractor::new().extract(hir);
    let lits = seq.literals()?;
    if lits.is_empty() || lits.len() > MAX_LITERALS_PER_RULE * 4 {
        return None;
    }
    let mut out: Vec<Vec<u8>> = Vec::new();
    for lit in lits {
        if lit.as_bytes().len() < MIN_LITERAL_LEN {
            return None;
        }
        let s = lit.as_bytes().to_ascii_lowercase();
        if !out.contains(&s) {
            out.push(s);
        }
    }
    (out.len() <= MAX_LITERALS_PER_RULE).then_some(out)
}

fn sources(policy: &Policy) -> Result<Vec<Source>, PolicyError> {
    let builtin = builtins();
    let injection_override = policy.detectors.get(INJECTION_RULE_ID);
    for (id, ov) in &policy.detectors {
        let known = id == INJECTION_RULE_ID || builtin.iter().any(|b| b.rule.id == id);
        if !known {
            let ids: Vec<&str> = builtin
                .iter()
                .map(|b| b.rule.id)
                .chain([INJECTION_RULE_ID])
                .collect();
            return Err(PolicyError::invalid(
                format!("detectors.{id}"),
                format!(
                    "no built-in detector has this id; known ids: {}",
                    ids.join(", ")
                ),
            ));
        }
        if id == INJECTION_RULE_ID && ov.action == Some(Action::Redact) {
            return Err(PolicyError::invalid(
                format!("detectors.{id}.action"),
                "prompt_injection is a score over the whole text, not a value to replace; use block, warn or log",
            ));
        }
    }

    let mut out = Vec::new();
    for b in &builtin {
        if let Some(src) = builtin_source(b, policy.detectors.get(b.rule.id)) {
            out.push(src);
        }
    }
    if injection_override.and_then(|o| o.enabled) != Some(false) {
        for phrase in PHRASES {
            let ov = injection_override.cloned().unwrap_or_default();
            out.push(Source {
                id: INJECTION_RULE_ID.into(),
                path: format!("detectors.{INJECTION_RULE_ID}"),
                kind: DetectorKind::Injection,
                severity: ov.severity.unwrap_or(Severity::Medium),
                action: ov.action.unwrap_or(Action::Warn),
                direction: ov.direction.unwrap_or(Direction::Input),
                scope: ov.scope.unwrap_or_default(),
                pattern: phrase.regex.into(),
                validator: None,
                description: "a likely prompt-injection or jailbreak attempt".into(),
                remedy: "rephrase the request without instructions aimed at overriding the assistant's rules".into(),
                anchors: phrase.anchors.iter().map(|s| (*s).into()).collect(),
                anchors_prefix: true,
                stream_bound: None,
                injection: Some((phrase.family, phrase.weight)),
            });
        }
    }

    for (i, rule) in policy.rules.iter().enumerate() {
        let path = format!("rules[{i}]");
        check_rule_id(&path, &rule.id)?;
        if builtin.iter().any(|b| b.rule.id == rule.id) || rule.id == INJECTION_RULE_ID {
            return Err(PolicyError::invalid(
                format!("{path}.id"),
                format!(
                    "`{}` is a built-in detector id; override it under [detectors.{}] or choose another id",
                    rule.id, rule.id
                ),
            ));
        }
        if policy.rules[..i].iter().any(|r| r.id == rule.id) {
            return Err(PolicyError::invalid(
                format!("{path}.id"),
                format!("`{}` is used by an earlier rule", rule.id),
            ));
        }
        if !rule.enabled {
            continue;
        }
        out.push(custom_source(&path, rule)?);
    }
    Ok(out)
}

fn builtin_source(
    b: &BuiltinDetector,
    ov: Option<&super::policy::DetectorOverride>,
) -> Option<Source> {
    let ov = ov.cloned().unwrap_or_default();
    if ov.enabled == Some(false) {
        return None;
    }
    Some(Source {
        id: b.rule.id.into(),
        path: format!("detectors.{}", b.rule.id),
        kind: b.kind,
        severity: ov.severity.unwrap_or(b.severity),
        action: ov.action.unwrap_or(b.action),
        direction: ov.direction.unwrap_or(b.direction),
        scope: ov.scope.unwrap_or_default(),
        pattern: b.rule.regex.into(),
        validator: b.rule.validator,
        description: b.rule.description.into(),
        remedy: b.remedy.into(),
        anchors: match b.anchors {
            Anchors::Prefix(a) | Anchors::Contains(a) => a.iter().map(|s| (*s).into()).collect(),
            Anchors::Derive => Vec::new(),
        },
        anchors_prefix: matches!(b.anchors, Anchors::Prefix(_)),
        stream_bound: b.stream_bound,
        injection: None,
    })
}

fn check_rule_id(path: &str, id: &str) -> Result<(), PolicyError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(PolicyError::invalid(
            format!("{path}.id"),
            format!(
                "`{id}` must be 1–64 characters of a-z, 0-9, `_` or `-`; it appears in placeholders and metrics"
            ),
        ))
    }
}

fn custom_source(path: &str, rule: &CustomRule) -> Result<Source, PolicyError> {
    let pattern = match (&rule.regex, rule.keywords.is_empty()) {
        (Some(_), false) => {
            return Err(PolicyError::invalid(
                path,
                "set either `regex` or `keywords`, not both",
            ));
        }
        (None, true) => {
            return Err(PolicyError::invalid(
                path,
                "set `regex` or a non-empty `keywords` list",
            ));
        }
        (Some(re), true) => {
            if rule.case_insensitive {
                format!("(?i:{re})")
            } else {
                re.clone()
            }
        }
        (None, false) => keyword_pattern(path, rule)?,
    };
    Ok(Source {
        id: rule.id.clone(),
        path: path.to_string(),
        kind: DetectorKind::Custom,
        severity: rule.severity,
        action: rule.action,
        direction: rule.direction,
        scope: rule.scope.clone(),
        pattern,
        validator: rule.validator,
        description: rule
            .description
            .clone()
            .unwrap_or_else(|| format!("text matching the organisation's rule `{}`", rule.id)),
        remedy: rule
            .message
            .clone()
            .unwrap_or_else(|| "remove that text, or ask your administrator about the rule".into()),
        // Derived from the regex: sound under Unicode case folding, which a
        // hand-written keyword list would not be.
        anchors: Vec::new(),
        anchors_prefix: true,
        stream_bound: None,
        injection: None,
    })
}

/// A keyword list as one regex: escaped alternatives, with ASCII word boundaries on
/// the sides that start or end with a word character (`C++` cannot end at `\b`).
fn keyword_pattern(path: &str, rule: &CustomRule) -> Result<String, PolicyError> {
    let mut alts = Vec::new();
    for (i, kw) in rule.keywords.iter().enumerate() {
        let kw = kw.trim();
        if kw.is_empty() {
            return Err(PolicyError::invalid(
                format!("{path}.keywords[{i}]"),
                "a keyword is empty",
            ));
        }
        let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let mut alt = String::new();
        if rule.whole_word && word(kw.chars().next()) {
            alt.push_str(r"(?-u:\b)");
        }
        alt.push_str(&regex::escape(kw));
        if rule.whole_word && word(kw.chars().last()) {
            alt.push_str(r"(?-u:\b)");
        }
        alts.push(alt);
    }
    let flags = if rule.case_insensitive { "(?i)" } else { "" };
    Ok(format!("{flags}(?:{})", alts.join("|")))
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed expectation is the failure"
    )]

    use super::*;
    use crate::guardrails::model::Scope;
    use crate::guardrails::sample::bench_prompt;

    /// The prefilter's spans (and its fallback when the DFA gives up on a Unicode word
    /// boundary) find exactly what searching every rule over the whole text finds.
    #[test]
    fn prefilter_spans_find_what_a_full_search_finds() {
        let policy: Policy = toml::from_str(
            "[[rules]]\nid = \"ticket\"\nregex = '\\b[0-9]{3}-[0-9]{3}\\b'\naction = \"redact\"\n",
        )
        .unwrap();
        let compiled = CompiledPolicy::compile(&policy).unwrap();
        let texts = [
            bench_prompt(8 * 1024, true),
            bench_prompt(2 * 1024, false),
            "Karte 4539 1488 0343 6467, Tel. +44 20 7946 0321, Ticket 123-456 für Zoë".into(),
            "4539 1488 0343 6467 4539 1488 0343 6467 at both ends 4539 1488 0343 6467".into(),
        ];
        for text in &texts {
            let fast = compiled.scan(text, Direction::Input, &Scope::default());
            let mut full = Vec::new();
            for (i, det) in compiled.detectors.iter().enumerate() {
                let mut caps = det.regex.create_captures();
                let mut at = 0;
                while at < text.len() {
                    let Some(m) = det.next_match(text, at, false, &mut caps) else {
                        break;
                    };
                    if let Some(range) = m.valid {
                        full.push(compiled.finding(i, range));
                    }
                    at = m.end;
                }
            }
            let full = compiled.conclude(full, Direction::Input);
            assert_eq!(fast.findings, full.findings, "{text}");
            assert!(!fast.findings.is_empty() || !text.contains("4539"));
        }
    }
}
