//! The admin API, `/api/v1`: orgs, teams, users, devices, virtual keys, budgets, rate
//! limits, usage and the audit log. Authenticated with the admin bearer token from
//! `governance.admin_token` (compared in constant time); virtual keys are never admin
//! tokens. Every change is written to the store first, then the in-memory policy
//! snapshot is rebuilt, so the request path sees the change atomically.
//!
//! `GET /api/v1/openapi.json` describes every route.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{AliasConfig, ProviderConfig};
use crate::governance::audit::{VerifyReport, verify_chain};
use crate::governance::model::{
    Budget, BudgetWindow, Device, KeyPolicy, KeyStatus, Org, OwnerKind, RateLimit, ScopeKind, Team,
    User, VirtualKey,
};
use crate::governance::store::{AuditFilter, Entity, StoreError, UsageGroup};
use crate::governance::{Governance, keys, now_ms};
use crate::routing_admin::{Change, RoutingError};
use crate::server::AppState;

/// An admin API error: `{"error": {"message", "type"}}` with a fitting status.
#[derive(Debug)]
pub struct AdminError(StatusCode, String);

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let kind = match self.0.as_u16() {
            401 => "authentication_error",
            404 => "not_found_error",
            409 => "conflict_error",
            500..=599 => "api_error",
            _ => "invalid_request_error",
        };
        (
            self.0,
            Json(json!({"error": {"message": self.1, "type": kind}})),
        )
            .into_response()
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => AdminError(StatusCode::NOT_FOUND, m),
            StoreError::Conflict(m) => AdminError(StatusCode::CONFLICT, m),
            other => {
                tracing::error!(error = %other, "admin API store error");
                AdminError(StatusCode::INTERNAL_SERVER_ERROR, other.to_string())
            }
        }
    }
}

fn bad(message: impl Into<String>) -> AdminError {
    AdminError(StatusCode::BAD_REQUEST, message.into())
}

type AdminResult<T> = Result<T, AdminError>;

/// The `/api/v1` router. Mounted only when governance is on.
pub fn router(state: Arc<AppState>) -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route("/orgs", get(list_orgs).post(create_org))
        .route("/orgs/{id}", axum::routing::delete(delete_org))
        .route("/teams", get(list_teams).post(create_team))
        .route("/teams/{id}", axum::routing::delete(delete_team))
        .route("/users", get(list_users).post(create_user))
        .route("/users/{id}", axum::routing::delete(delete_user))
        .route("/devices", get(list_devices).post(create_device))
        .route("/devices/{id}", axum::routing::delete(delete_device))
        .route("/keys", get(list_keys).post(create_key))
        .route(
            "/keys/{id}",
            get(get_key).patch(update_key).delete(delete_key),
        )
        .route("/keys/{id}/rotate", post(rotate_key))
        .route("/budgets", get(list_budgets).post(create_budget))
        .route("/budgets/{id}", axum::routing::delete(delete_budget))
        .route("/limits", get(list_limits).post(create_limit))
        .route("/limits/{id}", axum::routing::delete(delete_limit))
        .route("/providers", get(list_providers))
        .route(
            "/providers/{name}",
            axum::routing::put(put_provider).delete(delete_provider),
        )
        .route("/aliases", get(list_aliases))
        .route(
            "/aliases/{name}",
            axum::routing::put(put_alias).delete(delete_alias),
        )
        .route("/usage", get(usage))
        .route("/audit", get(audit_page))
        .route("/audit/export", get(audit_export))
        .route("/audit/verify", get(audit_verify))
        // `route_layer`: the token check wraps exactly the routes above, by route, never by
        // the shape of a path; paths that match no route fall through to the 404 answer.
        .route_layer(axum::middleware::from_fn_with_state(state, require_admin))
        // The one public admin route: the API's description, which holds no data. It is
        // added after the layer so that it is the only route the layer does not wrap.
        .route("/openapi.json", get(openapi))
}

/// Every `/api/v1` route but `/openapi.json` goes through this check.
async fn require_admin(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(gov) = &state.governance else {
        return AdminError(StatusCode::NOT_FOUND, "governance is not configured".into())
            .into_response();
    };
    let Some(expected) = &gov.settings.admin_token else {
        return AdminError(
            StatusCode::NOT_FOUND,
            "the admin API is disabled: set governance.admin_token (e.g. \"env:SLUICE_ADMIN_TOKEN\")".into(),
        )
        .into_response();
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(keys::bearer_token)
        .filter(|t| !t.is_empty());
    let Some(token) = presented else {
        return AdminError(
            StatusCode::UNAUTHORIZED,
            "send the admin token as `Authorization: Bearer <token>`".into(),
        )
        .into_response();
    };
    if token.starts_with(keys::PREFIX) {
        return AdminError(
            StatusCode::UNAUTHORIZED,
            "a virtual key is not an admin token; use governance.admin_token".into(),
        )
        .into_response();
    }
    if !keys::tokens_equal(token, expected.expose()) {
        return AdminError(StatusCode::UNAUTHORIZED, "wrong admin token".into()).into_response();
    }
    next.run(request).await
}

fn gov(state: &AppState) -> AdminResult<&Arc<Governance>> {
    state
        .governance
        .as_ref()
        .ok_or_else(|| AdminError(StatusCode::NOT_FOUND, "governance is not configured".into()))
}

/// An id given by the caller, or a fresh one with `prefix`. Ids are path segments of
/// this API (`/orgs/{id}`) and names in audit records: a small safe alphabet, no dots.
fn new_id(given: Option<String>, prefix: &str) -> AdminResult<String> {
    match given {
        Some(id) if crate::config::safe_name(&id) => Ok(id),
        Some(id) => Err(bad(format!(
            "id `{}` may only use letters, digits, `-` and `_` ({} characters at most)",
            id.chars().take(80).collect::<String>(),
            crate::config::MAX_NAME_LEN
        ))),
        None => Ok(format!(
            "{prefix}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        )),
    }
}

/// axum's extractors with their rejections answered in this API's JSON error shape
/// (axum's own are plain text).
#[derive(Debug)]
struct Body<T>(T);
#[derive(Debug)]
struct Q<T>(T);
#[derive(Debug)]
struct P<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = AdminError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) => Err(AdminError(
                e.status(),
                format!("bad request body: {}", e.body_text()),
            )),
        }
    }
}

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S> for Q<T> {
    type Rejection = AdminError;
    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Q(v)),
            Err(e) => Err(AdminError(
                e.status(),
                format!("bad query string: {}", e.body_text()),
            )),
        }
    }
}

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<S>
    for P<T>
{
    type Rejection = AdminError;
    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(P(v)),
            Err(e) => Err(AdminError(
                e.status(),
                format!("bad path: {}", e.body_text()),
            )),
        }
    }
}

async fn reload(gov: &Governance) -> AdminResult<()> {
    gov.reload().await.map_err(AdminError::from)
}

// ---- orgs, teams, users, devices ----------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOrg {
    name: String,
    #[serde(default)]
    id: Option<String>,
}

async fn list_orgs(State(s): State<Arc<AppState>>) -> AdminResult<Json<Value>> {
    Ok(Json(json!({"data": gov(&s)?.snapshot().rows.orgs})))
}

async fn create_org(
    State(s): State<Arc<AppState>>,
    Body(b): Body<NewOrg>,
) -> AdminResult<(StatusCode, Json<Org>)> {
    let g = gov(&s)?;
    if b.name.trim().is_empty() {
        return Err(bad("`name` must not be empty"));
    }
    let org = Org {
        id: new_id(b.id, "org")?,
        name: b.name,
        created_ms: now_ms(),
    };
    g.store.insert_org(org.clone()).await?;
    reload(g).await?;
    Ok((StatusCode::CREATED, Json(org)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTeam {
    org_id: String,
    name: String,
    #[serde(default)]
    id: Option<String>,
}

async fn list_teams(State(s): State<Arc<AppState>>) -> AdminResult<Json<Value>> {
    Ok(Json(json!({"data": gov(&s)?.snapshot().rows.teams})))
}

async fn create_team(
    State(s): State<Arc<AppState>>,
    Body(b): Body<NewTeam>,
) -> AdminResult<(StatusCode, Json<Team>)> {
    let g = gov(&s)?;
    if !g.snapshot().rows.orgs.iter().any(|o| o.id == b.org_id) {
        return Err(AdminError(
            StatusCode::NOT_FOUND,
            format!("org `{}` does not exist", b.org_id),
        ));
    }
    let team = Team {
        id: new_id(b.id, "team")?,
        org_id: b.org_id,
        name: b.name,
        created_ms: now_ms(),
    };
    g.store.insert_team(team.clone()).await?;
    reload(g).await?;
    Ok((StatusCode::CREATED, Json(team)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    team_id: String,
    email: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    id: Option<String>,
}

async fn list_users(State(s): State<Arc<AppState>>) -> AdminResult<Json<Value>> {
    Ok(Json(json!({"data": gov(&s)?.snapshot().rows.users})))
}

async fn create_user(
    State(s): State<Arc<AppState>>,
    Body(b): Body<NewUser>,
) -> AdminResult<(StatusCode, Json<User>)> {
    let g = gov(&s)?;
    if !b.email.contains('@') {
        return Err(bad(format!("`{}` is not an e-mail address", b.email)));
    }
    if !g.snapshot().rows.teams.iter().any(|t| t.id == b.team_id) {
        return Err(AdminError(
            StatusCode::NOT_FOUND,
            format!("team `{}` does not exist", b.team_id),
        ));
    }
    let user = User {
        id: new_id(b.id, "user")?,
        team_id: b.team_id,
        email: b.email,
        name: b.name,
        created_ms: now_ms(),
    };
    g.store.insert_user(user.clone()).await?;
    reload(g).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDevice {
    team_id: String,
    hostname: String,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    id: Option<String>,
}

async fn list_devices(State(s): State<Arc<AppState>>) -> AdminResult<Json<Value>> {
    Ok(Json(json!({"data": gov(&s)?.snapshot().rows.devices})))
}

async fn create_device(
    State(s): State<Arc<AppState>>,
    Body(b): Body<NewDevice>,
) -> AdminResult<(StatusCode, Json<Device>)> {
    let g = gov(&s)?;
    if !g.snapshot().rows.teams.iter().any(|t| t.id == b.team_id) {
        return Err(AdminError(
            StatusCode::NOT_FOUND,
            format!("team `{}` does not exist", b.team_id),
        ));
    }
    let device = Device {
        id: new_id(b.id, "dev")?,
        team_id: b.team_id,
        user_id: b.user_id,
        hostname: b.hostname,
        created_ms: now_ms(),
    };
    g.store.insert_device(device.clone()).await?;
    reload(g).await?;
    Ok((StatusCode::CREATED, Json(device)))
}

async fn delete_entity(s: &AppState, entity: Entity, id: String) -> AdminResult<StatusCode> {
    let g = gov(s)?;
    g.store.delete(entity, id).await?;
    reload(g).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_org(State(s): State<Arc<AppState>>, P(id): P<String>) -> AdminResult<StatusCode> {
    delete_entity(&s, Entity::Org, id).await
}
async fn delete_team(State(s): State<Arc<AppState>>, P(id): P<String>) -> AdminResult<StatusCode> {
    delete_entity(&s, Entity::Team, id).await
}
async fn delete_user(State(s): State<Arc<AppState>>, P(id): P<String>) -> AdminResult<StatusCode> {
    delete_entity(&s, Entity::User, id).await
}
async fn delete_device(
    State(s): State<Arc<AppState>>,
    P(id): P<String>,
) -> AdminResult<StatusCode> {
    delete_entity(&s, Entity::Device, id).await
}
async fn delete_key(State(s): State<Arc<AppState>>, P(id): P<String>) -> AdminResult<StatusCode> {
    delete_entity(&s, Entity::Key, id).await
}
async fn delete_budget(
    State(s): State<Arc<AppState>>,
    P(id): P<String>,
) -> AdminResult<StatusCode> {
    delete_entity(&s, Entity::Budget, id).await
}
async fn delete_limit(State(s): State<Arc<AppState>>, P(id): P<String>) -> AdminResult<StatusCode> {
    delete_entity(&s, Entity::Limit, id).await
}

// ---- keys ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
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

async fn list_keys(State(s): State<Arc<AppState>>) -> AdminResult<Json<Value>> {
    Ok(Json(json!({"data": gov(&s)?.snapshot().rows.keys})))
}

async fn get_key(
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

async fn create_key(
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
struct KeyUpdate {
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

fn double_option<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

fn find_key(g: &Governance, id: &str) -> AdminResult<VirtualKey> {
    g.snapshot()
        .rows
        .keys
        .iter()
        .find(|k| k.id == id)
        .cloned()
        .ok_or_else(|| AdminError(StatusCode::NOT_FOUND, format!("key `{id}` does not exist")))
}

async fn update_key(
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
struct Rotate {
    /// How long the old secret keeps working. Default 24 h; 0 revokes it at once.
    #[serde(default)]
    grace_secs: Option<u64>,
}

async fn rotate_key(
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

// ---- budgets and limits -------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBudget {
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

fn check_scope(g: &Governance, kind: ScopeKind, id: &str, for_budget: bool) -> AdminResult<()> {
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

async fn list_budgets(State(s): State<Arc<AppState>>) -> AdminResult<Json<Value>> {
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

async fn create_budget(
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
struct NewLimit {
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

async fn list_limits(State(s): State<Arc<AppState>>) -> AdminResult<Json<Value>> {
    Ok(Json(json!({"data": gov(&s)?.snapshot().rows.limits})))
}

async fn create_limit(
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

// ---- providers and aliases ----------------------------------------------------------

fn routing_error(e: RoutingError) -> AdminError {
    match e {
        RoutingError::Invalid(m) => AdminError(StatusCode::BAD_REQUEST, m),
        RoutingError::FromFile(m) => AdminError(StatusCode::CONFLICT, m),
        RoutingError::Store(e) => AdminError::from(e),
    }
}

async fn describe_routing(s: &AppState) -> AdminResult<Value> {
    let g = gov(s)?;
    crate::routing_admin::describe(s, g.store.as_ref())
        .await
        .map_err(routing_error)
}

async fn list_providers(State(s): State<Arc<AppState>>) -> AdminResult<Json<Value>> {
    let d = describe_routing(&s).await?;
    Ok(Json(json!({"data": d["providers"]})))
}

async fn list_aliases(State(s): State<Arc<AppState>>) -> AdminResult<Json<Value>> {
    let d = describe_routing(&s).await?;
    Ok(Json(json!({"data": d["aliases"]})))
}

async fn change_routing(s: &AppState, change: Change) -> AdminResult<()> {
    let g = gov(s)?;
    crate::routing_admin::apply(s, g.store.as_ref(), change)
        .await
        .map_err(routing_error)
}

/// Creates or replaces a provider (same fields as `[providers.NAME]` in the config file;
/// keys must be `env:`/`file:` references).
async fn put_provider(
    State(s): State<Arc<AppState>>,
    P(name): P<String>,
    Body(body): Body<ProviderConfig>,
) -> AdminResult<Json<Value>> {
    change_routing(&s, Change::PutProvider(name.clone(), Box::new(body))).await?;
    Ok(Json(json!({"name": name, "source": "api"})))
}

async fn delete_provider(
    State(s): State<Arc<AppState>>,
    P(name): P<String>,
) -> AdminResult<StatusCode> {
    change_routing(&s, Change::DeleteProvider(name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Creates or replaces an alias (same fields as `[aliases.NAME]`).
async fn put_alias(
    State(s): State<Arc<AppState>>,
    P(name): P<String>,
    Body(body): Body<AliasConfig>,
) -> AdminResult<Json<Value>> {
    change_routing(&s, Change::PutAlias(name.clone(), body)).await?;
    Ok(Json(json!({"name": name, "source": "api"})))
}

async fn delete_alias(
    State(s): State<Arc<AppState>>,
    P(name): P<String>,
) -> AdminResult<StatusCode> {
    change_routing(&s, Change::DeleteAlias(name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- usage and audit ----------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageQuery {
    group_by: UsageGroup,
    #[serde(default)]
    by_day: bool,
    #[serde(default)]
    from_ms: Option<i64>,
    #[serde(default)]
    to_ms: Option<i64>,
}

async fn usage(State(s): State<Arc<AppState>>, Q(q): Q<UsageQuery>) -> AdminResult<Json<Value>> {
    let g = gov(&s)?;
    let to = q.to_ms.unwrap_or_else(|| now_ms() + 1);
    let from = q.from_ms.unwrap_or(to - 30 * 86_400_000);
    let rows = g.store.usage(q.group_by, q.by_day, from, to).await?;
    Ok(Json(json!({"from_ms": from, "to_ms": to, "data": rows})))
}

fn audit_filter(params: &std::collections::HashMap<String, String>) -> AdminResult<AuditFilter> {
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

async fn audit_page(
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

async fn audit_export(
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

async fn audit_verify(State(s): State<Arc<AppState>>) -> AdminResult<Json<VerifyReport>> {
    let g = gov(&s)?;
    Ok(Json(verify_chain(g.store.as_ref()).await?))
}

async fn openapi() -> Json<Value> {
    Json(super::openapi::document())
}
