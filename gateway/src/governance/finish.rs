//! The end of a request: settlement and its audit entry.

use sluice_shared::audit::{AuditAttempt, AuditDecision, AuditEntry, ContentLogging};

use super::budget::now_ms;
use super::counters::Admission;
use super::service::Governance;
use super::snapshot::Identity;
use crate::pricing::Cost;
use crate::record::{AttemptOutcome, RequestOutcome, RequestRecord, action_label};

impl Governance {
    /// The end of a request: settles its reservations with the real cost, charges its
    /// tokens to the TPM limits, releases its slots and queues its audit record. Called
    /// once per request by the engine, on the request's task; it never blocks (the record
    /// is queued). In strict audit durability the returned acknowledgement says when the
    /// record is durable.
    pub fn finish(
        &self,
        mut record: RequestRecord,
        admission: Option<Admission>,
    ) -> Option<super::audit::AuditAck> {
        let ts = record
            .received_at
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let mut admission = admission.unwrap_or_default();
        // A client that leaves mid-answer still used the provider: without final usage
        // (OpenAI reports it only at the end of a stream), charge at least the estimate
        // that was reserved, so disconnecting early is never a way around a budget.
        if matches!(
            record.outcome,
            RequestOutcome::ClientDisconnected | RequestOutcome::StreamFailed
        ) && record.served_by.is_some()
        {
            let reserved = admission
                .reservations
                .iter()
                .map(|(_, m)| *m)
                .max()
                .unwrap_or(0);
            if reserved > record.cost.micros {
                record.cost = Cost {
                    micros: reserved,
                    priced: true,
                };
            }
        }
        let cost = record.cost;
        let tokens = record
            .usage
            .as_ref()
            .map(|u| u.prompt_tokens.saturating_add(u.completion_tokens))
            .unwrap_or(0);
        self.settle(&mut admission, cost, tokens, now_ms());
        let identity = admission.identity.clone();
        drop(admission);
        let entry = audit_entry(
            record,
            identity.as_deref(),
            ts,
            self.settings.max_body_bytes,
        );
        self.audit.submit(entry)
    }
}

/// The audit entry for a finished request; consumes the record (its strings move).
fn audit_entry(r: RequestRecord, id: Option<&Identity>, ts_ms: i64, max_body: usize) -> AuditEntry {
    let content = id.map(|i| i.policy.content_logging).unwrap_or_default();
    let (provider, model) = match r.served_by.as_deref().and_then(|s| s.split_once('/')) {
        Some((p, m)) => (Some(p.to_owned()), Some(m.to_owned())),
        None => (None, None),
    };
    let usage = r.usage.unwrap_or_default();
    let cut = |b: &Option<bytes::Bytes>| {
        b.as_ref().map(|b| {
            let text = String::from_utf8_lossy(&b[..b.len().min(max_body)]).into_owned();
            if b.len() > max_body {
                format!("{text}…[{} bytes cut]", b.len() - max_body)
            } else {
                text
            }
        })
    };
    AuditEntry {
        request_id: r.request_id,
        ts_ms,
        source: "gateway".into(),
        org_id: id.map(|i| i.org_id.clone()),
        team_id: id.map(|i| i.team_id.clone()),
        user_id: id.and_then(|i| i.user_id.clone()),
        device_id: id.and_then(|i| i.device_id.clone()),
        key_id: id.map(|i| i.key_id.clone()),
        app: r.app,
        app_source: r.app_source.map(|s| s.label().to_owned()),
        process: None,
        api: r.api.to_owned(),
        requested_model: r.requested_model,
        provider,
        model,
        attempts: r
            .attempts
            .into_iter()
            .map(|a| {
                let outcome = a.outcome.label().to_owned();
                let (status, detail) = match a.outcome {
                    AttemptOutcome::Ok { status } => (Some(status), None),
                    AttemptOutcome::Status { status, message } => (Some(status), Some(message)),
                    AttemptOutcome::Connect { message }
                    | AttemptOutcome::Protocol { message }
                    | AttemptOutcome::StreamError { message }
                    | AttemptOutcome::Saturated { message } => (None, Some(message)),
                    AttemptOutcome::Skipped { reason } => (None, Some(reason)),
                    AttemptOutcome::HeaderTimeout | AttemptOutcome::IdleTimeout => (None, None),
                };
                AuditAttempt {
                    provider: a.provider,
                    model: a.model,
                    key_id: a.key_id,
                    duration_ms: a.duration.as_secs_f64() * 1000.0,
                    outcome,
                    status,
                    detail,
                }
            })
            .collect(),
        input_tokens: usage.prompt_tokens,
        output_tokens: usage.completion_tokens,
        cached_tokens: usage.cached_tokens(),
        cost_micros: r.cost.micros,
        priced: r.cost.priced,
        latency_ms: r.latency.as_secs_f64() * 1000.0,
        status: r.status,
        outcome: r.outcome.label().to_owned(),
        // Corrected upstream numbers are kept with the error, or as the record's note.
        error: match (r.error_message, r.anomalies.is_empty()) {
            (e, true) => e,
            (None, false) => Some(r.anomalies.join("; ")),
            (Some(e), false) => Some(format!("{e}; {}", r.anomalies.join("; "))),
        },
        guardrails: r
            .guardrails
            .iter()
            .map(|d| AuditDecision {
                rule_id: d.rule_id.to_string(),
                action: action_label(d.action).to_owned(),
                count: d.count,
                direction: Some(
                    match d.direction {
                        sluice_shared::guardrails::Direction::Input => "input",
                        sluice_shared::guardrails::Direction::Output => "output",
                        sluice_shared::guardrails::Direction::Both => "both",
                    }
                    .to_owned(),
                ),
            })
            .collect(),
        content,
        request_bytes: (content != ContentLogging::Off).then_some(r.request_bytes),
        response_bytes: (content != ContentLogging::Off).then_some(r.response_bytes),
        request_body: if content == ContentLogging::Full {
            cut(&r.request_body)
        } else {
            None
        },
        response_body: if content == ContentLogging::Full {
            cut(&r.response_body)
        } else {
            None
        },
    }
}
