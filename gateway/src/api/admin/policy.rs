//! Virtual keys, budgets and rate limits.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{AdminError, AdminResult, Body, P, bad, gov, new_id, reload};
use crate::api::state::AppState;
use crate::governance::model::{
    Budget, BudgetWindow, KeyPolicy, KeyStatus, OwnerKind, RateLimit, ScopeKind, VirtualKey,
};
use crate::governance::{Governance, keys, now_ms};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewKey {
    name: String,
    /// Exactly one owner: a user, a device, or (neither) the team itself.
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    device_id: Option<String>,
    #[serde(default)]
    team_id: Option<String>,
    #[serde(default)]
    expires_ms: Option<i64>,
    #[serde(default)]
    policy: KeyPolicy,
}

pub(super) async fn list_keys(State(s): State<Arc<AppState>>) -> AdminResult<Json<Value>> {
    Ok(Json(json!({"data": gov(&s)?.snapshot().rows.keys})))
}

pub(super) async fn get_key(
    State(s): State<Arc<AppState>>,
    P(id): P<String>,
) -> AdminResult<Json<VirtualKey>> {
    gov(&s)?
        .snapshot()
        .rows
        .keys
        .iter()
        .find(|k| k.id == id)
        .cloned()
        .map(Json)
        .ok_or_else(|| AdminError(StatusCode::NOT_FOUND, format!("key `{id}` does not exist")))
}

pub(super) async fn create_key(
    State(s): State<Arc<AppState>>,
    Body(b): Body<NewKey>,
) -> AdminResult<(StatusCode, Json<Value>)> {
    let g = gov(&s)?;
    let snap = g.snapshot();
    let rows = &snap.rows;
    let (owner_kind, owner_id, team_id) = match (&b.user_id, &b.device_id) {
        (Some(_), Some(_)) => return Err(bad("give `user_id` or `device_id`, not both")),
        (Some(u), None) => {
            let user = rows.users.iter().find(|x| &x.id == u).ok_or_else(|| {
                AdminError(StatusCode::NOT_FOUND, format!("user `{u}` does not exist"))
            })?;
            (OwnerKind::User, u.clone(), user.team_id.clone())
        }
        (None, Some(d)) => {
            let dev = rows.devices.iter().find(|x| &x.id == d).ok_or_else(|| {
                AdminError(
                    StatusCode::NOT_FOUND,
                    format!("device `{d}` does not exist"),
                )
            })?;
            (OwnerKind::Device, d.clone(), dev.team_id.clone())
        }
        (None, None) => {
            let t = b.team_id.clone().ok_or_else(|| {
                bad("a key needs an owner: `user_id`, `device_id` or (for a team key) `team_id`")
            })?;
            if !rows.teams.iter().any(|x| x.id == t) {
                return Err(AdminError(
                    StatusCode::NOT_FOUND,
                    format!("team `{t}` does not exist"),
                ));
            }
            (OwnerKind::Team, t.clone(), t)
        }
    };
    if let Some(t) = &b.team_id
        && t != &team_id
    {
        return Err(bad(format!(
            "the owner belongs to team `{team_id}`, not `{t}`"
        )));
    }
    drop(snap);
    let (id, secret, token) = keys::generate();
    let key = VirtualKey {
        id,
        name: b.name,
        secret_hash: keys::hash_secret(&secret),
        previous_hash: None,
        previous_expires_ms: None,
        owner_kind,
        owner_id,
        team_id,
        status: KeyStatus::Active,
        expires_ms: b.expires_ms,
        policy: b.policy,
        created_ms: now_ms(),
    };
    g.store.insert_key(key.clone()).await?;
    reload(g).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"key": key, "secret": token, "note": "the secret is shown once; store it now"}),
        ),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyUpdate {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    status: Option<KeyStatus>,
    /// `null` clears the expiry.
    #[serde(default, deserialize_with = "double_option")]
    expires_ms: Option<Option<i64>>,
    #[serde(default)]
    policy: Option<KeyPolicy>,
}

pub(super) fn double_option<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

pub(super) fn find_key(g: &Governance, id: &str) -> AdminResult<VirtualKey> {
    g.snapshot()
        .rows
        .keys
        .iter()
        .find(|k| k.id == id)
        .cloned()
        .ok_or_else(|| AdminError(StatusCode::NOT_FOUND, format!("key `{id}` does not exist")))
}

pub(super) async fn update_key(
    State(s): State<Arc<AppState>>,
    P(id): P<String>,
    Body(b): Body<KeyUpdate>,
) -> AdminResult<Json<VirtualKey>> {
    let g = gov(&s)?;
    let mut key = find_key(g, &id)?;
    if let Some(n) = b.name {
        key.name = n;
    }
    if let Some(st) = b.status {
        key.status = st;
    }
    if let Some(e) = b.expires_ms {
        key.expires_ms = e;
    }
    if let Some(p) = b.policy {
        key.policy = p;
    }
    g.store.update_key(key.clone()).await?;
    reload(g).await?;
    Ok(Json(key))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Rotate {
    /// How long the old secret keeps working. Default 24 h; 0 revokes it at once.
    #[serde(default)]
    grace_secs: Option<u64>,
}

pub(super) async fn rotate_key(
    State(s): State<Arc<AppState>>,
    P(id): P<String>,
    body: bytes::Bytes,
) -> AdminResult<Json<Value>> {
    let g = gov(&s)?;
    let mut key = find_key(g, &id)?;
    // The body is optional: empty means the defaults.
    let rotate: Rotate = if body.iter().all(u8::is_ascii_whitespace) {
        Rotate::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| bad(format!("bad request body: {e}")))?
    };
    // Capped at a year so the expiry below cannot overflow.
    let grace = rotate.grace_secs.unwrap_or(86_400).min(366 * 86_400);
    let secret = keys::generate_secret();
    key.previous_hash = (grace > 0).then(|| key.secret_hash.clone());
    key.previous_expires_ms = (grace > 0).then(|| now_ms() + grace as i64 * 1000);
    key.secret_hash = keys::hash_secret(&secret);
    g.store.update_key(key.clone()).await?;
    reload(g).await?;
    Ok(Json(json!({
        "key": key,
        "secret": format!("{}{}-{secret}", keys::PREFIX, key.id),
        "note": format!("the old secret keeps working for {grace} s"),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewBudget {
    scope_kind: ScopeKind,
    scope_id: String,
    window: BudgetWindow,
    #[serde(default)]
    rolling: bool,
    limit_usd: f64,
    #[serde(default)]
    soft_fraction: Option<f64>,
    #[serde(default)]
    id: Option<String>,
}

pub(super) fn check_scope(
    g: &Governance,
    kind: ScopeKind,
    id: &str,
    for_budget: bool,
) -> AdminResult<()> {
    let snap = g.snapshot();
    let r = &snap.rows;
    let exists = match kind {
        ScopeKind::Key => r.keys.iter().any(|x| x.id == id),
        ScopeKind::User => r.users.iter().any(|x| x.id == id),
        ScopeKind::Device => r.devices.iter().any(|x| x.id == id),
        ScopeKind::Team => r.teams.iter().any(|x| x.id == id),
        ScopeKind::Org => r.orgs.iter().any(|x| x.id == id),
        ScopeKind::Model if for_budget => {
            return Err(bad("budgets apply to key, user, device, team or org"));
        }
        ScopeKind::Model => !id.is_empty(),
    };
    if exists {
        Ok(())
    } else {
        Err(AdminError(
            StatusCode::NOT_FOUND,
            format!("{} `{id}` does not exist", kind.as_str()),
        ))
    }
}

pub(super) async fn list_budgets(State(s): State<Arc<AppState>>) -> AdminResult<Json<Value>> {
    let g = gov(&s)?;
    let data: Vec<Value> = g
        .budget_states()
        .into_iter()
        .map(|(b, st)| {
            json!({
                "budget": b,
                "spent_usd": st.spent_micros as f64 / 1e6,
                "reserved_usd": st.reserved_micros as f64 / 1e6,
                "resets_at_ms": st.resets_at,
            })
        })
        .collect();
    Ok(Json(json!({"data": data})))
}

pub(super) async fn create_budget(
    State(s): State<Arc<AppState>>,
    Body(b): Body<NewBudget>,
) -> AdminResult<(StatusCode, Json<Budget>)> {
    let g = gov(&s)?;
    check_scope(g, b.scope_kind, &b.scope_id, true)?;
    if !(b.limit_usd.is_finite() && b.limit_usd >= 0.0) {
        return Err(bad("`limit_usd` must be a non-negative number"));
    }
    let soft = b.soft_fraction.unwrap_or(0.8);
    if !(0.0..=1.0).contains(&soft) {
        return Err(bad("`soft_fraction` must be between 0 and 1"));
    }
    let budget = Budget {
        id: new_id(b.id, "bud")?,
        scope_kind: b.scope_kind,
        scope_id: b.scope_id,
        window: b.window,
        rolling: b.rolling,
        limit_usd: b.limit_usd,
        soft_fraction: soft,
        created_ms: now_ms(),
    };
    g.store.insert_budget(budget.clone()).await?;
    reload(g).await?;
    Ok((StatusCode::CREATED, Json(budget)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewLimit {
    scope_kind: ScopeKind,
    scope_id: String,
    #[serde(default)]
    rpm: Option<u64>,
    #[serde(default)]
    tpm: Option<u64>,
    #[serde(default)]
    concurrency: Option<u64>,
    #[serde(default)]
    id: Option<String>,
}

pub(super) async fn list_limits(State(s): State<Arc<AppState>>) -> AdminResult<Json<Value>> {
    Ok(Json(json!({"data": gov(&s)?.snapshot().rows.limits})))
}

pub(super) async fn create_limit(
    State(s): State<Arc<AppState>>,
    Body(b): Body<NewLimit>,
) -> AdminResult<(StatusCode, Json<RateLimit>)> {
    let g = gov(&s)?;
    if matches!(
        b.scope_kind,
        ScopeKind::User | ScopeKind::Device | ScopeKind::Org
    ) {
        return Err(bad("rate limits apply to a key, a team or a model"));
    }
    check_scope(g, b.scope_kind, &b.scope_id, false)?;
    if b.rpm.is_none() && b.tpm.is_none() && b.concurrency.is_none() {
        return Err(bad("set at least one of `rpm`, `tpm`, `concurrency`"));
    }
    if [b.rpm, b.tpm, b.concurrency].contains(&Some(0)) {
        return Err(bad(
            "limits must be at least 1 (block a key instead of limiting it to 0)",
        ));
    }
    let limit = RateLimit {
        id: new_id(b.id, "lim")?,
        scope_kind: b.scope_kind,
        scope_id: b.scope_id,
        rpm: b.rpm,
        tpm: b.tpm,
        concurrency: b.concurrency,
        created_ms: now_ms(),
    };
    g.store.insert_limit(limit.clone()).await?;
    reload(g).await?;
    Ok((StatusCode::CREATED, Json(limit)))
}
