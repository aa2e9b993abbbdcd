//! Usage reports and the audit log: pages, export, chain verification.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use http::{HeaderValue, header};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{AdminResult, Q, bad, gov};
use crate::api::state::AppState;
use crate::governance::audit::{VerifyReport, verify_chain};

use axum::response::Response;

use crate::governance::now_ms;
use crate::governance::store::{AuditFilter, UsageGroup};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UsageQuery {
    group_by: UsageGroup,
    #[serde(default)]
    by_day: bool,
    #[serde(default)]
    from_ms: Option<i64>,
    #[serde(default)]
    to_ms: Option<i64>,
}

pub(super) async fn usage(
    State(s): State<Arc<AppState>>,
    Q(q): Q<UsageQuery>,
) -> AdminResult<Json<Value>> {
    let g = gov(&s)?;
    let to = q.to_ms.unwrap_or_else(|| now_ms() + 1);
    let from = q.from_ms.unwrap_or(to - 30 * 86_400_000);
    let rows = g.store.usage(q.group_by, q.by_day, from, to).await?;
    Ok(Json(json!({"from_ms": from, "to_ms": to, "data": rows})))
}

pub(super) fn audit_filter(
    params: &std::collections::HashMap<String, String>,
) -> AdminResult<AuditFilter> {
    let mut f = serde_json::Map::new();
    for (k, v) in params {
        if k == "limit" {
            continue;
        }
        let value = match k.as_str() {
            "status" | "from_ms" | "to_ms" | "after_seq" => Value::from(
                v.parse::<i64>()
                    .map_err(|_| bad(format!("`{k}` must be a number")))?,
            ),
            _ => Value::String(v.clone()),
        };
        f.insert(k.clone(), value);
    }
    serde_json::from_value(Value::Object(f)).map_err(|e| bad(format!("bad audit filter: {e}")))
}

pub(super) async fn audit_page(
    State(s): State<Arc<AppState>>,
    Q(params): Q<std::collections::HashMap<String, String>>,
) -> AdminResult<Json<Value>> {
    let g = gov(&s)?;
    let limit = params
        .get("limit")
        .and_then(|l| l.parse::<u32>().ok())
        .unwrap_or(100)
        .clamp(1, 1000);
    let records = g.store.audit_page(audit_filter(&params)?, limit).await?;
    let next = (records.len() as u32 == limit)
        .then(|| records.last().map(|r| r.seq))
        .flatten();
    Ok(Json(json!({"data": records, "next_cursor": next})))
}

pub(super) async fn audit_export(
    State(s): State<Arc<AppState>>,
    Q(params): Q<std::collections::HashMap<String, String>>,
) -> AdminResult<Response> {
    let g = gov(&s)?.clone();
    let filter = audit_filter(&params)?;
    // Streams every matching record as JSON lines, a page at a time.
    let stream = futures_util::stream::unfold(Some(filter), move |state| {
        let g = g.clone();
        async move {
            let mut filter = state?;
            match g.store.audit_page(filter.clone(), 1000).await {
                Ok(records) if records.is_empty() => None,
                Ok(records) => {
                    let mut out = String::new();
                    for r in &records {
                        out.push_str(&serde_json::to_string(r).unwrap_or_default());
                        out.push('\n');
                    }
                    filter.after_seq = records.last().map(|r| r.seq);
                    let more = records.len() == 1000;
                    Some((Ok::<_, std::io::Error>(out), more.then_some(filter)))
                }
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            }
        }
    });
    let mut response = Response::new(axum::body::Body::from_stream(stream));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}

pub(super) async fn audit_verify(
    State(s): State<Arc<AppState>>,
) -> AdminResult<Json<VerifyReport>> {
    let g = gov(&s)?;
    Ok(Json(verify_chain(g.store.as_ref()).await?))
}
