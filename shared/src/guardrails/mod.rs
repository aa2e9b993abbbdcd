//! The guardrail engine: one implementation for the gateway and the edge agent, so a
//! device offline enforces exactly what the gateway would. No I/O: the external
//! classifier hook is described here ([`hook`]) and called by the gateway.
//!
//! The flow, once per policy version and then per text:
//!
//! 1. [`CompiledPolicy::compile`] turns a [`Policy`] (built-in detectors with
//!    overrides, custom regexes and keyword lists, injection threshold) into regexes,
//!    a one-pass prefilter (Aho-Corasick over literals + one multi-pattern lazy DFA that
//!    also says where each rule's matches lie), and lazy DFAs for streams.
//! 2. [`CompiledPolicy::scan`] finds matches in one text and returns a
//!    [`ScanOutcome`]: [`Decision`]s for audit (rule, action, count — never the text),
//!    [`Finding`]s (byte ranges) for redaction, and a [`Verdict`].
//! 3. [`Redactor::redact`] rewrites the text with numbered, typed placeholders.
//! 4. [`CompiledPolicy::guard`] does 2–3 for every text field of a request or
//!    response ([`GuardTarget`]); [`StreamScanner`] does it for streamed output,
//!    holding back only what a match could still span.
//!
//! Quality is measured on the labelled corpus in `tests/guardrails/corpus` by
//! [`eval`] (the `sluice-guardrails-eval` binary and a unit test run it).

mod compile;
pub mod detectors;
pub mod eval;
pub mod hook;
pub mod injection;
mod model;
mod policy;
mod redact;
pub mod sample;
mod scan;
mod shapes;
mod stream;
pub mod validators;

pub use compile::{CompiledPolicy, RuleInfo};
pub use hook::{ClassifierRequest, ClassifierResponse, ExternalHookConfig, hook_decision};
pub use model::{
    Action, Decision, DetectorKind, Direction, Finding, RuleId, ScanOutcome, Scope, ScopeFilter,
    Severity, Verdict,
};
pub use policy::{
    CustomRule, DetectorOverride, InjectionSettings, Policy, PolicyError, StreamSettings,
};
pub use redact::{Redactor, redact};
pub use shapes::{GuardOutcome, GuardTarget, ResponsesRequest, ResponsesResponse, TextSlot};
pub use stream::{StreamScanner, StreamStep};
pub use validators::Validator;
