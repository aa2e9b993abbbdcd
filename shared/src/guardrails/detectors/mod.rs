//! The built-in detectors, as tables. Each is a regex that finds candidates, a
//! [`Validator`] that confirms them, and the defaults a policy may override. Adding a
//! detector that reuses a known check is a new table row, not new code.

mod pii;
mod rule;
mod secrets;

pub use pii::NATIONAL_IDS;
pub use rule::{Anchors, BuiltinDetector, PatternRule};

use crate::guardrails::model::{Action, DetectorKind, Direction, Severity};

/// Every built-in detector, in priority order (an earlier one wins ties when two
/// matches start at the same byte with the same length).
pub fn builtins() -> Vec<BuiltinDetector> {
    let mut all = secrets::SECRETS.to_vec();
    all.extend_from_slice(pii::PII);
    all.extend(NATIONAL_IDS.iter().map(|&rule| BuiltinDetector {
        rule,
        kind: DetectorKind::Pii,
        severity: Severity::High,
        action: Action::Redact,
        direction: Direction::Both,
        anchors: Anchors::Derive,
        stream_bound: None,
        remedy: "remove the national identity number, or refer to the person by a record id",
    }));
    all
}
