//! The admin API, `/api/v1`: orgs, teams, users, devices, virtual keys, budgets, rate
//! limits, usage and the audit log. Authenticated with the admin bearer token from
//! `governance.admin_token` (compared in constant time); virtual keys are never admin
//! tokens. Every change is written to the store first, then the in-memory policy
//! snapshot is rebuilt, so the request path sees the change atomically.
//!
//! `GET /api/v1/openapi.json` describes every route.

mod audit;
mod entities;
mod extract;
mod policy;
pub mod routing;

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{StatusCode, header};
use serde_json::Value;

use crate::api::state::AppState;
use crate::governance::keys;
use audit::{audit_export, audit_page, audit_verify, usage};
use entities::{
    create_device, create_org, create_team, create_user, delete_budget, delete_device, delete_key,
    delete_limit, delete_org, delete_team, delete_user, list_devices, list_orgs, list_teams,
    list_users,
};
use extract::AdminError;
use policy::{
    create_budget, create_key, create_limit, get_key, list_budgets, list_keys, list_limits,
    rotate_key, update_key,
};
use routing::{
    delete_alias, delete_provider, list_aliases, list_providers, put_alias, put_provider,
};

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
    if request.method() == http::Method::GET {
        return next.run(request).await;
    }
    let _one_writer = state.admin_writes.lock().await;
    next.run(request).await
}

async fn openapi() -> Json<Value> {
    Json(crate::api::openapi::document())
}
